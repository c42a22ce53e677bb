r"""Checkers of notebook 07 (beyond Group Norm), with specific feedback.

* :func:`check_renorm_values` — exercise 1, an inline question on Batch Renorm: r and d when
  the batch statistics equal the running ones, and the bounds ``(r_max, d_max)`` that make BR
  train exactly as BN (where the BR paper's warm-up starts). Both are verified by running
  :class:`gnlib.norms.BatchRenorm2d`, not read from a table.
* :func:`check_syncbn_count` — exercise 2, an inline question: how many values one channel's
  statistics average with SyncBN and with per-device BN, for ``16 devices x 2 images`` of
  ``7 x 7`` maps; wrong numbers are matched with the products students typically write.
* :func:`reveal_br_vs_bn` — the predict-then-reveal: Batch Renorm (with the BR paper's
  warm-up) minus BN at batch 2, seed-paired on the committed results.
* :func:`renorm_frame`, :func:`renorm_comparisons` — the small-batch runs with Batch Renorm
  split by recipe (fixed bounds as in the GN paper, warm-up as in the BR paper), seed-paired
  against BN: the numbers behind "why BR does not beat BN here"; :func:`describe_renorm`
  prints them with the commits of both sides (no verdict for a gap between commits below the
  between-commit floor), :func:`dirty_runs` names the runs made from a working tree with
  uncommitted changes.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from ..paper import PAPER
from .common import (NOT_PREDICTED, REVEALED, CheckResult, as_number, keyed_answer, number_answer,
                     report)

__all__ = ["RENORM_LABELS", "SYNC_SETUP", "br_vs_bn", "check_renorm_values", "check_syncbn_count",
           "describe_renorm", "dirty_runs", "renorm_bn_gap", "renorm_comparisons", "renorm_frame",
           "renorm_identity", "reveal_br_vs_bn"]


# --------------------------------------------------------------------------------------
# Exercise 1: r and d at equal statistics; the bounds that make BR equal to BN
# --------------------------------------------------------------------------------------
def renorm_identity(seed: int = 0) -> tuple[float, float]:
    """``(r, d)`` that :class:`~gnlib.norms.BatchRenorm2d` computes for a batch whose
    statistics equal the layer's running ones (all channels agree; returns channel 0)."""
    from ..norms import BatchRenorm2d

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 3, 5, 5, generator=gen, dtype=torch.float64) * 2 + 1
    br = BatchRenorm2d(3, r_max=3.0, d_max=5.0).double()
    br.running_mean.copy_(x.mean(dim=(0, 2, 3)))
    br.running_var.copy_(x.var(dim=(0, 2, 3), unbiased=False))
    with torch.no_grad():
        br(x)
    return float(br.last_r[0]), float(br.last_d[0])


def renorm_bn_gap(r_max: float, d_max: float, seed: int = 0) -> float:
    """Max |BR - BN| of a training forward with bounds ``(r_max, d_max)`` on a batch whose
    statistics are far from the (fresh) running ones."""
    from torch import nn

    from ..norms import BatchRenorm2d

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 4, 4, generator=gen, dtype=torch.float64) * 3 + 2
    br = BatchRenorm2d(3, r_max=r_max, d_max=d_max).double()
    bn = nn.BatchNorm2d(3).double()
    with torch.no_grad():
        return float((br(x) - bn(x)).abs().max())


def _rd_feedback(r: Any, d: Any, right: tuple[float, float]) -> list[str]:
    rv, dv = as_number(r), as_number(d)
    if rv is None or dv is None:
        return [f"give r and d as numbers, got r = {r!r:.20}, d = {d!r:.20}"]
    if math.isclose(rv, right[1], abs_tol=1e-6) and math.isclose(dv, right[0], abs_tol=1e-6) \
            and rv != dv:
        return ["r and d are swapped: r = sigma_B / sigma is a ratio (1 when the spreads "
                "agree), d = (mu_B - mu) / sigma a shift (0 when the means agree)"]
    out = []
    if not math.isclose(rv, right[0], abs_tol=1e-6):
        why = {0.0: "r is a ratio sigma_B / sigma, not a difference: equal spreads give 1 "
                    "(r = 0 would zero every output)",
               1.5: "1.5 is r_max, the clip bound; nothing is clipped when the statistics agree",
               3.0: "3 is the BR paper's final r_max, a clip bound, not r"}.get(rv)
        out.append(f"r = {rv:g} is wrong: "
                   + (why or f"r = sigma_B / sigma with sigma_B = sigma gives {right[0]:g}"))
    if not math.isclose(dv, right[1], abs_tol=1e-6):
        why = {1.0: "d is a shift (mu_B - mu) / sigma, not a ratio: equal means give 0",
               0.5: "0.5 is d_max, the clip bound; nothing is clipped when the statistics agree",
               5.0: "5 is the BR paper's final d_max, a clip bound, not d"}.get(dv)
        out.append(f"d = {dv:g} is wrong: "
                   + (why or f"d = (mu_B - mu) / sigma with mu_B = mu gives {right[1]:g}"))
    return out


