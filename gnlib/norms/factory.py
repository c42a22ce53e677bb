"""One factory for every normalization the course compares: :func:`make_norm`; and
:func:`use_backend`, which switches the layers the Group Norm kernel computes."""
from __future__ import annotations

import warnings

from torch import nn

from .batch_renorm import BatchRenorm1d, BatchRenorm2d, BatchRenorm3d, RenormSchedule
from .group_norm import GroupNorm, _check_backend
from .per_device_bn import GhostBatchNorm2d

__all__ = ["NORM_KINDS", "channels_per_group", "make_norm", "use_backend"]

#: The kinds :func:`make_norm` understands.
NORM_KINDS = ("bn", "ln", "in", "gn", "none", "br")
_BATCH_RENORMS = {1: BatchRenorm1d, 2: BatchRenorm2d, 3: BatchRenorm3d}
_BATCH_NORMS = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def make_norm(
    kind: str,
    num_channels: int,
    groups: int = 32,
    eps: float = 1e-5,
    unbiased: bool = False,
    spatial_dims: int = 2,
    *,
    r_max: "float | RenormSchedule" = 1.5,
    d_max: float = 0.5,
    momentum: float = 0.1,
    splits: int = 1,
) -> nn.Module:
    """Return a normalization layer for ``num_channels`` channels.

    ``kind``:

    * ``"bn"``: Batch Norm, ``S_i = {k | k_C = i_C}`` (``nn.BatchNorm{1,2,3}d``);
    * ``"ln"``: Layer Norm as in the paper, ``S_i = {k | k_N = i_N}`` = GN with ``G = 1``;
    * ``"in"``: Instance Norm, ``S_i = {k | k_N = i_N, k_C = i_C}`` = GN with ``G = C``;
    * ``"gn"``: Group Norm with ``G = min(groups, C)`` (a warning says when that is IN);
    * ``"none"``: ``nn.Identity``;
    * ``"br"``: Batch Renorm (:class:`BatchRenorm2d`, or 1d / 3d by ``spatial_dims``) with
      ``r_max``, ``d_max`` and ``momentum``; the defaults 1.5 and 0.5 are the GN paper's
      setting, ``r_max=RenormSchedule.paper(steps)`` the BR paper's warm-up.

    ``unbiased`` applies to the GN family; BN keeps PyTorch's (biased) batch statistics.
    ``r_max``, ``d_max``, ``momentum`` (keyword-only) apply to ``"br"`` only. ``splits``
    (keyword-only, ``"bn"`` with ``spatial_dims=2`` only): ``splits > 1`` returns a
    :class:`GhostBatchNorm2d` that normalizes each of ``splits`` equal slices of the batch by
    its own statistics, as BN does on each of ``splits`` data-parallel devices.
    """
    kind = kind.lower() if isinstance(kind, str) else kind
    if kind not in NORM_KINDS:
        raise ValueError(f"unknown norm kind {kind!r}; choose one of {NORM_KINDS}")
    if kind == "none":
        return nn.Identity()
    if isinstance(splits, bool) or not isinstance(splits, int) or splits < 1:
        raise ValueError(f"splits must be a positive int, got {splits!r}")
    if splits > 1 and kind != "bn":
        raise ValueError(f"splits={splits} (per-device statistics) applies to kind 'bn' only, "
                         f"not {kind!r}")
    if kind == "bn":
        if splits > 1:
            if spatial_dims != 2:
                raise ValueError(f"splits > 1 needs spatial_dims=2, got {spatial_dims}")
            return GhostBatchNorm2d(num_channels, splits, eps=eps)
        if spatial_dims not in _BATCH_NORMS:
            raise ValueError(f"spatial_dims must be 1, 2 or 3 for BN, got {spatial_dims}")
        return _BATCH_NORMS[spatial_dims](num_channels, eps=eps)
    if kind == "br":
        if spatial_dims not in _BATCH_RENORMS:
            raise ValueError(f"spatial_dims must be 1, 2 or 3 for BR, got {spatial_dims}")
        if isinstance(r_max, RenormSchedule):
            return _BATCH_RENORMS[spatial_dims](num_channels, eps=eps, momentum=momentum,
                                                r_max=r_max)
        return _BATCH_RENORMS[spatial_dims](num_channels, eps=eps, momentum=momentum,
                                            r_max=r_max, d_max=d_max)
    if kind == "ln":
        g = 1
    elif kind == "in":
        g = num_channels
    else:
        g = min(groups, num_channels)
        if g < groups and g > 1:
            warnings.warn(
                f"GN with groups={groups} on {num_channels} channels uses G={g}=C, "
                "which is Instance Norm (one channel per group)",
                stacklevel=2,
            )
    return GroupNorm(g, num_channels, eps=eps, unbiased=unbiased)


def channels_per_group(layer: nn.Module) -> int | None:
    """``C/G`` of a GroupNorm layer (``None`` for other layers)."""
    if isinstance(layer, (GroupNorm, nn.GroupNorm)):
        return layer.num_channels // layer.num_groups
    return None


def use_backend(module: nn.Module, backend: str) -> nn.Module:
    """Set ``backend`` (one of :data:`BACKENDS`) on every layer inside ``module`` that
    :func:`group_norm` computes: :class:`GroupNorm` (GN, and LN / IN built as GN with ``G = 1``
    / ``G = C``) and :class:`~gnlib.norms.GhostBatchNorm2d` (BN per device slice); returns
    ``module``."""
    backend = _check_backend(backend)
    for m in module.modules():
        if isinstance(m, (GroupNorm, GhostBatchNorm2d)):
            m.backend = backend
    return module
