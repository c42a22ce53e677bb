r"""Checkers of notebook 06 (how many groups?), with specific feedback, and its measurement.

* :func:`check_group_counts` — exercise 1, an inline question: which ``G`` makes GN equal to
  Instance Norm in a layer of ``C = 64`` channels, and how many groups a 128-channel layer of
  our network uses in the ``C/G = 16`` setting (read from :func:`gnlib.models.build_model`).
* :func:`check_paper_reading` — exercise 2, an inline question: which settings of the paper's
  Table 3 (:data:`gnlib.paper.PAPER`) are at least :data:`WORSE_BY` points worse than the best
  of their row; :func:`worse_than_best` is the rule, and the notebook's summary uses it too.
* :func:`reveal_instance_gap` — the predict-then-reveal: GN with ``C/G = 1`` (= IN) minus GN
  with ``C/G = 16`` (the paper's best), seed-paired on the committed results, revealed only
  once a prediction is recorded.
* :func:`norm_inputs`, :func:`group_costs` — the measurement behind "why the extremes tend to
  be worse": on a trained model's activations, what one set of statistics does to channels of
  different scale (the LN end) and how much class information the statistics GN removes carry
  (the IN end);
* :func:`load_trained_gn`, :func:`gn32_record` — that trained model: the committed GN network
  (:data:`GN32_MODEL`) of the full-schedule figure-1 grid, and the results record of its run.
* :func:`twin_runs`, :func:`twin_paired` — the course's noise floor: GN settings of the
  ``groups`` grid that are the same model as a norm of the ``batch-size`` grid (C/G = 1 is IN,
  G = 1 is LN, G = 32 is GN), run with the same seeds at different commits.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..paper import PAPER
from .common import (NOT_ANSWERED, NOT_PREDICTED, REVEALED, CheckResult, is_placeholder,
                     keyed_answer, number_answer, report)

__all__ = ["GN32_MODEL", "GN32_RUN", "IN_CHANNELS", "ROW_NAMES", "WORSE_BY",
           "check_group_counts", "check_paper_reading", "gn32_record", "group_costs",
           "instance_gap", "load_trained_gn", "norm_inputs", "reveal_instance_gap",
           "worse_than_best"]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _divisors(C: int) -> list[int]:
    return [g for g in range(1, C + 1) if C % g == 0]


# --------------------------------------------------------------------------------------
# Exercise 1: G for Instance Norm at C = 64; G of a 128-channel layer at C/G = 16
# --------------------------------------------------------------------------------------
#: Channels of the layer in the first question, and of the layer / C/G in the second.
IN_CHANNELS = 64
WIDE_CHANNELS, FIXED_CPG = 128, 16


def _groups_in_model(C: int, cpg: int) -> int:
    """G of the ``C``-channel norm layers of our network built with ``channels_per_group``."""
    from ..models import build_model, norm_layers

    layers = [m for m in norm_layers(build_model("gn", channels_per_group=cpg))
              if m.num_channels == C]
    return layers[0].num_groups


def _instance_feedback(g: Any, C: int) -> str | None:
    if not _is_int(g):
        return f"(a) give G as an integer, got {g!r:.30}"
    if g == C:
        return None
    if g < 1 or g > C:
        return f"(a) G = {g} is impossible: 1 <= G <= C = {C} (G groups of C/G channels)"
    if C % g:
        return (f"(a) G = {g} does not divide C = {C}: a group holds C/G whole channels "
                f"(valid G: {_divisors(C)})")
    what = "Layer Norm (all channels in one set)" if g == 1 else "GN between LN and IN"
    return (f"(a) G = {g} gives {g} group(s) of C/G = {C // g} channels: {what}. Instance Norm "
            f"normalizes each channel alone, one channel per group: G = C = {C}")


def _wide_feedback(g: Any, C: int, cpg: int, right: int) -> str | None:
    if not _is_int(g):
        return f"(b) give G as an integer, got {g!r:.30}"
    if g == right:
        return None
    if g == cpg:
        return (f"(b) {g} is C/G, the channels per group that the row fixes; the number of "
                f"groups is G = C / (C/G) = {C}/{cpg} = {right}")
    if g == IN_CHANNELS // cpg:
        return (f"(b) G = {g} is what the {IN_CHANNELS}-channel layers use "
                f"({IN_CHANNELS}/{cpg}); this layer has {C} channels: G = {C}/{cpg} = {right}")
    if g == C * cpg:
        return f"(b) you multiplied C by C/G; divide: G = C / (C/G) = {C}/{cpg} = {right}"
    if g == 32:
        return (f"(b) G = 32 is the fixed-G default; the second row of Table 3 fixes C/G = "
                f"{cpg} instead, so G changes with C: {C}/{cpg} = {right}")
    return f"(b) G = {g} would give C/G = {C / g:g} channels per group, not {cpg}"


def check_group_counts(g_instance: Any, g_wide: Any) -> CheckResult:
    """Check (a) the ``G`` that makes GN equal to IN at ``C = 64`` and (b) the ``G`` of our
    network's 128-channel layers built with ``channels_per_group=16``."""
    title = "Exercise 1 (groups and channels per group)"
    if is_placeholder(g_instance) and is_placeholder(g_wide):
        return report(title, False, NOT_ANSWERED)
    missing = [n for n, v in (("g_instance", g_instance), ("g_wide", g_wide))
               if is_placeholder(v)]
    if missing:
        return report(title, False, f"answer both: still missing {missing}")
    right = _groups_in_model(WIDE_CHANNELS, FIXED_CPG)
    wrong = [p for p in (_instance_feedback(g_instance, IN_CHANNELS),
                         _wide_feedback(g_wide, WIDE_CHANNELS, FIXED_CPG, right)) if p]
    if wrong:
        return report(title, False, "\n  ".join(wrong))
    return report(title, True, f"(a) GN(G = {IN_CHANNELS}) on {IN_CHANNELS} channels is IN; "
                  f"(b) build_model('gn', channels_per_group={FIXED_CPG}) gives its "
                  f"{WIDE_CHANNELS}-channel layers G = {right}")


