r"""Normalization layers written from scratch, one concept per module.

* :mod:`~gnlib.norms.group_norm`: Group Norm (Wu & He, ECCV 2018): :func:`group_norm` (a
  :class:`torch.autograd.Function` with a hand-derived backward), :func:`group_norm_reference`
  (readable; autograd does the backward) and the module :class:`GroupNorm`; ``group_norm`` and
  ``GroupNorm`` take ``backend="cpp"`` or ``"auto"`` for a fused C++ kernel
  (:class:`GroupNormCppFunction`, built on first use by :mod:`~gnlib.norms.group_norm_cpp`);
* :mod:`~gnlib.norms.factory`: :func:`make_norm`, one factory for BN, BR, LN, IN, GN, none;
* beyond the paper: :mod:`~gnlib.norms.batch_renorm` (Batch Renorm, Ioffe 2017),
  :mod:`~gnlib.norms.per_device_bn` (BN with per-device or global-batch statistics),
  :mod:`~gnlib.norms.weight_std` (Weight Standardization, Qiao et al. 2019);
* shared: :mod:`~gnlib.norms.checks` (argument checks) and
  :mod:`~gnlib.norms.running_stats` (one update rule for every BN variant's running statistics).

Nothing here imports data, training, results or plotting code.
"""
from .batch_renorm import BatchRenorm, BatchRenorm1d, BatchRenorm2d, BatchRenorm3d, RenormSchedule
from .checks import check_groups, valid_groups
from .factory import NORM_KINDS, channels_per_group, make_norm, use_backend
from .group_norm import (BACKENDS, GroupNorm, GroupNormFunction, group_norm,
                         group_norm_reference)
from .group_norm_cpp import GroupNormCppFunction
from .per_device_bn import GhostBatchNorm2d, GlobalBatchNorm2d, convert_to_global_bn
from .running_stats import update_running_stats
from .weight_std import WSConv2d, convert_to_ws, standardize_weight

__all__ = [
    "BACKENDS", "NORM_KINDS", "BatchRenorm", "BatchRenorm1d", "BatchRenorm2d", "BatchRenorm3d",
    "GhostBatchNorm2d", "GlobalBatchNorm2d", "GroupNorm", "GroupNormCppFunction",
    "GroupNormFunction", "RenormSchedule",
    "WSConv2d", "channels_per_group", "check_groups", "convert_to_global_bn", "convert_to_ws",
    "group_norm", "group_norm_reference", "make_norm", "standardize_weight",
    "update_running_stats", "use_backend", "valid_groups",
]
