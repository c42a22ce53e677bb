r"""One training run on in-memory tensors: batches, SGD, schedule, evaluation, history.

The recipe follows Wu & He (2018), shrunk to a CPU:

* batches are slices of a shuffled index permutation drawn from a seeded
  :class:`torch.Generator` (no DataLoader, no per-sample Python); the last partial batch of
  an epoch is dropped, so every step sees exactly ``B`` images (BN statistics over ``B``);
* SGD, momentum 0.9, weight decay on all parameters, linear lr scaling
  :math:`\eta = \eta_0 \cdot B / 32` (Goyal et al.; the paper's ``0.1 N/32``);
* schedule per iteration ``t`` of ``T`` (same number of epochs for every batch size):
  ``"cosine"`` :math:`\eta_t = \eta\,\tfrac12(1+\cos(\pi t/T))` (default: it needs no
  milestones and behaves well in short budgets), or ``"step"``: the paper's
  :math:`\eta/10` at 30 %, 60 % and 90 % of training (30/60/90 of 100 epochs);
* validation error in **eval mode** every epoch (BN uses its running statistics: that is where
  its small-batch weakness shows), and at the end, for BN, a diagnostic error in **train mode**
  on test batches of the same size ``B`` (batch statistics, running statistics untouched);
* the reported error is the median of the last ``median_last`` epochs (the paper: last 5);
* ``devices = d > 1`` simulates data-parallel training on ``d`` devices with ``B / d`` images
  each: one SGD step on the whole batch of ``B`` (gradients averaged, lr for ``B``), but BN
  statistics per device (:class:`~gnlib.norms.GhostBatchNorm2d`), the paper's per-GPU BN;
  ``norm="syncbn"`` is BN with statistics over all ``d`` devices' images (what
  ``nn.SyncBatchNorm`` computes; one process, so no communication);
* ``batching`` (beyond the paper): ``"iid"`` (shuffled), or ``"non-iid-1"`` / ``"non-iid-2"``:
  every device's slice of ``B / d`` images comes from one class / one random pair of classes
  (:mod:`gnlib.sampling`; with ``d = 1`` the whole batch), as on federated clients;
* for BN and BR, each epoch records how far the running statistics are from the statistics
  of the data they should describe (:func:`gnlib.diagnostics.bn_statistics_gap`);
* a non-finite loss stops the run and is recorded as ``diverged`` with its epoch.

:func:`train` returns a plain dict (JSON-ready); it never writes files.
"""
from __future__ import annotations

import copy
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .diagnostics import bn_statistics_gap
from .models import build_model

BATCHINGS = ("iid", "non-iid-1", "non-iid-2")
#: Norms whose training forward uses batch statistics (they get the BN diagnostics).
BATCH_STAT_NORMS = ("bn", "br", "syncbn")

__all__ = ["BATCHINGS", "TrainConfig", "epoch_batches", "evaluate", "get_data", "lr_at", "scaled_lr",
           "synthetic_data", "train"]

BASE_BATCH = 32


@dataclass
class TrainConfig:
    """Everything that defines a run (its identity in the results files)."""

    norm: str = "gn"
    groups: int = 32
    channels_per_group: int | None = None
    batch_size: int = 32
    epochs: int = 6
    base_lr: float = 0.1            # lr at batch 32; scaled linearly with the batch size
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"        # "cosine" or "step" (paper: /10 at 30/60/90 %)
    seed: int = 0
    dataset: str = "fashion-mnist"  # or "synthetic" (tests)
    train_size: int = 10000         # a fixed random subset (data seed 0) of the 60k
    test_size: int = 10000          # the first test_size of the 10k test images
    widths: tuple[int, ...] = (64, 128)
    blocks: tuple[int, ...] = (1, 1)
    stem_stride: int = 2
    strides: tuple[int, ...] = (2, 2)
    median_last: int = 3
    eval_batch: int = 1000
    batching: str = "iid"           # or "non-iid-1" / "non-iid-2": 1 or 2 classes per device slice
    devices: int = 1                # simulated data-parallel devices (BN statistics per device)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("widths", "blocks", "strides"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = set(cls.__dataclass_fields__)
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}")
        d = dict(d)
        for k in ("widths", "blocks", "strides"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)

    @property
    def lr(self) -> float:
        return scaled_lr(self.base_lr, self.batch_size)


