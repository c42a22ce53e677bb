"""Helpers used only by the tests (kept out of gnlib).

* :func:`fail_at_step`: make one rank of a ``gnlib.distributed`` run die mid-training;
* :func:`make_batches`, :func:`batch_class_sets`, :data:`SAMPLING_MODES`: one epoch of
  :mod:`gnlib.sampling` batches by name, and the classes each batch holds;
* :func:`paint_boxes`: the voxel labels that :func:`gnlib.plots.cubes.cube_boxes`' boxes paint.
"""
from __future__ import annotations

import itertools
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor

from gnlib.sampling import non_iid_batches, shuffled_batches

#: The modes :func:`make_batches` understands.
SAMPLING_MODES = ("shuffled", "non-iid-1", "non-iid-2")


@contextmanager
def fail_at_step(step: int, rank: int) -> Iterator[None]:
    """Within the block, ``gnlib.dist_run.train_step`` raises on rank ``rank`` at its
    ``step``-th call (0-based) in this process: a rank that dies mid-training."""
    from gnlib import dist_run

    original, calls = dist_run.train_step, itertools.count()

    def failing(s, sync_grads: bool = True):
        if next(calls) == step and s.rank == rank:
            raise RuntimeError(f"injected failure on rank {rank} at step {step}")
        return original(s, sync_grads)

    dist_run.train_step = failing
    try:
        yield
    finally:
        dist_run.train_step = original


def make_batches(mode: str, labels: Tensor, batch_size: int,
                 generator: torch.Generator | None = None, drop_last: bool = False) -> list[Tensor]:
    """One epoch of batches by name: ``"shuffled"``, ``"non-iid-1"`` or ``"non-iid-2"``."""
    if mode == "shuffled":
        return shuffled_batches(len(labels), batch_size, generator, drop_last)
    if mode in ("non-iid-1", "non-iid-2"):
        return non_iid_batches(labels, batch_size, int(mode[-1]), generator, drop_last)
    raise ValueError(f"unknown sampling mode {mode!r}; choose one of {SAMPLING_MODES}")


def batch_class_sets(labels: Tensor, batches: list[Tensor]) -> list[set[int]]:
    """The set of classes in each batch (to check how non-i.i.d. an epoch is)."""
    return [set(labels[idx].tolist()) for idx in batches]


def paint_boxes(shape, boxes):
    """The labels that ``boxes`` paint: the inverse of :func:`gnlib.plots.cubes.cube_boxes`."""
    import numpy as np

    out = np.zeros(tuple(shape), dtype=np.int8)
    for label, lo, hi in boxes:
        out[tuple(slice(a, b) for a, b in zip(lo, hi))] = label
    return out