def _bounds_feedback(r_max: Any, d_max: Any) -> list[str]:
    rm, dm = as_number(r_max), as_number(d_max)
    if rm is None or dm is None:
        return [f"give r_max and d_max as numbers, got {r_max!r:.20}, {d_max!r:.20}"]
    if rm < 1:
        return [f"r_max = {rm:g} is impossible: r is clipped to [1/r_max, r_max], so r_max >= 1"
                "; the narrowest interval pins r to one value"]
    if dm < 0:
        return [f"d_max = {dm:g} is impossible: d is clipped to [-d_max, d_max], so d_max >= 0"]
    if renorm_bn_gap(rm, dm) < 1e-9:
        return []
    if math.isinf(rm) or math.isinf(dm):
        return ["without clipping BR's training output is the inference formula "
                "(x - mu) / sigma with the running statistics, not BN's (x - mu_B) / sigma_B"]
    out = []
    if rm != 1:
        out.append(f"r_max = {rm:g} lets r move away from 1 when sigma_B != sigma; BN is "
                   "r = 1 always, i.e. the interval [1/r_max, r_max] = [1, 1]")
    if dm != 0:
        out.append(f"d_max = {dm:g} lets d move away from 0 when mu_B != mu; BN is d = 0 "
                   "always, i.e. the interval [-d_max, d_max] = [0, 0]")
    return out


def check_renorm_values(answer: Mapping[str, Any]) -> CheckResult:
    """Check ``answer = {"r": ..., "d": ..., "r_max": ..., "d_max": ...}``: r and d when the
    batch statistics equal the running ones, and the bounds for which BR trains as BN."""
    title = "Exercise 1 (Batch Renorm's r and d)"
    keys = ("r", "d", "r_max", "d_max")
    answer, problem = keyed_answer(answer, keys, "answer all four")
    if problem is not None:
        return report(title, False, problem)
    right = renorm_identity()
    wrong = _rd_feedback(answer["r"], answer["d"], right)
    wrong += _bounds_feedback(answer["r_max"], answer["d_max"])
    if wrong:
        return report(title, False, "\n  ".join(wrong))
    return report(title, True, f"BatchRenorm2d computes r = {right[0]:g}, d = {right[1]:g} when "
                  f"the statistics agree, and with r_max = {answer['r_max']:g}, d_max = "
                  f"{answer['d_max']:g} its training output equals nn.BatchNorm2d's")


# --------------------------------------------------------------------------------------
# Exercise 2: values per channel statistic with SyncBN and per-device BN
# --------------------------------------------------------------------------------------
#: 16 devices x 2 images of a 128-channel layer at 7 x 7.
SYNC_SETUP = {"devices": 16, "per_device": 2, "C": 128, "H": 7, "W": 7}


def _count_products(s: Mapping[str, int]) -> dict[int, str]:
    """Typical products of the setup, value -> what it counts (the wrong answers' names)."""
    D, n, C, HW = s["devices"], s["per_device"], s["C"], s["H"] * s["W"]
    named = {
        D * n * HW: "the global batch's positions, D x n x H x W (SyncBN)",
        n * HW: "one device's positions, n x H x W (per-device BN)",
        HW: "one image's positions, H x W: that is Instance Norm's set",
        D * n: "images only, D x n: you forgot the H x W positions of each image",
        n: "one device's images only: you forgot the H x W positions",
        D: "the number of devices only",
        D * n * C * HW: "all channels of the global batch: BN statistics are per channel",
        n * C * HW: "all channels of one device: BN statistics are per channel",
        C * HW: "all channels of one image: that is Layer Norm's set",
        D * HW: "one image per device: each device holds n images",
    }
    return named


def _count_feedback(name: str, got: Any, right: int, products: dict[int, str]) -> str | None:
    if isinstance(got, bool) or not isinstance(got, int):
        return f"{name}: give a whole number (values are counted), got {got!r:.30}"
    if got == right:
        return None
    what = products.get(got)
    return f"{name}: {got} is wrong, " + (f"that counts {what}" if what else
                                           "it is none of the usual products of devices, "
                                           "images, C, H and W")


