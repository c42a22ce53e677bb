r"""Timing and saved-memory measurements of normalization functions (bench script and notebook 03).

Timings on a shared machine are noisy, so implementations are compared *side by side*: the
repeats of all implementations are interleaved (``A B C A B C ...``) and the median of each is
taken; the ratios of those medians are what we report.

Saved-for-backward memory is measured exactly (not timed) with
:func:`torch.autograd.graph.saved_tensors_hooks`: every tensor an autograd node keeps for its
backward passes through the pack hook, and we add up the bytes of the distinct storages.

Inputs come in either memory format (``memory_format=torch.channels_last`` for the layout
the course's models train in). :mod:`gnlib.bench_file` reads the committed output of
``bench/bench_group_norm.py`` back.

:data:`IMPLEMENTATIONS` holds the three Group Norms of notebook 03; :func:`implementations`
adds ``"gnlib-cpp"`` (gnlib's fused C++ kernel, ``group_norm(..., backend="cpp")``) where it
can be built, for ``bench/bench_group_norm.py``.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .norms import group_norm, group_norm_cpp, group_norm_reference

__all__ = [
    "CPP",
    "CPP_RATIO",
    "IMPLEMENTATIONS",
    "NormFn",
    "SavedMemory",
    "format_memory_table",
    "format_time_table",
    "fwd_and_grads",
    "fwd_bwd_inputs",
    "gnlib_cpp",
    "implementations",
    "median_times",
    "num_threads",
    "saved_memory",
    "time_fwd_bwd",
]

#: The signature every compared implementation shares: ``fn(x, num_groups, weight, bias)``.
NormFn = Callable[[Tensor, int, Tensor, Tensor], Tensor]

#: The three Group Norms compared in notebook 03 and ``bench/bench_group_norm.py``.
IMPLEMENTATIONS: dict[str, NormFn] = {
    "reference": group_norm_reference,   # reshape, mean, var; autograd's backward
    "gnlib": group_norm,                 # autograd.Function, hand-derived backward
    "native": F.group_norm,              # torch's C++ kernel
}

#: The name of gnlib's fused C++ kernel among the implementations, and its ratio column.
CPP, CPP_RATIO = "gnlib-cpp", "cpp/native"


def gnlib_cpp(x: Tensor, num_groups: int, weight: Tensor | None = None,
              bias: Tensor | None = None) -> Tensor:
    """gnlib's Group Norm with the fused C++ kernel: ``group_norm(..., backend="cpp")``."""
    return group_norm(x, num_groups, weight, bias, backend="cpp")


def implementations(cpp: bool = True) -> dict[str, NormFn]:
    """:data:`IMPLEMENTATIONS`, plus ``"gnlib-cpp"`` (:func:`gnlib_cpp`) if ``cpp`` and the
    kernel can be built here (building it on the first call; see
    :func:`gnlib.norms.group_norm_cpp.why_unavailable` otherwise)."""
    fns = dict(IMPLEMENTATIONS)
    if cpp and group_norm_cpp.available():
        fns[CPP] = gnlib_cpp
    return fns


@contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fwd_bwd_inputs(
    shape: Sequence[int], seed: int = 0, dtype: torch.dtype = torch.float32,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x, weight, bias, dy)`` for ``shape = (N, C, *)``: x, weight, bias require grad;
    x and dy in ``memory_format``."""
    gen = torch.Generator().manual_seed(seed)
    C = shape[1]
    x = torch.randn(*shape, generator=gen, dtype=dtype)
    x = x.contiguous(memory_format=memory_format).requires_grad_()
    weight = (1 + 0.1 * torch.randn(C, generator=gen, dtype=dtype)).requires_grad_()
    bias = (0.1 * torch.randn(C, generator=gen, dtype=dtype)).requires_grad_()
    dy = torch.randn(*shape, generator=gen, dtype=dtype).contiguous(memory_format=memory_format)
    return x, weight, bias, dy


def fwd_and_grads(
    fn: Callable[..., Tensor],
    x: Tensor,
    groups: int,
    weight: Tensor,
    bias: Tensor,
    dy: Tensor,
    **kwargs: object,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(y, dL/dx, dL/dweight, dL/dbias)`` of ``y = fn(x, groups, weight, bias, **kwargs)``
    for the upstream gradient ``dy = dL/dy``.

    The inputs are cloned into fresh leaves, so the same tensors can be passed to several
    implementations and compared; ``kwargs`` (e.g. ``eps``) go to ``fn``.
    """
    leaves = [t.detach().clone().requires_grad_() for t in (x, weight, bias)]
    y = fn(leaves[0], groups, leaves[1], leaves[2], **kwargs)
    dx, dweight, dbias = torch.autograd.grad(y, leaves, dy)
    return y.detach(), dx, dweight, dbias


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
    memory_format: torch.memory_format = torch.contiguous_format,
) -> dict[str, list[float]]:
    """Forward+backward seconds of each implementation, repeats interleaved.

    Each round runs every implementation once, in a rotating order, on the same inputs (in
    ``memory_format``), so a slow patch of a shared machine hits all of them alike. Returns
    ``name -> [seconds]``.
    """
    x, w, b, dy = fwd_bwd_inputs(shape, memory_format=memory_format)
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
    storage of an argument (``x``, weight, bias), i.e. what the forward allocated extra;
    ``shapes`` lists the shape of one saved tensor per distinct storage, in saving order.
    """

    total: int
    new: int
    count: int
    shapes: tuple[tuple[int, ...], ...] = ()


def saved_memory(fn: NormFn, shape: Sequence[int], groups: int) -> SavedMemory:
    """Bytes saved for backward by ``fn(x, groups, weight, bias)`` on a ``shape`` input.

    Distinct storages are counted once (a view of ``x`` costs nothing extra).
    """
    x, w, b, _ = fwd_bwd_inputs(shape)
    storages: dict[int, int] = {}
    shapes: list[tuple[int, ...]] = []

    def pack(t: Tensor) -> Tensor:
        st = t.untyped_storage()
        if st.data_ptr() not in storages:
            shapes.append(tuple(t.shape))
        storages[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn(x, groups, w, b)
    del y
    args = {t.untyped_storage().data_ptr() for t in (x, w, b)}
    new = sum(n for ptr, n in storages.items() if ptr not in args)
    return SavedMemory(total=sum(storages.values()), new=new, count=len(storages),
                       shapes=tuple(shapes))


def _shape_label(shape: Sequence[int]) -> str:
    return "(" + ",".join(str(s) for s in shape) + ")"


def format_time_table(medians: Mapping[tuple[int, ...], Mapping[str, float]]) -> str:
    """Text table of median fwd+bwd milliseconds per shape and the two headline ratios.

    ``medians`` maps ``shape -> {"reference": s, "gnlib": s, "native": s}`` (seconds); with a
    ``"gnlib-cpp"`` entry too, the table gains its column after native's and a last ratio
    column ``cpp/native`` (:func:`gnlib.bench_file.load_bench` reads the columns by name).
    """
    cpp = CPP in next(iter(medians.values()), {})
    head = (f"{'shape':<16}{'reference':>11}{'gnlib':>9}{'native':>9}"
            + (f"{CPP:>11}" if cpp else "") + f"{'gnlib/native':>14}{'ref/gnlib':>11}"
            + (f"{CPP_RATIO:>12}" if cpp else ""))
    lines = [head + "   (ms, median fwd+bwd)"]
    for shape, t in medians.items():
        ms = {k: 1e3 * v for k, v in t.items()}
        lines.append(f"{_shape_label(shape):<16}{ms['reference']:>11.2f}{ms['gnlib']:>9.2f}"
                     f"{ms['native']:>9.2f}" + (f"{ms[CPP]:>11.2f}" if cpp else "")
                     + f"{t['gnlib'] / t['native']:>13.2f}x{t['reference'] / t['gnlib']:>10.2f}x"
                     + (f"{t[CPP] / t['native']:>11.2f}x" if cpp else ""))
    return "\n".join(lines)


def format_memory_table(
    memory: Mapping[tuple[int, ...], Mapping[str, SavedMemory]], groups: int
) -> str:
    """Text table of saved-for-backward KiB per implementation, next to the input size and
    the per-group statistics (mean and rstd: ``2 N G`` float32 values)."""
    names = list(next(iter(memory.values())))
    head = f"{'shape':<16}{'input':>11}{'stats':>8}" + "".join(f"{n:>12}" for n in names)
    lines = [head + "   (KiB saved for backward; stats = mean + rstd per group)"]
    for shape, mem in memory.items():
        numel = 1
        for s in shape:
            numel *= s
        stats = 2 * shape[0] * groups * 4
        lines.append(f"{_shape_label(shape):<16}{numel * 4 / 1024:>11,.1f}{stats / 1024:>8.1f}"
                     + "".join(f"{mem[n].total / 1024:>12,.1f}" for n in names))
    return "\n".join(lines)
