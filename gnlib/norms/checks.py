"""Argument checks shared by every layer of :mod:`gnlib.norms`: clear messages, early."""
from __future__ import annotations

import operator
from typing import Any

from torch import Tensor

__all__ = ["as_int", "check_affine", "check_groups", "check_input", "denominator", "valid_groups"]


def valid_groups(num_channels: int) -> list[int]:
    """All group counts ``G`` that divide ``num_channels`` (the valid choices for GN)."""
    return [g for g in range(1, num_channels + 1) if num_channels % g == 0]


def as_int(v: Any, name: str) -> int:
    """``v`` as a Python int (NumPy integers too, as torch accepts them); no bools, no floats."""
    if isinstance(v, bool):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        return operator.index(v)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(v).__name__}") from None


def check_groups(num_groups: Any, num_channels: Any) -> tuple[int, int]:
    """``(G, C)`` as ints; a clear error unless ``G`` is a positive divisor of ``C``."""
    G, C = as_int(num_groups, "num_groups"), as_int(num_channels, "num_channels")
    if C <= 0:
        raise ValueError(f"num_channels must be positive, got {C}")
    if G <= 0:
        raise ValueError(f"num_groups must be positive, got {G}; "
                         f"valid choices for C={C} are {valid_groups(C)}")
    if C % G != 0:
        raise ValueError(
            f"num_channels={C} is not divisible by num_groups={G}: GN splits the C channels "
            f"into G groups of C/G channels each. Valid num_groups for C={C}: {valid_groups(C)}")
    return G, C


def check_input(x: Any, num_groups: Any, name: str = "group_norm") -> int:
    """Check an ``(N, C, *)`` floating-point input for ``G`` groups; returns ``G`` as an int."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} expects a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"{name} expects an input of shape (N, C, *) with at least 2 dims, "
                         f"got shape {tuple(x.shape)}; add a batch dimension with x.unsqueeze(0)")
    if not x.is_floating_point():
        raise TypeError(f"{name} expects a floating-point input, got dtype {x.dtype}; "
                        f"convert it first, e.g. x.float()")
    return check_groups(num_groups, x.shape[1])[0]


def check_affine(t: Tensor | None, name: str, num_channels: int) -> None:
    """``gamma`` / ``beta`` must be ``None`` or of shape ``(C,)``."""
    if t is not None and (t.dim() != 1 or t.shape[0] != num_channels):
        raise ValueError(f"{name} must have shape (C,) = ({num_channels},), got {tuple(t.shape)}")


def denominator(m: int, unbiased: bool) -> int:
    """``|S_i|`` for the biased variance, ``|S_i| - 1`` for the unbiased one."""
    if unbiased and m < 2:
        raise ValueError("unbiased=True needs at least 2 elements per group (|S_i| - 1 > 0), "
                         f"got |S_i| = {m}")
    return m - 1 if unbiased else m
