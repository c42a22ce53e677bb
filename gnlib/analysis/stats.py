r"""Seed-paired statistics: runs with the same seed share the initialization, the data order
and the augmentation, so two configurations are compared seed by seed. With
:math:`d_k = e_A(k) - e_B(k)` over the :math:`n` seeds both finished,

.. math::

    \bar d \pm \mathrm{SE},\quad \mathrm{SE} = \frac{s_d}{\sqrt n},\qquad
    t = \frac{\bar d}{\mathrm{SE}}\ \text{with}\ n - 1\ \text{degrees of freedom}

(:func:`paired_difference`); a verdict says "worse" / "better" only when the two-sided
:math:`p < 0.05` (with 3 seeds that needs :math:`|t| > 4.30`). Several tests of one family
(e.g. every setting of a row against its best) are corrected with :func:`holm`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

__all__ = ["ALPHA", "Paired", "describe_paired", "holm", "mean_se", "paired_difference",
           "paired_test"]

ALPHA = 0.05


def mean_se(values) -> tuple[float, float, int]:
    """Mean, standard error of the mean (NaN for one value) and count of the non-NaN values."""
    v = [float(x) for x in values if x == x]
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    m = sum(v) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (n - 1)) if n > 1 else math.nan
    return m, sd / math.sqrt(n) if n > 1 else math.nan, n


@dataclass(frozen=True)
class Paired:
    """A seed-paired difference A - B: mean, standard error, t, df = n - 1, two-sided p."""

    mean: float
    se: float
    t: float
    df: int
    p: float
    n: int

    @property
    def significant(self) -> bool:
        return self.n > 1 and self.p < ALPHA

    def verdict(self, worse: str = "worse", better: str = "better") -> str:
        """``worse`` / ``better`` when significant at 5 %, else what the test says."""
        if self.n < 2:
            return "one seed pair only, no test"
        if not self.significant:
            p = f"{self.p:.2f}" if self.p >= 0.1 else f"{self.p:.3f}"   # 0.0525 is not "0.05"
            return f"not significant at 5 % with {self.n} seeds (p = {p})"  # not "equal"
        return f"{worse if self.mean > 0 else better} (p = {self.p:.3f})"

    def __str__(self) -> str:
        se = f" ± {self.se:.2f}" if self.se == self.se else ""
        return f"{self.mean:+.2f}{se} (n = {self.n})"


def paired_test(diffs) -> Paired:
    """The t-test of per-seed differences ``diffs`` (mean ± SE, df = n - 1, two-sided p)."""
    from scipy import stats

    m, se, n = mean_se(diffs)
    if n < 2 or not se > 0:
        return Paired(m, se, math.nan, max(n - 1, 0), math.nan, n)
    t = m / se
    return Paired(m, se, t, n - 1, float(2 * stats.t.sf(abs(t), n - 1)), n)


def paired_difference(df, a: Callable, b: Callable, value: str = "test_error") -> Paired:
    """Seed-paired ``value`` of the usable runs selected by ``a(df)`` minus those of ``b(df)``
    (boolean masks); seeds present in both only."""
    d = df[df["usable"]]
    ea = d[a(d)].groupby("seed")[value].mean()
    eb = d[b(d)].groupby("seed")[value].mean()
    return paired_test((ea - eb).dropna().tolist())


def describe_paired(name_a: str, name_b: str, p: Paired) -> str:
    """One sentence: ``"A - B: +0.70 ± 0.10 (n = 3): worse (p = 0.020)"``."""
    return f"{name_a} - {name_b}: {p}: {p.verdict()}"


def holm(pvalues) -> list[float]:
    r"""Holm's step-down adjusted p-values of one family of tests, in the order given.

    With the :math:`m` non-NaN p-values sorted, :math:`p_{(1)} \le \dots \le p_{(m)}`, the
    adjusted :math:`\tilde p_{(i)} = \min\big(1, \max_{j \le i} (m - j + 1)\, p_{(j)}\big)`;
    rejecting where :math:`\tilde p < \alpha` keeps the chance of any false "significant" in
    the family at most :math:`\alpha`. NaN (no test) stays NaN and does not count in :math:`m`.
    """
    p = [float(v) for v in pvalues]
    order = sorted((i for i, v in enumerate(p) if v == v), key=lambda i: p[i])
    m, out, running = len(order), [math.nan] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out
