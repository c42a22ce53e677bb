"""Exercises with checkers that say *what* is wrong, one module per notebook.

* :mod:`~gnlib.exercises.theory` — notebook 01: set sizes, one pixel's statistics, predict
  BN's batch dependence;
* :mod:`~gnlib.exercises.sets3d` — notebook 02: GN's limits LN and IN, the mask of S_i,
  predict what a larger batch changes;
* :mod:`~gnlib.exercises.implementing` — notebook 03: the forward and backward of GN;
* :mod:`~gnlib.exercises.model_solutions` — solutions of notebooks 01 and 02 (notebook 03's
  are in :mod:`gnlib.solutions`).

Every checker prints its verdict and returns a :class:`CheckResult`; it never raises. A
placeholder (``raise NotImplementedError``, ``...``, ``prediction = None``) gets a friendly
"not implemented / answered / predicted yet".
"""
from . import model_solutions, training  # training: notebook 04 (gnlib.exercises.training)
from . import ablation  # notebook 06 (gnlib.exercises.ablation)
from . import beyond  # notebook 07 (gnlib.exercises.beyond)
from .common import NOT_ANSWERED, NOT_IMPLEMENTED, NOT_PREDICTED, CheckResult
from .implementing import CASES, Case, check_backward, check_forward, with_backward
from .sets3d import LIMITS_C, MASK_CASES, check_gn_limits, check_set_mask, reveal_batch_growth
from .theory import (SIZE_GROUPS, SIZE_SHAPE, STATISTICS_CASES, check_pixel_statistics,
                     check_set_sizes, reveal_bn_batch_dependence)

__all__ = [
    "CASES",
    "Case",
    "CheckResult",
    "LIMITS_C",
    "MASK_CASES",
    "NOT_ANSWERED",
    "NOT_IMPLEMENTED",
    "NOT_PREDICTED",
    "SIZE_GROUPS",
    "SIZE_SHAPE",
    "STATISTICS_CASES",
    "check_backward",
    "check_forward",
    "check_gn_limits",
    "check_pixel_statistics",
    "check_set_mask",
    "check_set_sizes",
    "model_solutions",
    "reveal_batch_growth",
    "reveal_bn_batch_dependence",
    "with_backward",
]
