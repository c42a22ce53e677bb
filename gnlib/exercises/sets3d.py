r"""Checkers of notebook 02 (the sets :math:`S_i` in 3D), with specific feedback.

* :func:`check_set_mask` — exercise 1, ``fn(kind, shape, index, groups) -> mask``: the
  boolean mask of :math:`S_i`, built by hand. A wrong mask is compared with typical wrong
  sets (:mod:`gnlib.exercises.mistaken_sets`), else described voxel by voxel.
* :func:`check_gn_limits` — exercise 2, an inline question: which ``G`` makes GN equal to LN,
  and which to IN, for ``C = 12``, as ``{"ln": G, "in": G}``. The verdict is computed by
  comparing GN's masks with LN's and IN's for every pixel.
* :func:`reveal_batch_growth` — the predict-then-reveal: which norms' :math:`\mu_i,
  \sigma_i` change when the batch grows, revealed only once a prediction is recorded.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from ..norms import valid_groups
from ..sets import normalization_set, set_size
from .common import (NOT_IMPLEMENTED, NOT_PREDICTED, REVEALED, CheckResult, call_student,
                     is_placeholder, keyed_answer, report)
from .mistaken_sets import NAMES, describe_difference, mistaken_sets

__all__ = ["LIMITS_C", "MASK_CASES", "check_gn_limits", "check_set_mask", "gn_equals",
           "reveal_batch_growth"]

KINDS = ("bn", "ln", "in", "gn")

# --------------------------------------------------------------------------------------
# Exercise 1: the mask of S_i, by hand
# --------------------------------------------------------------------------------------
#: ``(kind, shape, pixel, G)``: notebook 02's cube first, then a 4D map and G = 4 of 8.
MASK_CASES = (
    ("gn", (4, 8, 6), (1, 2, 3), 2),
    ("bn", (4, 8, 6), (1, 2, 3), 2),
    ("ln", (4, 8, 6), (1, 2, 3), 2),
    ("in", (4, 8, 6), (1, 2, 3), 2),
    ("gn", (2, 6, 2, 3), (1, 4, 1, 2), 3),
    ("gn", (3, 8, 5), (2, 7, 0), 4),
)


def _as_mask(out: Any, shape: tuple[int, ...]) -> tuple[torch.Tensor | None, str | None]:
    """The student's output as a bool tensor of ``shape``, or the problem with it."""
    try:
        mask = torch.as_tensor(out)
    except (TypeError, ValueError, RuntimeError):
        return None, f"return a boolean tensor, got {type(out).__name__}"
    if tuple(mask.shape) != shape:
        return None, (f"wrong shape: your mask has shape {tuple(mask.shape)}, expected "
                      f"{shape} (one entry per value of x)")
    if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
        return None, "return True/False (or 0/1) entries: True where the value is in S_i"
    return mask.bool(), None


def _mask_feedback(mask: torch.Tensor, kind: str, shape: tuple[int, ...],
                   index: tuple[int, ...], groups: int) -> str | None:
    expected = normalization_set(kind, shape, index, groups)
    if torch.equal(mask, expected):
        return None
    for wrong, hint in mistaken_sets(kind, shape, index, groups):
        if torch.equal(mask, wrong):
            return hint
    return f"your mask is not S_i: {describe_difference(mask, expected, index)}"


def check_set_mask(fn: Callable[..., Any]) -> CheckResult:
    """Check ``fn(kind, shape, index, groups) -> mask`` on :data:`MASK_CASES`."""
    title = "Exercise 1 (the mask of S_i)"
    for kind, shape, index, groups in MASK_CASES:
        where = f"(kind={kind!r}, shape {shape}, pixel i={index}, G={groups})"
        out, problem = call_student(fn, kind, shape, index, groups)
        if problem is None:
            mask, problem = _as_mask(out, shape)
        if problem is None:
            problem = _mask_feedback(mask, kind, shape, index, groups)
        if problem is not None:
            return report(title, False, problem if problem == NOT_IMPLEMENTED
                          else f"{problem}\n  {where}")
    return report(title, True, f"{len(MASK_CASES)} sets (BN, LN, IN, GN with G = 2, 3, 4; 3D "
                  "and 4D maps) match gnlib.sets.normalization_set")


# --------------------------------------------------------------------------------------
# Exercise 2: which G makes GN equal to LN, and to IN?
# --------------------------------------------------------------------------------------
LIMITS_C = 12
_LIMIT_SHAPE = (2, LIMITS_C, 3)  # (N, C, H·W): small, every pixel is compared


