r"""Checkers of notebook 01 (normalization theory), with specific feedback.

* :func:`check_set_sizes` — exercise 1, an inline question: :math:`|S_i|` of BN, LN, IN and
  GN for one layer, as a dict ``{"bn": ..., "ln": ..., "in": ..., "gn": ...}``. A wrong number
  is matched against the products a student typically writes (``N``, ``G·H·W``, another norm's
  size, ...) to name the mistake.
* :func:`check_pixel_statistics` — exercise 2, ``fn(x, kind, index, groups) -> (m, mu, var)``:
  :math:`|S_i|`, :math:`\mu_i` and the (biased) :math:`\sigma_i^2` of one pixel's set, by hand.
  A mismatch is compared with the statistics of typical wrong sets
  (:mod:`gnlib.exercises.mistaken_sets`), the unbiased variance and the standard deviation.
* :func:`reveal_bn_batch_dependence` — the predict-then-reveal: BN's deviation at ``N = 4``,
  revealed only once a prediction is recorded.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import Tensor

from ..sets import example_feature_map, normalization_set
from .common import (NOT_IMPLEMENTED, NOT_PREDICTED, REVEALED, CheckResult, call_student,
                     keyed_answer, number_answer, report)
from .mistaken_sets import NAMES, mistaken_sets

__all__ = ["SIZE_GROUPS", "SIZE_SHAPE", "STATISTICS_CASES", "check_pixel_statistics",
           "check_set_sizes", "reveal_bn_batch_dependence", "size_formulas"]

KINDS = ("bn", "ln", "in", "gn")

# --------------------------------------------------------------------------------------
# Exercise 1: |S_i| of each norm for one layer
# --------------------------------------------------------------------------------------
#: A ResNet layer at 14 x 14 with 8 images per GPU and GN's default G = 32: every product
#: below has a different value, so a wrong number names its formula.
SIZE_SHAPE, SIZE_GROUPS = (8, 64, 14, 14), 32
_RIGHT = {"bn": "N·H·W", "ln": "C·H·W", "in": "H·W", "gn": "(C/G)·H·W"}


def size_formulas(shape: Sequence[int], groups: int) -> dict[str, int]:
    """The products a count of :math:`|S_i|` is made of, by name (``"N·H·W"`` -> value)."""
    N, C, H, W = shape
    HW, Cg = H * W, C // groups
    return {"N·H·W": N * HW, "C·H·W": C * HW, "H·W": HW, "(C/G)·H·W": Cg * HW,
            "G·H·W": groups * HW, "N·C·H·W": N * C * HW, "N·(C/G)·H·W": N * Cg * HW,
            "N": N, "C": C, "G": groups, "C/G": Cg, "N·C": N * C, "1": 1}


def _size_feedback(kind: str, value: int, formulas: dict[str, int]) -> str:
    """Why ``value`` is not :math:`|S_i|` of ``kind``: the formula it equals, its flaw."""
    right = _RIGHT[kind]
    named = next((f for f, v in formulas.items() if v == value), None)
    other = next((k for k, f in _RIGHT.items() if f == named and k != kind), None)
    if other is not None:
        why = f"that is |S_i| of {NAMES[other]} ({named})"
    elif named is None:
        why = "it is none of the usual products of N, C, G, H and W"
    elif "H·W" not in named:
        why = f"you computed {named}: you forgot the H·W positions (S_i holds every position)"
    elif named == "G·H·W":
        why = "you put G channels in a group; GN has G groups of C/G channels each"
    elif named.startswith("N·"):
        why = f"you computed {named}: that includes other samples; {kind.upper()} stays in one"
    else:
        why = f"you computed {named}"
    per_group = f" with C/G = {formulas['C/G']}" if kind == "gn" else ""
    return f"{kind.upper()}: {value} is wrong, {why}. {NAMES[kind]}'s |S_i| = {right}{per_group}"


def check_set_sizes(answer: Mapping[str, Any], shape: Sequence[int] = SIZE_SHAPE,
                    groups: int = SIZE_GROUPS) -> CheckResult:
    """Check ``answer = {"bn": ..., "ln": ..., "in": ..., "gn": ...}``: :math:`|S_i|` of each
    norm for a feature map ``shape = (N, C, H, W)`` and GN with ``groups``."""
    title = "Exercise 1 (set sizes)"
    answer, problem = keyed_answer(answer, KINDS, "answer every norm")
    if problem is not None:
        return report(title, False, problem)
    if not all(isinstance(answer[k], int) for k in KINDS):
        return report(title, False, "give whole numbers (an int per norm): |S_i| counts values")
    formulas = size_formulas(shape, groups)
    wrong = [_size_feedback(k, answer[k], formulas) for k in KINDS
             if answer[k] != formulas[_RIGHT[k]]]
    if wrong:
        return report(title, False, "\n  ".join(wrong))
    sizes = ", ".join(f"{k.upper()} {answer[k]}" for k in KINDS)
    return report(title, True, f"|S_i| = {sizes} for (N, C, H, W) = {tuple(shape)}, G = {groups}")


# --------------------------------------------------------------------------------------
# Exercise 2: |S_i|, mu_i and sigma_i^2 of one pixel's set, by hand
# --------------------------------------------------------------------------------------
#: ``(kind, shape, pixel, G)``; GN with 1 < G < C (twice), so that every mistake shows.
STATISTICS_CASES = (
    ("gn", (3, 6, 2, 2), (1, 3, 1, 0), 3),
    ("bn", (3, 6, 2, 2), (1, 3, 1, 0), 3),
    ("ln", (3, 6, 2, 2), (2, 1, 0, 1), 3),
    ("in", (3, 6, 2, 2), (0, 4, 1, 1), 3),
    ("gn", (2, 8, 2, 3), (1, 5, 1, 2), 2),
)


def _stats(x: Tensor, mask: Tensor) -> tuple[int, float, float]:
    values = x[mask]
    m = values.numel()
    mu = values.sum() / m
    return m, float(mu), float(((values - mu) ** 2).sum() / m)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6)


def _right_set_feedback(got: tuple[int, float, float], m: int, var: float,
                        spatial: int) -> str:
    """The mean is right (the set is): what is wrong with ``m`` or ``var``."""
    gm, _, gvar = got
    if m > 1 and _close(gvar, var * m / (m - 1)):
        return "you divided by m - 1 (the unbiased estimator); Eq. (2) divides by m = |S_i|"
    if _close(gvar, math.sqrt(var)):
        return "you returned sigma_i, the standard deviation; return the variance sigma_i^2"
    if gm == m // spatial:
        return f"m = {gm} counts channels, not values: each brings its {spatial} H·W positions"
    if gm != m:
        return f"mu_i is right but m is not: |S_i| = {m} values, you returned {gm}"
    return f"mu_i and m are right, sigma_i^2 is not: expected {var:.6f}, got {gvar:.6f}"


def _statistics_feedback(got: tuple[int, float, float], x: Tensor, kind: str,
                         index: tuple[int, ...], groups: int) -> str | None:
    m, mu, var = _stats(x, normalization_set(kind, x.shape, index, groups))
    if got[0] == m and _close(got[1], mu) and _close(got[2], var):
        return None
    if _close(got[1], mu):
        return _right_set_feedback(got, m, var, math.prod(x.shape[2:]))
    for mask, hint in mistaken_sets(kind, x.shape, index, groups):
        wm, wmu, wvar = _stats(x, mask)
        if _close(got[1], wmu):
            unbiased = wm > 1 and _close(got[2], wvar * wm / (wm - 1))
            return hint + (" (and you divided by m - 1)" if unbiased else "")
    return f"mu_i is wrong: expected {mu:.6f}, got {got[1]:.6f} (m = {m}, sigma_i^2 = {var:.6f})"


def _as_statistics(out: Any) -> tuple[int, float, float] | None:
    """``(m, mu, var)`` as Python numbers, or None if ``out`` is not three numbers."""
    try:
        m, mu, var = out
        return int(m), float(mu), float(var)
    except (TypeError, ValueError, RuntimeError):
        return None


def check_pixel_statistics(fn: Callable[..., Any], seed: int = 0) -> CheckResult:
    """Check ``fn(x, kind, index, groups) -> (m, mu, var)`` on :data:`STATISTICS_CASES`."""
    title = "Exercise 2 (statistics of S_i)"
    for kind, shape, index, groups in STATISTICS_CASES:
        N, C, H, W = shape
        x = example_feature_map(N, C, H * W, seed=seed).reshape(shape)
        where = f"(kind={kind!r}, pixel i={index}, G={groups}, x of shape {shape})"
        out, problem = call_student(fn, x.clone(), kind, index, groups)
        if problem is not None:
            return report(title, False, problem if problem == NOT_IMPLEMENTED
                          else f"{problem}\n  {where}")
        got = _as_statistics(out)
        if got is None:
            return report(title, False, f"return three numbers (m, mu, var), got {out!r:.80}")
        problem = _statistics_feedback(got, x, kind, index, groups)
        if problem is not None:
            return report(title, False, f"{problem}\n  {where}")
    return report(title, True, f"{len(STATISTICS_CASES)} pixels (BN, LN, IN, GN with G = 2 "
                  "and 3): m, mu_i and sigma_i^2 match")


# --------------------------------------------------------------------------------------
# Predict, then reveal: BN's deviation from N = 2 to N = 4
# --------------------------------------------------------------------------------------
def _prediction_feedback(p: float, d2: float, d4: float) -> tuple[bool, str]:
    laws = {"1/sqrt(N)": d2 / math.sqrt(2), "1/N": d2 / 2}
    if abs(p - d4) <= 0.15 * d4:
        return True, "close: you saw that doubling N barely moves BN's deviation"
    for law, value in laws.items():
        if abs(p - value) <= 0.1 * value:
            return False, (f"you followed the {law} law ({value:.3f}); the measured "
                           f"deviation fell far less")
    if p > 1.15 * d2:
        return False, "you predicted a larger deviation; more batch mates never add noise"
    return False, f"you were {abs(p - d4) / d4:.0%} {'above' if p > d4 else 'below'} it"


def reveal_bn_batch_dependence(prediction: Any, batch_sizes: Sequence[int],
                               bn_values: Sequence[float]) -> CheckResult:
    """Reveal BN's measured deviation at ``N = 4`` only once ``prediction`` (a number) is
    recorded; say how it compares with the 1/sqrt(N) and 1/N laws."""
    title = "Prediction (BN's deviation at N = 4)"
    prediction, problem = number_answer(prediction, "predict a number", NOT_PREDICTED)
    if problem is not None:
        return report(title, False, problem)
    values = dict(zip(batch_sizes, bn_values))
    d2, d4 = values[2], values[4]
    passed, verdict = _prediction_feedback(float(prediction), d2, d4)
    return report(title, passed, f"you predicted {prediction:.3f}; measured at N = 4: {d4:.3f} "
                  f"(N = 2: {d2:.3f}).\n  {verdict}. The next cells explain why.", REVEALED)