# --------------------------------------------------------------------------------------
# Exercise 2: reading the paper's Table 3
# --------------------------------------------------------------------------------------
#: A setting counts as clearly worse when its error is this many points above the row's best.
WORSE_BY = 1.0
#: The rows of Table 3: key in :data:`gnlib.paper.PAPER` -> the name used in answers.
ROW_NAMES = {"groups": "G", "channels_per_group": "C/G"}


def worse_than_best(row: Mapping[int, float], by: float = WORSE_BY) -> dict[int, float]:
    """``{setting: points above the row's best}`` for the settings at least ``by`` points
    worse than the best of ``row`` (rounded to 0.1: the table has one decimal)."""
    best = min(row.values())
    return {k: round(v - best, 1) for k, v in row.items() if round(v - best, 1) >= by}


def _row_feedback(name: str, row: Mapping[int, float], got: Any) -> list[str]:
    best_k = min(row, key=row.get)
    best = f"the best, {name} = {best_k}: {row[best_k]:.1f} %"
    if not isinstance(got, (list, tuple, set)) or not all(_is_int(k) for k in got):
        return [f"{name}: give a list of settings (integers), got {got!r:.40}"]
    right = worse_than_best(row)
    out = []
    for k in sorted(set(got) - set(row), reverse=True):
        out.append(f"{name} = {k} is not in the table (settings: {sorted(row, reverse=True)})")
    for k in sorted(set(got) & set(row) - set(right), reverse=True):
        gap = row[k] - row[best_k]
        out.append(f"{name} = {k} ({row[k]:.1f} %) is only {gap:.1f} points above {best}"
                   if k != best_k else f"{name} = {k} is {best} itself")
    for k in sorted(set(right) - set(got), reverse=True):
        out.append(f"you left out {name} = {k}: {row[k]:.1f} % is {right[k]:.1f} points "
                   f"above {best}")
    return out


def check_paper_reading(answer: Mapping[str, Any], paper: Mapping = PAPER) -> CheckResult:
    """Check ``answer = {"G": [...], "C/G": [...]}``: the settings of Table 3 at least
    :data:`WORSE_BY` points worse than the best of their row."""
    title = "Exercise 2 (reading Table 3)"
    names, problem = keyed_answer(answer, tuple(ROW_NAMES.values()), "answer both rows",
                                  key=lambda k: k.upper().replace(" ", ""))
    if problem is not None:
        return report(title, False, problem + (" (an empty list [] if no setting qualifies)"
                                               if "missing" in problem else ""))
    rows = {name: paper[key] for key, name in ROW_NAMES.items()}
    malformed = [p for n in ROW_NAMES.values() for p in _row_feedback(n, rows[n], names[n])
                 if "give a list" in p]
    if malformed:
        return report(title, False, "\n  ".join(malformed))
    if (set(names["G"]) == set(worse_than_best(rows["C/G"]))
            and set(names["C/G"]) == set(worse_than_best(rows["G"]))
            and set(names["G"]) != set(worse_than_best(rows["G"]))):
        return report(title, False, "the rows are swapped: the first row of Table 3 fixes G "
                      "(groups), the second C/G (channels per group)")
    wrong = [p for name in ROW_NAMES.values() for p in _row_feedback(name, rows[name],
                                                                     names[name])]
    if wrong:
        return report(title, False, "\n  ".join(wrong))
    found = "; ".join(f"{n} = {k} (+{v:.1f})" for n in ROW_NAMES.values()
                      for k, v in worse_than_best(rows[n]).items())
    return report(title, True, f"at least {WORSE_BY:.1f} point worse than their row's best: "
                  f"{found}")