def gn_equals(kind: str, groups: int, C: int = LIMITS_C) -> bool:
    """True if GN with ``groups`` has the same :math:`S_i` as ``kind`` for every pixel."""
    shape = (_LIMIT_SHAPE[0], C, _LIMIT_SHAPE[2])
    pixels = itertools.product(*(range(s) for s in shape))
    return all(torch.equal(normalization_set("gn", shape, i, groups),
                           normalization_set(kind, shape, i)) for i in pixels)


def _limit_feedback(kind: str, g: Any, C: int) -> str | None:
    """None if GN with ``g`` groups is ``kind``, else why not."""
    if isinstance(g, bool) or not isinstance(g, int):
        return f"{kind.upper()}: give G as an integer, got {g!r:.30}"
    if g not in valid_groups(C):
        return (f"{kind.upper()}: G = {g} does not divide C = {C}; GN needs C/G whole "
                f"channels per group (valid G: {valid_groups(C)})")
    if gn_equals(kind, g, C):
        return None
    shape = (1, C, 1)
    other = next((k for k in ("ln", "in") if k != kind and gn_equals(k, g, C)), None)
    got = f"G = {g} gives {g} group(s) of C/G = {C // g} channel(s)"
    if other is not None:
        got += f": that is {NAMES[other]}"
    want = {"ln": "all C channels of the sample in one group",
            "in": "one channel per group"}[kind]
    return (f"{kind.upper()}: {got}. {NAMES[kind]} needs {want} "
            f"(|S_i| = {set_size(kind, shape)}·H·W, here {set_size('gn', shape, g)}·H·W)")


def check_gn_limits(answer: Mapping[str, Any], C: int = LIMITS_C) -> CheckResult:
    """Check ``answer = {"ln": G, "in": G}``: the G for which GN is LN, and IN, given C."""
    title = "Exercise 2 (GN between LN and IN)"
    answer, problem = keyed_answer(answer, ("ln", "in"), "answer both")
    if problem is not None:
        return report(title, False, problem)
    if answer["ln"] == C and answer["in"] == 1:
        return report(title, False, f"LN and IN are swapped: G = 1 puts all {C} channels in "
                      f"one group (LN), G = C = {C} gives one channel per group (IN)")
    wrong = [p for p in (_limit_feedback(k, answer[k], C) for k in ("ln", "in")) if p]
    if wrong:
        return report(title, False, "\n  ".join(wrong))
    return report(title, True, f"GN(G={answer['ln']}) == LN and GN(G={answer['in']}) == IN "
                  f"for every pixel of a map with C = {C}")


# --------------------------------------------------------------------------------------
# Predict, then reveal: which statistics change when the batch grows?
# --------------------------------------------------------------------------------------
_GROWTH_WHY = {
    True: "{name}'s S_i spans every sample of the batch, so the new samples enter its mean",
    False: "{name}'s S_i stays inside sample i_N: new samples cannot change it",
}


def _as_kinds(prediction: Iterable[Any]) -> tuple[set[str] | None, str | None]:
    if isinstance(prediction, str):
        prediction = [prediction]
    try:
        kinds = {str(k).lower() for k in prediction}
    except TypeError:
        return None, f"predict a set of norm names such as {{'ln'}}, got {prediction!r:.40}"
    unknown = sorted(kinds - set(KINDS))
    if unknown:
        return None, f"unknown norm name(s) {unknown}; use {list(KINDS)}"
    return kinds, None


def reveal_batch_growth(prediction: Any, before: Mapping[str, Sequence[float]],
                        after: Mapping[str, Sequence[float]]) -> CheckResult:
    """Reveal which norms' ``(mu_i, sigma_i)`` changed from ``before`` to ``after`` (kind ->
    pair) only once ``prediction`` (a set of kinds, ``set()`` for none) is recorded."""
    title = "Prediction (which statistics change with the batch)"
    if is_placeholder(prediction):
        return report(title, False, NOT_PREDICTED)
    kinds, problem = _as_kinds(prediction)
    if problem is not None:
        return report(title, False, problem)
    changed = {k for k in before if any(abs(a - b) > 1e-12 for a, b in zip(before[k], after[k]))}
    lines = [f"you predicted {sorted(kinds) or 'none'}; changed: {sorted(changed) or 'none'}"]
    for k in sorted(kinds ^ changed):
        said = "you said it changes" if k in kinds else "you said it stays"
        lines.append(f"{k.upper()}: {said}, but {_GROWTH_WHY[k in changed].format(name=NAMES[k])}")
    return report(title, kinds == changed, "\n  ".join(lines), REVEALED)
