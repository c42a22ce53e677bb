r"""Timing and saved-memory measurements of normalization functions (bench script and notebook 03).

Timings on a shared machine are noisy, so implementations are compared *side by side*: the
repeats of all implementations are interleaved (``A B C A B C ...``) and the median of each is
taken; the ratios of those medians are what we report.

Saved-for-backward memory is measured exactly (not timed) with
:func:`torch.autograd.graph.saved_tensors_hooks`: every tensor an autograd node keeps for its
backward passes through the pack hook, and we add up the bytes of the distinct storages.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "NormFn",
    "SavedMemory",
    "fwd_bwd_inputs",
    "median_times",
    "saved_memory",
    "time_fwd_bwd",
]

#: The signature every compared implementation shares: ``fn(x, num_groups, weight, bias)``.
NormFn = Callable[[Tensor, int, Tensor, Tensor], Tensor]


def fwd_bwd_inputs(
    shape: Sequence[int], seed: int = 0, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x, weight, bias, dy)`` for ``shape = (N, C, *)``: x, weight, bias require grad."""
    gen = torch.Generator().manual_seed(seed)
    C = shape[1]
    x = torch.randn(*shape, generator=gen, dtype=dtype).requires_grad_()
    weight = (1 + 0.1 * torch.randn(C, generator=gen, dtype=dtype)).requires_grad_()
    bias = (0.1 * torch.randn(C, generator=gen, dtype=dtype)).requires_grad_()
    dy = torch.randn(*shape, generator=gen, dtype=dtype)
    return x, weight, bias, dy


def _fwd_bwd_once(fn: NormFn, x: Tensor, groups: int, w: Tensor, b: Tensor, dy: Tensor) -> float:
    """Seconds for one forward + backward (gradients w.r.t. x, weight and bias)."""
    start = time.perf_counter()
    y = fn(x, groups, w, b)
    torch.autograd.grad(y, (x, w, b), dy)
    return time.perf_counter() - start


def time_fwd_bwd(
    fns: Mapping[str, NormFn],
    shape: Sequence[int],
    groups: int,
    repeats: int = 10,
    warmup: int = 2,
) -> dict[str, list[float]]:
    """Forward+backward seconds of each implementation, repeats interleaved.

    Each round runs every implementation once, in a rotating order, on the same inputs, so
    a slow patch of a shared machine hits all of them alike. Returns ``name -> [seconds]``.
    """
    x, w, b, dy = fwd_bwd_inputs(shape)
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            _fwd_bwd_once(fns[name], x, groups, w, b, dy)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(_fwd_bwd_once(fns[name], x, groups, w, b, dy))
    return times


def median_times(times: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """``name -> median seconds``."""
    return {name: statistics.median(ts) for name, ts in times.items()}


@dataclass(frozen=True)
class SavedMemory:
    """What one forward keeps alive for its backward.

    ``total`` counts every distinct saved storage (bytes); ``new`` only those that are not the
    storage of an argument (``x``, weight, bias), i.e. what the forward allocated extra.
    """

    total: int
    new: int
    count: int


def saved_memory(fn: NormFn, shape: Sequence[int], groups: int) -> SavedMemory:
    """Bytes saved for backward by ``fn(x, groups, weight, bias)`` on a ``shape`` input.

    Distinct storages are counted once (a view of ``x`` costs nothing extra).
    """
    x, w, b, _ = fwd_bwd_inputs(shape)
    storages: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        st = t.untyped_storage()
        storages[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn(x, groups, w, b)
    del y
    args = {t.untyped_storage().data_ptr() for t in (x, w, b)}
    new = sum(n for ptr, n in storages.items() if ptr not in args)
    return SavedMemory(total=sum(storages.values()), new=new, count=len(storages))
