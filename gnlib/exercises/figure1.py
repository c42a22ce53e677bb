r"""Checkers of notebook 05 (the paper's Figure 1), with specific feedback.

* :func:`check_values_per_statistic` — exercise 2, an inline question: how many values of one
  channel a BN statistic averages at a layer of ``H x W`` with ``s`` images per device
  (:math:`s\cdot H\cdot W`); a wrong number is matched against the usual slips.
* :func:`check_paired_difference` — exercise 1, ``fn(errors_a, errors_b) -> (mean, se)``: the
  seed-paired difference of two conditions and its standard error, checked against
  :func:`gnlib.analysis.paired_difference`'s formula; an unpaired standard error, a standard
  deviation instead of a standard error, or a flipped sign is named.
* :func:`reveal_bn_penalty` — the predict-then-reveal: how many points BN loses with the
  statistics of 2 images per device instead of 32, revealed once a prediction is recorded.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from .common import (NOT_ANSWERED, NOT_PREDICTED, REVEALED, CheckResult, call_student,
                     is_placeholder, number_answer, report)

__all__ = ["PAIRED_CASES", "check_paired_difference", "check_values_per_statistic",
           "reveal_bn_penalty", "solution_paired_difference"]


# ---- exercise 2 --------------------------------------------------------------------------
def check_values_per_statistic(answer: Any, images: int, height: int, width: int,
                               channels: int, total_batch: int = 32) -> CheckResult:
    """Check the number of values one BN statistic (one channel, one device) averages."""
    title = "Exercise 2 (values per BN statistic)"
    if is_placeholder(answer):
        return report(title, False, NOT_ANSWERED)
    if isinstance(answer, bool) or not isinstance(answer, int):
        return report(title, False, "give a whole number: a statistic averages a count of values")
    right = images * height * width
    slips = {images: "you counted images only: every image brings its H·W positions",
             height * width: "you counted one image's positions: the slice has "
                             f"{images} images",
             right * channels: "you multiplied by the channels: BN keeps one statistic per channel",
             total_batch * height * width: f"you used the whole batch of {total_batch}: each "
                                           "device sees only its own slice"}
    if answer == right:
        return report(title, True, f"{images} images x {height} x {width} = {right} values per "
                      "channel: plenty of values, but only from a few images")
    why = slips.get(answer, f"expected images x H x W = {images} x {height} x {width}")
    return report(title, False, f"{answer} is wrong: {why}")


# ---- exercise 1 --------------------------------------------------------------------------
#: ``(errors of A per seed, errors of B per seed)``: made-up numbers where the paired and the
#: unpaired standard errors differ a lot (the seeds move both conditions together).
PAIRED_CASES = (
    ((9.30, 9.55, 9.10), (8.60, 8.80, 8.45)),
    ((8.97, 9.20, 8.70), (8.55, 8.62, 8.50)),
)


def _paired(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float, float]:
    """Mean and SE of a - b seed by seed; the SE of an unpaired comparison; the sd."""
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    m = sum(d) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in d) / (n - 1))
    var = lambda v: sum((x - sum(v) / n) ** 2 for x in v) / (n - 1)  # noqa: E731
    return m, sd / math.sqrt(n), math.sqrt(var(a) / n + var(b) / n), sd


def _paired_feedback(mean: float, se: float, a, b) -> str | None:
    m, se_p, se_u, sd = _paired(a, b)
    close = lambda u, v: math.isclose(u, v, rel_tol=1e-3, abs_tol=1e-6)  # noqa: E731
    if close(mean, -m):
        return "your sign is flipped: the difference is A - B, seed by seed"
    if not close(mean, m):
        return f"the mean difference should be {m:.3f} (the mean of a_k - b_k over seeds k)"
    if close(se, se_p):
        return None
    if close(se, se_u):
        return ("that is the unpaired standard error sqrt(s_a^2/n + s_b^2/n): it ignores that "
                "seed k of A and B share init, data order and augmentation; take the standard "
                "error of the per-seed differences")
    if close(se, sd):
        return "that is the standard deviation of the differences: divide by sqrt(n)"
    if close(se, sd * math.sqrt((len(a) - 1) / len(a)) / math.sqrt(len(a))):
        return "you used the biased sd (divide by n - 1, not n, for a sample's sd)"
    return f"the standard error should be {se_p:.4f} (sd of the differences / sqrt(n))"


def check_paired_difference(fn: Callable[..., Any]) -> CheckResult:
    """Check ``fn(errors_a, errors_b) -> (mean, se)`` on :data:`PAIRED_CASES`."""
    title = "Exercise 1 (seed-paired difference)"
    for a, b in PAIRED_CASES:
        out, problem = call_student(fn, list(a), list(b))
        if problem is not None:
            return report(title, False, problem)
        try:
            mean, se = (float(v) for v in out)
        except (TypeError, ValueError):
            return report(title, False, f"return two numbers (mean, se), got {out!r:.60}")
        problem = _paired_feedback(mean, se, a, b)
        if problem is not None:
            return report(title, False, f"{problem}\n  A = {list(a)}, B = {list(b)}")
    return report(title, True, "mean and standard error of the per-seed differences: right "
                  "on both cases")


# ---- predict, then reveal ---------------------------------------------------------------------
def reveal_bn_penalty(prediction: Any, measured: float, se: float, n: int,
                      paper: float) -> CheckResult:
    """Reveal BN's measured penalty (points, statistics of 2 images minus 32, seed-paired
    mean ± SE over ``n`` seeds) once ``prediction`` (a number of points) is recorded."""
    title = "Prediction (BN's penalty at 2 images per device)"
    prediction, problem = number_answer(prediction, "predict a number of points (e.g. 1.5)",
                                        NOT_PREDICTED)
    if problem is not None:
        return report(title, False, problem, REVEALED)
    band = max(2 * se if se == se else 0.0, 0.25)
    near = abs(prediction - measured) <= band
    if near:
        why = "right: within the seed noise of the measurement"
    elif prediction >= 0.5 * paper:
        why = (f"you expected a penalty like the paper's ({paper:+.1f} points on ImageNet); "
               "on Fashion-MNIST trained to the end of its schedule it is much smaller")
    elif prediction < 0:
        why = "you expected BN to gain from fewer images; it loses"
    else:
        why = f"you were {abs(prediction - measured):.2f} points {'above' if prediction > measured else 'below'}"
    return report(title, near, f"measured {measured:+.2f} ± {se:.2f} points over {n} seeds "
                  f"(seed-paired); you predicted {prediction:+.2f}: {why}", REVEALED)


# ---- model solution (notebook 05 shows it after the checker) ---------------------------------
def solution_paired_difference(errors_a: Sequence[float],
                               errors_b: Sequence[float]) -> tuple[float, float]:
    """Exercise 1's model solution: mean and standard error of the per-seed differences."""
    d = [a - b for a, b in zip(errors_a, errors_b)]           # d_k = e_A(k) - e_B(k)
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))  # sample sd (n - 1)
    return mean, sd / math.sqrt(n)                            # SE = sd / sqrt(n)