def check_syncbn_count(answer: Mapping[str, Any], setup: Mapping[str, int] = SYNC_SETUP
                       ) -> CheckResult:
    """Check ``answer = {"syncbn": ..., "per_device_bn": ...}``: the number of values one
    channel's mean and variance average over, for ``setup`` (devices x images per device,
    C channels at H x W)."""
    title = "Exercise 2 (values per statistic across devices)"
    answer, problem = keyed_answer(answer, ("syncbn", "per_device_bn"), "answer both")
    if problem is not None:
        return report(title, False, problem)
    D, n, HW = setup["devices"], setup["per_device"], setup["H"] * setup["W"]
    products = _count_products(setup)
    right = {"syncbn": D * n * HW, "per_device_bn": n * HW}
    if answer["syncbn"] == right["per_device_bn"] and answer["per_device_bn"] == right["syncbn"]:
        return report(title, False, "swapped: SyncBN gathers the statistics of all devices "
                      f"({right['syncbn']}), per-device BN keeps its own ({right['per_device_bn']})")
    wrong = [p for p in (_count_feedback(k, answer[k], right[k], products) for k in right) if p]
    if wrong:
        return report(title, False, "\n  ".join(wrong))
    return report(title, True, f"SyncBN: {D} x {n} x {HW} = {right['syncbn']} values per channel; "
                  f"per-device BN: {n} x {HW} = {right['per_device_bn']} "
                  f"({right['syncbn'] // right['per_device_bn']}x fewer)")


# --------------------------------------------------------------------------------------
# Predict, then reveal: Batch Renorm (BR paper's warm-up) minus BN at batch 2
# --------------------------------------------------------------------------------------
def br_vs_bn(records: list[dict], batch_size: int = 2, renorm: str = "warmup"):
    """Seed-paired :class:`gnlib.analysis.Paired` of BR (``renorm``) minus BN at
    ``batch_size`` in the ``small-batch`` records."""
    from ..analysis import paired_difference, runs_frame

    df = runs_frame(records)
    df["renorm"] = [r["config"].get("renorm", "fixed") for r in records]
    return paired_difference(
        df, lambda d: (d["norm"] == "br") & (d["renorm"] == renorm) & (d["batch_size"] == batch_size),
        lambda d: (d["norm"] == "bn") & (d["batch_size"] == batch_size))


def reveal_br_vs_bn(prediction: Any, records: list[dict], batch_size: int = 2,
                    paper: Mapping = PAPER, floor: float | None = None) -> CheckResult:
    """Reveal BR (warm-up) minus BN at ``batch_size`` (points, seed-paired) only once
    ``prediction`` (a number of points) is recorded; the paper's batch-4 gap for reference.
    The verdict is :func:`gnlib.analysis.reports.commit_verdict`'s: where the BR and BN runs
    ran at different commits and the gap is below ``floor`` (the between-commit noise floor),
    none."""
    title = f"Prediction (Batch Renorm minus BN at batch {batch_size}, in points)"
    p, problem = number_answer(prediction, "predict a number of points", NOT_PREDICTED)
    if problem is not None:
        return report(title, False, problem)
    gap = br_vs_bn(records, batch_size)
    if gap.n == 0:
        return report(title, False, "no committed BR (warm-up) and BN runs at batch "
                      f"{batch_size} to compare with (run `python -m gnlib reproduce small-batch`)")
    paper_gap = paper["batch4"]["br"] - paper["batch4"]["bn"]
    tolerance = max(0.3, 2 * gap.se) if gap.se == gap.se else 0.3
    if abs(p - gap.mean) <= tolerance:
        passed, verdict = True, f"within {tolerance:.1f} points of the measurement"
    elif abs(p - paper_gap) <= 0.3:
        passed, verdict = False, (f"you followed the GN paper's ImageNet gap at batch 4 "
                                  f"({paper_gap:+.1f}); here BR comes out differently")
    elif (p > 0) != (gap.mean > 0):
        passed, verdict = False, (f"you expected BR to be {'worse' if p > 0 else 'better'} "
                                  f"than BN; it came out {'better' if p > 0 else 'worse'}")
    else:
        passed, verdict = False, (f"right direction, {abs(p - gap.mean):.1f} points "
                                  f"{'above' if p > gap.mean else 'below'} the measurement")
    from ..analysis.reports import commit_verdict
    from ..paper import NORM_LABELS

    df = renorm_frame(records)
    sides = [_side_commits(df, RENORM_LABELS["warmup"], batch_size),
             _side_commits(df, NORM_LABELS["bn"], batch_size)]
    commits = f"BR runs: {', '.join(sides[0])}; BN runs: {', '.join(sides[1])}"
    return report(title, passed, f"you predicted {p:+.2f}; measured: {gap} points, "
                  f"{commit_verdict(gap, *sides, floor)} ({commits}); GN paper, ImageNet at "
                  f"batch 4: {paper_gap:+.1f}.\n  {verdict}.", REVEALED)