def scaled_lr(base_lr: float, batch_size: int, base_batch: int = BASE_BATCH) -> float:
    r"""Linear scaling rule :math:`\eta = \eta_0 \cdot B / 32`."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return base_lr * batch_size / base_batch


def lr_at(lr: float, step: int, total: int, schedule: str) -> float:
    """Learning rate at iteration ``step`` of ``total`` for ``"cosine"`` or ``"step"``."""
    frac = step / max(total, 1)
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * frac))
    if schedule == "step":
        return lr * 0.1 ** sum(frac >= m for m in (0.3, 0.6, 0.9))
    raise ValueError(f"unknown schedule {schedule!r}; use 'cosine' or 'step'")


def synthetic_data(n_train: int = 256, n_test: int = 128, seed: int = 0) -> tuple[Tensor, ...]:
    """Tiny learnable stand-in for Fashion-MNIST (tests): uint8 images, 10 classes."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(10, 28, 28, generator=g)
    out = []
    for n in (n_train, n_test):
        y = torch.randint(0, 10, (n,), generator=g)
        x = (protos[y] * 0.7 + 0.3 * torch.rand(n, 28, 28, generator=g)) * 255
        out += [x.to(torch.uint8), y]
    return tuple(out)


def get_data(cfg: TrainConfig) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Float tensors ``(xtr, ytr, xte, yte)`` for ``cfg``: a fixed training subset
    (the same for every seed and norm) and the first ``test_size`` test images."""
    from .data import load_fashion_mnist, to_float

    if cfg.dataset == "synthetic":
        xtr, ytr, xte, yte = synthetic_data()
    elif cfg.dataset == "fashion-mnist":
        xtr, ytr, xte, yte = load_fashion_mnist()
    else:
        raise ValueError(f"unknown dataset {cfg.dataset!r}")
    if cfg.train_size > len(xtr) or cfg.test_size > len(xte):
        raise ValueError(f"train_size/test_size {cfg.train_size}/{cfg.test_size} exceed "
                         f"the data ({len(xtr)}/{len(xte)})")
    idx = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(0))[: cfg.train_size]
    return to_float(xtr[idx]), ytr[idx], to_float(xte[: cfg.test_size]), yte[: cfg.test_size]


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000,
             train_mode: bool = False) -> float:
    """Error (%) of ``model`` on ``(x, y)``.

    ``train_mode=False``: eval mode (BN uses running statistics). ``train_mode=True``: a copy of
    the model in train mode, so BN normalizes each test batch of ``batch_size`` with its own
    statistics (the running statistics of ``model`` are not touched).
    """
    if train_mode:
        model = copy.deepcopy(model).train()
    else:
        was = model.training
        model.eval()
    wrong, seen = 0, 0
    n = len(x) - (len(x) % batch_size if train_mode else 0)   # full batches only in train mode
    for i in range(0, n, batch_size):
        pred = model(x[i:i + batch_size]).argmax(1)
        wrong += (pred != y[i:i + batch_size]).sum().item()
        seen += len(pred)
    if not train_mode:
        model.train(was)
    return 100.0 * wrong / max(seen, 1)


def epoch_batches(cfg: TrainConfig, labels: Tensor, gen: torch.Generator) -> Tensor:
    """One epoch's training batches as a ``(steps, B)`` index tensor.

    ``"iid"``: slices of one random permutation (the last partial batch dropped). Non-i.i.d.:
    :func:`gnlib.sampling.non_iid_batches` draws slices of ``B / devices`` images from one class
    (or pair), and ``devices`` consecutive slices form a step (device ``k`` gets slice ``k``).
    """
    from .sampling import non_iid_batches

    B, d = cfg.batch_size, cfg.devices
    if cfg.batching == "iid":
        steps = len(labels) // B
        return torch.randperm(len(labels), generator=gen)[: steps * B].view(steps, B)
    slices = non_iid_batches(labels, B // d, int(cfg.batching[-1]), gen, drop_last=True)
    steps = len(slices) // d
    return torch.stack(slices[: steps * d]).view(steps, B)


def train(cfg: TrainConfig | dict, data: tuple[Tensor, ...] | None = None,
          progress: bool = False, model: nn.Module | None = None) -> dict[str, Any]:
    """Train one model and return ``{"config", "val_error", "train_error", "diverged", ...,
    "history": {"epoch", "train_loss", "train_error", "val_error", "lr"}}`` (errors in %).

    ``data``: float ``(xtr, ytr, xte, yte)`` (default: :func:`get_data`). ``progress`` shows a
    tqdm bar (notebook-aware). The run is deterministic for a given config and commit on 1 thread.
    """
    from tqdm.auto import tqdm

    if isinstance(cfg, dict):
        cfg = TrainConfig.from_dict(cfg)
    xtr, ytr, xte, yte = data if data is not None else get_data(cfg)
    B = cfg.batch_size
    if B > len(xtr):
        raise ValueError(f"batch_size {B} exceeds the training set ({len(xtr)})")
    if cfg.batching not in BATCHINGS:
        raise ValueError(f"unknown batching {cfg.batching!r}; choose one of {BATCHINGS}")
    if isinstance(cfg.devices, bool) or not isinstance(cfg.devices, int) or cfg.devices < 1 \
            or B % cfg.devices:
        raise ValueError(f"devices must be a positive divisor of batch_size {B}, "
                         f"got {cfg.devices!r}")
    if cfg.norm == "syncbn" and cfg.devices == 1:
        raise ValueError("norm 'syncbn' synchronizes BN over simulated devices: set devices > 1")
    if cfg.devices > 1 and cfg.norm == "br":
        raise ValueError("devices > 1 (per-device statistics) is implemented for 'bn' only")
    t0 = time.perf_counter()
    if model is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            arch_norm = "bn" if cfg.norm == "syncbn" else cfg.norm   # SyncBN: BN over all
            model = build_model(arch_norm, widths=cfg.widths, blocks=cfg.blocks, groups=cfg.groups,
                                channels_per_group=cfg.channels_per_group,
                                stem_stride=cfg.stem_stride, strides=cfg.strides,
                                bn_splits=cfg.devices if cfg.norm == "bn" else 1)
    lr = cfg.lr
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = len(epoch_batches(cfg, ytr, torch.Generator().manual_seed(cfg.seed)))
    total = steps_per_epoch * cfg.epochs    # (non-iid epochs may differ by a step: lr_at clamps)
    track_stats = cfg.norm in BATCH_STAT_NORMS
    stats_x = xtr[:2000]
    keys = ["epoch", "train_loss", "train_error", "val_error", "lr"]
    keys += ["bn_mean_gap", "bn_var_ratio"] if track_stats else []
    hist: dict[str, list] = {k: [] for k in keys}
    diverged_epoch = None
    step = 0
    bar = tqdm(total=total, disable=not progress, leave=False,
               desc=f"{cfg.norm} B={B} seed={cfg.seed}")
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        batches = epoch_batches(cfg, ytr, gen)
        loss_sum = torch.zeros(()); wrong = torch.zeros((), dtype=torch.long)
        for idx in batches:
            xb, yb = xtr[idx], ytr[idx]
            for gparam in opt.param_groups:
                gparam["lr"] = lr_at(lr, min(step, total), total, cfg.schedule)
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.detach()
            wrong += (out.detach().argmax(1) != yb).sum()
            bar.update(1)
        mean_loss = loss_sum.item() / len(batches)
        hist["epoch"].append(epoch)
        hist["lr"].append(lr_at(lr, min(step - 1, total), total, cfg.schedule))
        if not math.isfinite(mean_loss):
            diverged_epoch = epoch
            for k in keys:
                if k not in ("epoch", "lr"):        # no metrics for a diverged epoch
                    hist[k].append(None)
            break
        hist["train_loss"].append(round(mean_loss, 5))
        hist["train_error"].append(round(100.0 * wrong.item() / batches.numel(), 3))
        hist["val_error"].append(round(evaluate(model, xte, yte, cfg.eval_batch), 3))
        if track_stats:
            gap = bn_statistics_gap(model, stats_x, cfg.eval_batch)
            hist["bn_mean_gap"].append(gap["mean_gap"])
            hist["bn_var_ratio"].append(gap["var_ratio"])
        bar.set_postfix(loss=f"{mean_loss:.3f}", val=f"{hist['val_error'][-1]:.2f}%")
    bar.close()
    diverged = diverged_epoch is not None
    k = cfg.median_last
    res: dict[str, Any] = {
        "config": cfg.to_dict(),
        "lr": lr,
        "steps": step,
        "diverged": diverged,
        "diverged_epoch": diverged_epoch,
        "val_error": None if diverged else statistics.median(hist["val_error"][-k:]),
        "train_error": None if diverged else statistics.median(hist["train_error"][-k:]),
        "val_error_train_mode": None,
        "history": hist,
    }
    if not diverged and track_stats:
        res["val_error_train_mode"] = round(evaluate(model, xte, yte, B, train_mode=True), 3)
    res["wall_s"] = round(time.perf_counter() - t0, 2)
    return res
