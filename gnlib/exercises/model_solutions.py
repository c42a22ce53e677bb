r"""Model solutions of notebooks 01 and 02's exercises (peek only after trying!).

Notebook 03's solutions live in :mod:`gnlib.solutions`. Each function here is what the
matching checker of :mod:`gnlib.exercises` accepts; the notebooks show the checker on it.
Each is self-contained, so that ``inspect.getsource`` shows the whole solution.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["gn_limits", "normalization_set_by_hand", "pixel_statistics", "set_sizes"]


def set_sizes(shape: Sequence[int], groups: int) -> dict[str, int]:
    """Notebook 01, exercise 1: :math:`|S_i|` of each norm for ``shape = (N, C, H, W)``."""
    N, C, H, W = shape
    return {"bn": N * H * W,              # one channel, every sample, every position
            "ln": C * H * W,              # one sample, every channel
            "in": H * W,                  # one sample, one channel
            "gn": (C // groups) * H * W}  # one sample, C/G channels


def pixel_statistics(x: Tensor, kind: str, index: Sequence[int],
                     groups: int | None = None) -> tuple[int, float, float]:
    """Notebook 01, exercise 2: ``(m, mu_i, sigma_i^2)`` of the set of pixel ``index``."""
    i_N, i_C = index[0], index[1]
    if kind == "bn":
        values = x[:, i_C]                              # channel i_C, every sample
    elif kind == "ln":
        values = x[i_N]                                 # sample i_N, every channel
    elif kind == "in":
        values = x[i_N, i_C]                            # one channel of one sample
    else:
        per_group = x.shape[1] // groups                # C/G channels per group
        first = (i_C // per_group) * per_group          # first channel of i_C's group
        values = x[i_N, first:first + per_group]
    m = values.numel()                                  # |S_i|: every H·W position too
    mu = values.sum() / m                               # Eq. (2), mean
    var = ((values - mu) ** 2).sum() / m                # Eq. (2), biased variance
    return m, float(mu), float(var)


def gn_limits(C: int) -> dict[str, int]:
    """Notebook 02, exercise 2: GN is LN with one group, IN with one channel per group."""
    return {"ln": 1, "in": C}


def normalization_set_by_hand(kind: str, shape: Sequence[int], index: Sequence[int],
                              groups: int | None = None) -> Tensor:
    """Notebook 02, exercise 1: the boolean mask of :math:`S_i`, with slices."""
    mask = torch.zeros(tuple(shape), dtype=torch.bool)
    i_N, i_C = index[0], index[1]
    if kind == "bn":
        mask[:, i_C] = True                             # channel i_C of every sample
    elif kind == "ln":
        mask[i_N] = True                                # all of sample i_N
    elif kind == "in":
        mask[i_N, i_C] = True                           # one channel of one sample
    else:
        per_group = shape[1] // groups                  # C/G channels per group
        first = (i_C // per_group) * per_group
        mask[i_N, first:first + per_group] = True       # i_C's group in sample i_N
    return mask