# --------------------------------------------------------------------------------------
# Predict, then reveal: C/G = 1 (Instance Norm) minus C/G = 16, seed-paired
# --------------------------------------------------------------------------------------
def instance_gap(records: list[dict], reference: int = 16):
    """The seed-paired difference (:class:`gnlib.analysis.Paired`) of GN's test error with
    ``C/G = 1`` minus ``C/G = reference`` in the ``groups`` records."""
    from ..analysis import paired_difference, runs_frame

    df = runs_frame(records)
    return paired_difference(df, lambda d: d["channels_per_group"] == 1,
                             lambda d: d["channels_per_group"] == reference)


def _gap_feedback(p: float, measured: float, se: float, paper_gap: float) -> tuple[bool, str]:
    tolerance = max(0.5, 2 * se) if se == se else 0.5
    if abs(p - measured) <= tolerance:
        return True, f"within {tolerance:.1f} points of the measurement"
    if abs(p - paper_gap) <= 0.5 and abs(measured - paper_gap) > tolerance:
        return False, (f"you followed the paper (+{paper_gap:.1f} on ImageNet); on "
                       "Fashion-MNIST with this small network the IN end behaves differently")
    if (p > 0) != (measured > 0) and abs(measured) > tolerance:
        side = "worse" if p > 0 else "better"
        other = "better" if p > 0 else "worse"
        return False, f"you expected the IN-like end to be {side}; here it came out {other}"
    return False, (f"right direction, but you were {abs(p - measured):.1f} points "
                   f"{'above' if p > measured else 'below'} the measurement")


def reveal_instance_gap(prediction: Any, records: list[dict], paper: Mapping = PAPER,
                        reference: int = 16) -> CheckResult:
    """Reveal GN's ``C/G = 1`` minus ``C/G = reference`` test error (points, seed-paired)
    only once ``prediction`` (a number of points) is recorded; compare with the paper."""
    title = f"Prediction (C/G = 1 minus C/G = {reference}, in points)"
    prediction, problem = number_answer(prediction, "predict a number of points", NOT_PREDICTED)
    if problem is not None:
        return report(title, False, problem)
    gap = instance_gap(records, reference)
    if gap.n == 0:
        return report(title, False, "no committed runs with C/G = 1 and C/G = "
                      f"{reference} to compare with (run `python -m gnlib reproduce groups`)")
    row = paper["channels_per_group"]
    paper_gap = row[1] - row[reference]
    passed, verdict = _gap_feedback(float(prediction), gap.mean, gap.se, paper_gap)
    return report(title, passed, f"you predicted {prediction:+.1f}; measured: {gap} points, "
                  f"{gap.verdict()}; paper (ImageNet): {paper_gap:+.1f}.\n  {verdict}.",
                  REVEALED)


# --------------------------------------------------------------------------------------
# The measurement: what the two extremes cost, on a trained model's activations
# --------------------------------------------------------------------------------------
#: The committed GN network: the final weights of the figure-1 grid's run **GN, G = 32,
#: seed 0, preset "full"** (60,000 images with crop + flip, 10 epochs; record in
#: ``results/figure1.jsonl``, :func:`gn32_record`), copied from its checkpoint
#: ``results/checkpoints/figure1-b27277a1bd89.pt`` (named by the hash of the record's config as
#: stored, before ``TrainConfig.renorm`` existed) with floating-point tensors as float16, as
#: ``results/models/bn32_seed0.pt`` (:func:`gnlib.batch_stats.load_trained_bn`).
GN32_MODEL = Path(__file__).resolve().parents[2] / "results" / "models" / "gn32_seed0.pt"
#: The run whose weights :data:`GN32_MODEL` holds: preset and config values of its record.
GN32_RUN = {"preset": "full", "norm": "gn", "groups": 32, "channels_per_group": None,
            "seed": 0, "devices": 1}