# --------------------------------------------------------------------------------------
# Why Batch Renorm does not beat BN here: the runs side by side
# --------------------------------------------------------------------------------------
#: How the notebook names the two Batch Renorm recipes.
RENORM_LABELS = {"fixed": "BR, fixed bounds (GN paper)", "warmup": "BR, warm-up (BR paper)"}


def renorm_frame(records: list[dict]):
    """:func:`gnlib.analysis.runs_frame` of small-batch records plus ``method`` (BR split by
    its recipe, :data:`RENORM_LABELS`), ``commit``, the last epoch's BN running-statistics
    diagnostics ``var_ratio`` / ``mean_gap``, and, from the final ``bn_layers`` report (mean
    over layers), ``slice_mean_dev`` / ``slice_var_ratio``: how far the statistics of one
    training batch are from the data's (NaN where not recorded)."""
    from ..analysis.reports import commits_frame
    from ..paper import NORM_LABELS

    df = commits_frame(records)                                   # + commit
    df["method"] = [RENORM_LABELS[r["config"].get("renorm", "fixed")]
                    if r["config"]["norm"] == "br" else NORM_LABELS[r["config"]["norm"]]
                    for r in records]
    last = lambda r, k: (r["history"].get(k) or [None])[-1]  # noqa: E731
    df["var_ratio"] = [last(r, "bn_var_ratio") for r in records]
    df["mean_gap"] = [last(r, "bn_mean_gap") for r in records]
    layers = lambda r, k: (sum(r["bn_layers"][k]) / len(r["bn_layers"][k])  # noqa: E731
                           if k in r.get("bn_layers", {}) else None)
    df["slice_mean_dev"] = [layers(r, "slice_mean_dev") for r in records]
    df["slice_var_ratio"] = [layers(r, "slice_var_ratio") for r in records]
    return df.astype({k: float for k in ("var_ratio", "mean_gap", "slice_mean_dev",
                                         "slice_var_ratio")})


def renorm_comparisons(df, batch_sizes=(4, 2)) -> list[tuple[int, str, str, Any]]:
    """Seed-paired comparisons at each batch size: each BR recipe minus BN, and the warm-up
    minus the fixed bounds: ``(batch, A, B, Paired)``."""
    from ..analysis import paired_difference
    from ..paper import NORM_LABELS

    out = []
    pairs = [(RENORM_LABELS["warmup"], NORM_LABELS["bn"]), (RENORM_LABELS["fixed"], NORM_LABELS["bn"]),
             (RENORM_LABELS["warmup"], RENORM_LABELS["fixed"])]
    for b in batch_sizes:
        for a, ref in pairs:
            sel = lambda d, m: (d["method"] == m) & (d["batch_size"] == b)  # noqa: E731
            if (sel(df, a) & df["usable"]).any() and (sel(df, ref) & df["usable"]).any():
                out.append((b, a, ref, paired_difference(df, lambda d, a=a: sel(d, a),
                                                         lambda d, r=ref: sel(d, r))))
    return out


def _side_commits(df, method: str, batch_size: int) -> list[str]:
    sel = df[(df["method"] == method) & (df["batch_size"] == batch_size) & df["usable"]]
    return sorted(set(sel["commit"]))


def describe_renorm(df, floor: float | None = None) -> list[str]:
    """One line per :func:`renorm_comparisons` of :func:`renorm_frame` ``df``: both sides with
    the commits of their runs, the seed-paired difference and
    :func:`gnlib.analysis.reports.commit_verdict` (no verdict where the sides ran at
    different commits and the gap is below ``floor``, the between-commit noise floor)."""
    from ..analysis.reports import commit_verdict

    out = []
    for b, a, ref, p in renorm_comparisons(df):
        ca, cb = _side_commits(df, a, b), _side_commits(df, ref, b)
        out.append(f"batch {b}: {a} [{', '.join(ca)}] minus {ref} [{', '.join(cb)}]: {p}: "
                   f"{commit_verdict(p, ca, cb, floor)}")
    return out


def dirty_runs(df) -> list[str]:
    """For each (method, batch size) of ``df`` (:func:`renorm_frame`) with runs made from a
    working tree with uncommitted changes (``git_commit`` ending in ``+dirty``): how many of
    its runs, at which commits."""
    out = []
    for (method, b), g in df.groupby(["method", "batch_size"], sort=False):
        dirty = g[g["commit"].str.endswith("+dirty")]
        if len(dirty):
            out.append(f"{method} at batch {b}: {len(dirty)} of {len(g)} runs "
                       f"(seed{'s' * (len(dirty) > 1)} "
                       f"{', '.join(str(int(s)) for s in sorted(dirty['seed']))}; "
                       f"{', '.join(sorted(set(dirty['commit'])))})")
    return out
