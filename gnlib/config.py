"""Run-wide settings: quick mode, seeding and thread counts.

Notebooks call :func:`setup` in their first code cell. ``GNLIB_QUICK=1`` (set by the test
command) asks for small epochs and data; it changes sizes only, never code paths.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["QUICK_ENV", "is_quick", "pick", "seed_everything", "setup"]

QUICK_ENV = "GNLIB_QUICK"


def is_quick() -> bool:
    """True when the environment variable ``GNLIB_QUICK`` is set to 1/true/yes."""
    return os.environ.get(QUICK_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def pick(full, quick):
    """``quick`` in quick mode, else ``full``: the one place notebooks choose sizes."""
    return quick if is_quick() else full


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup(seed: int = 0, threads: int = 1) -> bool:
    """Seed everything, fix the number of threads (deterministic sums), return quick mode.

    One thread makes float reductions run in the same order every time, so printed numbers
    are identical between runs (nbval compares them).
    """
    torch.set_num_threads(threads)
    seed_everything(seed)
    torch.set_printoptions(precision=4, sci_mode=False)
    return is_quick()