def gn32_record(path: str | Path | None = None) -> dict:
    """The record (``results/figure1.jsonl``, or ``path``) of the run :data:`GN32_MODEL` was
    copied from: its commit, date, command and test error."""
    from ..experiments import load_results, results_path

    run = {k: v for k, v in GN32_RUN.items() if k != "preset"}
    found = [r for r in load_results(path or results_path("figure1"), preset=GN32_RUN["preset"])
             if all(r["config"].get(k) == v for k, v in run.items())]
    if len(found) != 1:
        raise LookupError(f"expected one record of {GN32_RUN} in {path or 'figure1.jsonl'}, "
                          f"found {len(found)}")
    return found[0]


def load_trained_gn(path: str | Path = GN32_MODEL) -> nn.Module:
    """The trained GN model (``build_model("gn", groups=32)``), float32, in eval mode."""
    from ..models import load_trained

    return load_trained(path, "gn", groups=GN32_RUN["groups"])


def norm_inputs(model: nn.Module, x: Tensor, batch: int = 500) -> list[Tensor]:
    """The input of every normalization layer of ``model`` (eval mode, no gradient), in
    forward order, for the images ``x``."""
    from ..diagnostics import collect_inputs
    from ..models import norm_layers

    layers = norm_layers(model)
    caught: list[list[Tensor]] = [[] for _ in layers]
    collect_inputs(model, layers, x, batch, lambda k, v: caught[k].append(v.detach()))
    return [torch.cat(c).float().contiguous() for c in caught]


def _group_stats(a: Tensor, groups: int, eps: float) -> tuple[Tensor, Tensor]:
    """Mean and std (biased, + eps) of each (sample, group): shapes ``(N, G)``."""
    g = a.reshape(a.shape[0], groups, -1)
    mean = g.mean(-1)
    return mean, ((g - mean[..., None]) ** 2).mean(-1).add(eps).sqrt()


def _nearest_mean_accuracy(f_fit: Tensor, y_fit: Tensor, f_test: Tensor, y_test: Tensor) -> float:
    """Accuracy of a nearest-class-mean classifier on standardized features."""
    mu, sd = f_fit.mean(0), f_fit.std(0) + 1e-6
    f_fit, f_test = (f_fit - mu) / sd, (f_test - mu) / sd
    classes = torch.unique(y_fit)
    centres = torch.stack([f_fit[y_fit == k].mean(0) for k in classes])
    pred = classes[torch.cdist(f_test, centres).argmin(1)]
    return float((pred == y_test).double().mean())


def group_costs(fit: Sequence[Tensor], y_fit: Tensor, test: Sequence[Tensor], y_test: Tensor,
                channels_per_group: Sequence[int] = (64, 32, 16, 8, 4, 2, 1),
                eps: float = 1e-5):
    """What GN with ``C/G`` channels per group would do to each layer's input, one row per
    (layer, C/G), as a DataFrame:

    * ``values``: values per statistic, :math:`(C/G)\\cdot H\\cdot W`;
    * ``scale_mismatch``: the typical factor between a channel's own std and the std of its
      group, :math:`2^{\\mathrm{median}|\\log_2(s_c/\\sigma_g)|}` over the test images' channels
      (1 when every channel is its own group; after GN a channel's std is :math:`s_c/\\sigma_g`);
    * ``class_accuracy``: accuracy of a nearest-class-mean classifier on the :math:`2G`
      statistics :math:`(\\mu_g, \\log\\sigma_g)` of each image — the information GN removes
      (fitted on ``fit``, scored on ``test``; chance: 1 / classes).

    ``fit`` / ``test``: the layers' inputs (:func:`norm_inputs`) for two disjoint image sets.
    """
    import pandas as pd

    rows = []
    for k, (a, b) in enumerate(zip(fit, test)):
        N, C = b.shape[:2]
        hw = b[0, 0].numel()
        own = b.reshape(N, C, -1).var(-1, unbiased=False).add(eps).sqrt()
        for cpg in channels_per_group:
            if C % cpg:
                continue
            G = C // cpg
            _, s_test = _group_stats(b, G, eps)
            ratio = own / s_test.repeat_interleave(cpg, dim=1)
            mismatch = 2 ** float(ratio.log2().abs().median())
            m_fit, s_fit = _group_stats(a, G, eps)
            m_test, _ = _group_stats(b, G, eps)
            acc = _nearest_mean_accuracy(torch.cat([m_fit, s_fit.log()], 1), y_fit,
                                         torch.cat([m_test, s_test.log()], 1), y_test)
            rows.append({"layer": k, "C": C, "H x W": hw, "C/G": cpg, "G": G,
                         "values": cpg * hw, "scale_mismatch": mismatch,
                         "class_accuracy": 100 * acc})
    return pd.DataFrame(rows)
