"""Numbers typed from papers, for side-by-side figures and tables (never computed here).

Every value is labelled with its source; the course's own numbers always come from
``results/*.jsonl`` (:mod:`gnlib.results`, :mod:`gnlib.analysis`).
"""
from __future__ import annotations

__all__ = ["LITERATURE", "METHOD_FACTS", "NORM_LABELS", "PAPER", "PAPER_SOURCE"]

PAPER_SOURCE = "Wu & He, Group Normalization, ECCV 2018: ResNet-50, ImageNet val error (%)"

#: Wu & He (2018), ResNet-50 on ImageNet, val error (%): Figure 1 / Table 1 (batch size),
#: Table 2 (norms at batch 32), Table 3 (groups), Table 4 / Section 5 (Batch Renorm at 4).
PAPER = {
    "batch_size": {"bn": {32: 23.6, 16: 23.7, 8: 24.8, 4: 27.3, 2: 34.7},
                   "gn": {32: 24.1, 16: 24.2, 8: 24.0, 4: 24.2, 2: 24.1}},
    "batch32": {"bn": 23.6, "ln": 25.3, "in": 28.4, "gn": 24.1},
    "groups": {64: 24.6, 32: 24.1, 16: 24.6, 8: 24.4, 4: 24.6, 2: 24.7, 1: 25.3},
    "channels_per_group": {64: 24.4, 32: 24.5, 16: 24.2, 8: 24.3, 4: 24.8, 2: 25.6, 1: 28.4},
    "batch4": {"bn": 27.3, "br": 26.3, "gn": 24.2},
}

#: Other published measurements quoted in the notebooks, each with its source (references,
#: not this course's numbers).
LITERATURE = {
    "cifar10_resnet20": {
        "source": ("public CIFAR-10 ResNet-20 runs at 100 epochs, as quoted in this course's "
                   "Figure-1 issue (test error %)"),
        "bn_usual_batch": 13.6, "bn_batch_2": 19.7, "gn": "flat across batch sizes",
    },
}

NORM_LABELS = {
    "bn": "Batch Norm", "ln": "Layer Norm", "in": "Instance Norm", "gn": "Group Norm",
    "br": "Batch Renorm", "gn+ws": "GN + WS", "syncbn": "SyncBN", "gbn": "global-batch BN",
    "none": "no norm",
}

#: What each method needs, by construction (not a measurement): batch-independent forward,
#: training forward = inference forward, communication for statistics in data-parallel training.
METHOD_FACTS = {
    "bn": ("no", "no (batch vs running statistics)", "none (statistics per device)"),
    "br": ("no", "closer (r, d pull batch toward running statistics)", "none (per device)"),
    "syncbn": ("no (statistics of the global batch)", "no (global batch vs running statistics)",
               "per BN layer: statistics gathered in forward, their gradients reduced in backward"),
    "gn": ("yes", "yes", "none"),
    "gn+ws": ("yes", "yes", "none"),
}
