"""gnlib: Group Normalization from scratch, and the tools of the course's notebooks.

The most used calls::

    from gnlib import group_norm, GroupNorm, make_norm, normalization_set, load_fashion_mnist
"""
from .config import is_quick, setup
from .data import DataNotFoundError, load_fashion_mnist, to_float
from .norms import (
    BatchRenorm2d,
    GhostBatchNorm2d,
    GroupNorm,
    WSConv2d,
    group_norm,
    group_norm_reference,
    make_norm,
    valid_groups,
)
from .sets import normalization_set, normalize_with_sets, set_ids, set_size

__version__ = "0.1.0"

__all__ = [
    "BatchRenorm2d",
    "GhostBatchNorm2d",
    "DataNotFoundError",
    "GroupNorm",
    "group_norm",
    "group_norm_reference",
    "is_quick",
    "load_fashion_mnist",
    "make_norm",
    "normalization_set",
    "normalize_with_sets",
    "set_ids",
    "set_size",
    "setup",
    "to_float",
    "valid_groups",
    "WSConv2d",
]
