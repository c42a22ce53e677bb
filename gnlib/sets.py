r"""The sets :math:`S_i` over which each normalization computes its mean and variance.

For a feature map of shape ``(N, C, H, W)`` and a pixel ``i = (i_N, i_C, i_H, i_W)``
(Wu & He, Section 3.1):

==========  =====================================================================
kind        :math:`S_i`
==========  =====================================================================
``bn``      :math:`\{k \mid k_C = i_C\}`                                       (Eq. 4)
``ln``      :math:`\{k \mid k_N = i_N\}`                                       (Eq. 5)
``in``      :math:`\{k \mid k_N = i_N,\ k_C = i_C\}`                           (Eq. 6)
``gn``      :math:`\{k \mid k_N = i_N,\ \lfloor k_C/(C/G)\rfloor = \lfloor i_C/(C/G)\rfloor\}`  (Eq. 7)
==========  =====================================================================

Everything here is written for clarity, not speed: masks and a pixel-by-pixel normalizer
that the tests compare with the fast layers.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .norms import check_groups

__all__ = [
    "SET_DEFINITIONS",
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
        mask = k_C == i_C                                        # Eq. (4)
    elif kind == "ln":
        mask = same_n                                            # Eq. (5)
    elif kind == "in":
        mask = same_n & (k_C == i_C)                             # Eq. (6)
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
        mu = values.sum() / m                                    # Eq. (1)
        var = ((values - mu) ** 2).sum() / (m - 1 if unbiased else m)  # Eq. (2)
        out[idx] = (x[idx] - mu) / torch.sqrt(var + eps)
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
