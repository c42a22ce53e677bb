r"""The sets :math:`S_i` over which each normalization computes its mean and variance.

For a feature map of shape ``(N, C, H, W)`` and a pixel ``i = (i_N, i_C, i_H, i_W)``
(Wu & He, Section 3.1):

==========  =====================================================================
kind        :math:`S_i`
==========  =====================================================================
``bn``      :math:`\{k \mid k_C = i_C\}`                                       (Eq. 3)
``ln``      :math:`\{k \mid k_N = i_N\}`                                       (Eq. 4)
``in``      :math:`\{k \mid k_N = i_N,\ k_C = i_C\}`                           (Eq. 5)
``gn``      :math:`\{k \mid k_N = i_N,\ \lfloor k_C/(C/G)\rfloor = \lfloor i_C/(C/G)\rfloor\}`  (Eq. 7)
==========  =====================================================================

Everything here is written for clarity, not speed: masks and a pixel-by-pixel normalizer
that the tests compare with the fast layers.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .norms import check_groups, group_norm

__all__ = [
    "SET_DEFINITIONS",
    "StatisticsCheck",
    "example_feature_map",
    "statistics_check",
    "SET_KINDS",
    "batch_dependence",
    "normalization_set",
    "normalize_with_sets",
    "set_ids",
    "set_size",
    "set_statistics",
]

SET_KINDS = ("bn", "ln", "in", "gn")

#: LaTeX of each definition, for titles and Markdown.
SET_DEFINITIONS = {
    "bn": r"$S_i=\{k \mid k_C=i_C\}$",
    "ln": r"$S_i=\{k \mid k_N=i_N\}$",
    "in": r"$S_i=\{k \mid k_N=i_N,\ k_C=i_C\}$",
    "gn": r"$S_i=\{k \mid k_N=i_N,\ \lfloor k_C/(C/G)\rfloor=\lfloor i_C/(C/G)\rfloor\}$",
}


def _check_kind(kind: str, groups: int | None, C: int) -> int | None:
    if kind not in SET_KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {SET_KINDS}")
    if kind == "gn":
        if groups is None:
            raise ValueError("kind='gn' needs groups=G (a divisor of C)")
        check_groups(groups, C)
    return groups


def _check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or any(s <= 0 for s in shape):
        raise ValueError(f"shape must be (N, C, *) with positive sizes, got {shape}")
    return shape


def normalization_set(
    kind: str, shape: Sequence[int], index: Sequence[int], groups: int | None = None
) -> Tensor:
    """Boolean mask of :math:`S_i` for pixel ``index`` in a tensor of ``shape``.

    ``groups`` is G for ``kind="gn"`` and ignored by the other kinds (as in every function
    here), so a loop over kinds can pass it unconditionally.

    ``shape`` is ``(N, C, *)`` (e.g. ``(N, C, H, W)``), ``index`` has one entry per dim.
    The mask has ``shape`` and is True exactly for the ``k`` in :math:`S_i`.
    """
    shape = _check_shape(shape)
    index = tuple(int(i) for i in index)
    if len(index) != len(shape) or any(not 0 <= i < s for i, s in zip(index, shape)):
        raise ValueError(f"index {index} is not a valid pixel of a tensor of shape {shape}")
    N, C = shape[:2]
    _check_kind(kind, groups, C)
    k_N = torch.arange(N).view((N, 1) + (1,) * (len(shape) - 2))
    k_C = torch.arange(C).view((1, C) + (1,) * (len(shape) - 2))
    i_N, i_C = index[:2]
    same_n = k_N == i_N
    if kind == "bn":
        mask = k_C == i_C                                        # Eq. (3)
    elif kind == "ln":
        mask = same_n                                            # Eq. (4)
    elif kind == "in":
        mask = same_n & (k_C == i_C)                             # Eq. (5)
    else:
        per_group = C // groups                                  # C/G channels per group
        mask = same_n & (k_C // per_group == i_C // per_group)   # Eq. (7)
    return mask.expand(shape).clone()


def set_size(kind: str, shape: Sequence[int], groups: int | None = None) -> int:
    r""":math:`|S_i|` (the same for every pixel): how many values one mean is taken over."""
    shape = _check_shape(shape)
    N, C = shape[:2]
    _check_kind(kind, groups, C)
    spatial = 1
    for s in shape[2:]:
        spatial *= s
    return {"bn": N * spatial, "ln": C * spatial, "in": spatial,
            "gn": (C // groups) * spatial if groups else 0}[kind]


def set_ids(kind: str, shape: Sequence[int], groups: int | None = None) -> Tensor:
    """Integer tensor of ``shape``: pixels with the same id share one :math:`S_i`.

    Used to colour which values share statistics (e.g. GN's groups of channels).
    """
    shape = _check_shape(shape)
    N, C = shape[:2]
    _check_kind(kind, groups, C)
    n = torch.arange(N).view((N, 1) + (1,) * (len(shape) - 2))
    c = torch.arange(C).view((1, C) + (1,) * (len(shape) - 2))
    ids = {
        "bn": c + 0 * n,
        "ln": n + 0 * c,
        "in": n * C + c,
        "gn": n * groups + c // (C // groups) if kind == "gn" else None,
    }[kind]
    return ids.expand(shape).clone()


def set_statistics(
    x: Tensor, kind: str, index: Sequence[int], groups: int | None = None,
    unbiased: bool = False,
) -> tuple[float, float, int]:
    r"""``(mu_i, sigma_i, |S_i|)`` of ``x`` over :math:`S_i` for pixel ``index`` (Eq. 1-2)."""
    mask = normalization_set(kind, x.shape, index, groups)
    values = x[mask]
    m = values.numel()
    mu = values.sum() / m
    denom = m - 1 if unbiased else m
    var = ((values - mu) ** 2).sum() / denom
    return float(mu), float(var.sqrt()), m


def normalize_with_sets(
    x: Tensor, kind: str, groups: int | None = None, eps: float = 1e-5,
    unbiased: bool = False,
) -> Tensor:
    r"""Slow, literal Eq. (1)-(2): for every pixel i, build :math:`S_i` and normalize.

    Loops over all pixels (use small tensors). Returns :math:`\hat x` (no gamma/beta).
    """
    out = torch.empty_like(x)
    for index in torch.cartesian_prod(*[torch.arange(s) for s in x.shape]).view(-1, x.dim()):
        idx = tuple(int(i) for i in index)
        mask = normalization_set(kind, x.shape, idx, groups)
        values = x[mask]
        m = values.numel()
        mu = values.sum() / m                                    # Eq. (2), mean
        var = ((values - mu) ** 2).sum() / (m - 1 if unbiased else m)  # Eq. (2), variance
        out[idx] = (x[idx] - mu) / torch.sqrt(var + eps)        # Eq. (1)
    return out


def batch_dependence(
    kind: str, batch_size: int, channels: int = 8, size: int = 4,
    groups: int | None = None, trials: int = 16, seed: int = 0,
) -> float:
    r"""How much sample 0's normalized output moves when its batch mates are redrawn.

    Sample 0 is fixed; the other ``batch_size - 1`` samples are redrawn ``trials`` times.
    Returns the mean absolute deviation of sample 0's :math:`\hat x` across trials: zero
    when :math:`S_i` never leaves the sample (LN, IN, GN), positive for BN.
    """
    from .norms import make_norm

    layer = make_norm(kind, channels, groups=groups or channels).train()
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(1, channels, size, size, generator=g)
    outs = []
    with torch.no_grad():
        for _ in range(trials):
            mates = torch.randn(batch_size - 1, channels, size, size, generator=g)
            outs.append(layer(torch.cat([x0, mates]))[0])
    stacked = torch.stack(outs)
    return float((stacked - stacked.mean(0)).abs().mean())


# --------------------------------------------------------------------------------------
# The numbers shown under the cubes of notebook 02: S_i statistics computed three ways
# --------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------
def example_feature_map(N: int, C: int, HW: int, seed: int = 0) -> Tensor:
    """A fixed random feature map ``(N, C, HW)`` whose channels and samples have different
    offsets and scales, so the four norms give visibly different statistics.

    For ``N <= 8`` and ``C <= 16`` it is a corner of one fixed ``(8, 16, HW)`` map: the value
    at ``(n, c, p)`` does not depend on ``N`` or ``C``, so a larger batch only *adds* samples
    (what BN sees changes, GN's statistics of sample ``n`` do not).
    """
    n_all, c_all = max(N, 8), max(C, 16)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_all, c_all, HW, generator=gen, dtype=torch.float64)
    scale = 0.5 + torch.rand(1, c_all, 1, generator=gen, dtype=torch.float64)
    offset = torch.linspace(-1.0, 1.0, c_all, dtype=torch.float64).view(1, c_all, 1)
    sample = 0.5 * torch.randn(n_all, 1, 1, generator=gen, dtype=torch.float64)
    return (x * scale + offset + sample)[:N, :C].contiguous()


@dataclass(frozen=True)
class StatisticsCheck:
    """:math:`|S_i|`, :math:`\\mu_i`, :math:`\\sigma_i` and :math:`\\hat x_i` three ways."""

    size: int            # |S_i| counted from the mask
    size_formula: int    # gnlib.sets.set_size
    mean_mask: float     # mean over x[mask]
    std_mask: float
    mean_torch: float    # torch reduction over the norm's dims
    std_torch: float
    xhat_mask: float     # (x_i - mu_i) / sqrt(sigma_i^2 + eps) from the mask statistics
    xhat_gnlib: float    # gnlib.group_norm (BN: on the transposed tensor)
    xhat_torch: float | None  # torch.nn.functional.*_norm (biased only, else None)


def _torch_values(x: Tensor, kind: str, index: Sequence[int], groups: int | None) -> Tensor:
    """The values of :math:`S_i` gathered with reshapes (no mask)."""
    N, C = x.shape[:2]
    i_n, i_c = index[:2]
    if kind == "bn":
        return x.transpose(0, 1).reshape(C, -1)[i_c]
    if kind == "ln":
        return x.reshape(N, -1)[i_n]
    if kind == "in":
        return x[i_n, i_c].reshape(-1)
    return x.reshape(N, groups, -1)[i_n, i_c // (C // groups)]


def _normalized(x: Tensor, kind: str, groups: int | None, eps: float, unbiased: bool) -> Tensor:
    """:math:`\\hat x` from gnlib.group_norm: LN is G=1, IN is G=C, BN is LN of x^T."""
    C = x.shape[1]
    if kind == "bn":
        return group_norm(x.transpose(0, 1).contiguous(), 1, eps=eps,
                          unbiased=unbiased).transpose(0, 1)
    g = {"ln": 1, "in": C, "gn": groups}[kind]
    return group_norm(x, g, eps=eps, unbiased=unbiased)


def _normalized_torch(x: Tensor, kind: str, groups: int | None, eps: float) -> Tensor:
    if kind == "bn":
        return F.batch_norm(x, None, None, training=True, eps=eps)
    if kind == "ln":
        return F.layer_norm(x, x.shape[1:], eps=eps)
    if kind == "in":
        return F.instance_norm(x, eps=eps)
    return F.group_norm(x, groups, eps=eps)


def statistics_check(
    x: Tensor,
    kind: str,
    index: Sequence[int],
    groups: int | None = None,
    unbiased: bool = False,
    eps: float = 1e-5,
) -> StatisticsCheck:
    """Statistics of :math:`S_i` from the mask, from torch reductions, and :math:`\\hat x_i`
    from the mask, from gnlib.group_norm and from torch's layers (which are biased only)."""
    index = tuple(int(i) for i in index)
    mean, std, m = set_statistics(x, kind, index, groups, unbiased=unbiased)
    std_t, mean_t = torch.std_mean(_torch_values(x, kind, index, groups),
                                   correction=int(unbiased))
    xhat = (float(x[index]) - mean) / math.sqrt(std**2 + eps)
    xhat_t = None if unbiased else float(_normalized_torch(x, kind, groups, eps)[index])
    return StatisticsCheck(
        size=m, size_formula=set_size(kind, x.shape, groups),
        mean_mask=mean, std_mask=std, mean_torch=float(mean_t), std_torch=float(std_t),
        xhat_mask=xhat, xhat_gnlib=float(_normalized(x, kind, groups, eps, unbiased)[index]),
        xhat_torch=xhat_t,
    )
