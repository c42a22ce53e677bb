r"""Where BN's small-slice gap comes from: one trained network, three evaluations.

Every BN run of Figure 1 is tested three ways (:mod:`gnlib.train`): with its running averages
(eval mode, the figure's number), with PreciseBN statistics, and with train-mode statistics of
test slices of its own size. For slices of :math:`s` images against slices of :math:`S` (the
most images), and an evaluation :math:`m`, the seed-paired gap is

.. math::

    g_m(k) = e_m(s, k) - e_m(S, k)\qquad\text{(seed } k\text{)}.

An evaluation *recovers* part of the running-average gap when, seed by seed,
:math:`\delta_m(k) = g_m(k) - g_{\mathrm{ema}}(k)` is significantly negative (the t-test of
:mod:`~gnlib.analysis.stats`); the share recovered is :math:`-\bar\delta_m / \bar g_{\mathrm{ema}}`.
If neither PreciseBN nor train-mode statistics recover it, the network trained with those
statistics is itself worse (a cost paid in training); if train-mode statistics do, training and
inference normalize with different statistics.
"""
from __future__ import annotations

from typing import NamedTuple

from .frames import condition_values
from .stats import Paired, paired_test

__all__ = ["EVALUATIONS", "GapSource", "describe_gap_sources", "gap_sources"]

#: Column of :func:`~gnlib.analysis.runs_frame` and name of each evaluation; the first is the reference.
EVALUATIONS = (("test_error", "running averages"), ("test_error_precise_bn", "PreciseBN"),
               ("test_error_train_mode", "train-mode statistics"))


class GapSource(NamedTuple):
    """One evaluation's gap ``gap`` (:math:`\\bar g_m`) and its change against the running
    averages' gap, ``change`` (:math:`\\bar\\delta_m`; ``None`` for the running averages)."""

    evaluation: str
    gap: Paired
    change: Paired | None


def _most_images(df) -> int:
    return int(df[df["norm"] == "bn"]["slice"].max())


def gap_sources(df, s: int, top: int | None = None) -> list[GapSource]:
    """Per evaluation of :data:`EVALUATIONS`, the seed-paired gap of BN over ``s`` images minus
    BN over ``top`` (default: the most images per slice in ``df``) and its change against the
    running averages' gap; over the seeds usable in both conditions with every evaluation."""
    top = top or _most_images(df)
    gaps = {col: condition_values(df, "bn", s, col) - condition_values(df, "bn", top, col)
            for col, _ in EVALUATIONS}
    seeds = sorted(set.intersection(*(set(g.dropna().index) for g in gaps.values())))
    ref = gaps[EVALUATIONS[0][0]][seeds]
    return [GapSource(name, paired_test(gaps[col][seeds].tolist()),
                      None if col == EVALUATIONS[0][0] else paired_test((gaps[col][seeds] - ref).tolist()))
            for col, name in EVALUATIONS]


def _recovered(source: GapSource, reference: Paired) -> str:
    c = source.change
    if c.n < 2:
        return "one seed pair only, no test"
    if not reference.mean > 0:
        return f"no gap to recover (change {c})"
    test = f"(change {c}, {c.verdict(worse='larger', better='smaller')})"
    if not (c.significant and c.mean < 0):
        return f"recovers no significant part of it {test}"
    return f"recovers {-100 * c.mean / reference.mean:.0f} % of it {test}"


def describe_gap_sources(df, slices=(2, 1), top: int | None = None) -> list[str]:
    """Per slice size: the running averages' gap with its verdict, then what PreciseBN and
    train-mode statistics leave of it and whether they recover part of it (:func:`gap_sources`)."""
    top, out = top or _most_images(df), []
    for s in slices:
        ref, *others = gap_sources(df, s, top)
        who = f"{s} image{'s' * (s > 1)} per device minus {top}"
        out.append(f"{who}, {ref.evaluation}: {ref.gap}, {ref.gap.verdict()}")
        out += [f"  {o.evaluation}: {o.gap}; {_recovered(o, ref.gap)}" for o in others]
    return out
