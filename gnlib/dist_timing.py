"""Wall-clock timing across processes: medians, the slowest rank, one all-reduce.

A data-parallel step is as slow as its slowest process, so every time reported is the
maximum over ranks of each rank's median (:func:`max_over_ranks`). :func:`time_all_reduce`
times the collective alone, on a buffer as large as the model's parameters.
"""
from __future__ import annotations

import statistics
import time
from typing import Sequence

import torch
import torch.distributed as dist

__all__ = ["max_over_ranks", "median_ms", "sync", "time_all_reduce"]


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA is asynchronous; the CPU is not)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(times: Sequence[float]) -> float | None:
    """Median of ``times`` (seconds) in milliseconds, rounded to the microsecond; ``None``
    for no times."""
    return round(statistics.median(times) * 1e3, 3) if times else None


def max_over_ranks(value: float | None, device: torch.device) -> float | None:
    """The largest ``value`` of all processes (a collective: call it on every rank)."""
    if value is None:
        return None
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return round(float(t.item()), 3)


def time_all_reduce(numel: int, device: torch.device, repeats: int = 5) -> float:
    """Median wall time (ms) of one ``dist.all_reduce`` of ``numel`` float32 values."""
    buf = torch.zeros(numel, device=device)
    dist.all_reduce(buf)  # warm-up
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        dist.all_reduce(buf)
        sync(device)
        times.append(time.perf_counter() - t0)
    return median_ms(times) or 0.0
