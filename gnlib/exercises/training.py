r"""Checkers of notebook 04 (training with BN, LN, IN and GN), with specific feedback.

* :func:`check_scaled_lr` — exercise 1, an inline question: the learning rate of the linear
  scaling rule :math:`\eta = \eta_0 \cdot B / 32` for another batch; a wrong number is matched
  against the usual slips (ratio inverted, no scaling, the square-root rule, ...).
* :func:`check_steps_per_epoch` — exercise 2, an inline question: SGD steps in one epoch when
  the batch of :math:`B` images is spread over devices (as in the Figure-1 runs); dividing by
  the images per device, forgetting the dropped partial batch, ... are named.
* :func:`check_bn_vs_gn` — exercise 3, multiple choice (:data:`BN_VS_GN_OPTIONS`): why GN
  can reach a lower training error than BN but a higher test error (the paper's Figure 4);
  every wrong option gets its own explanation.
* :func:`reveal_norm_ranking` — the predict-then-reveal: rank BN, LN, IN, GN by test error
  with statistics over 32 images, revealed against the committed runs once a prediction is
  recorded; a swapped pair is called wrong only where the seed-paired test says so.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..paper import NORM_LABELS, PAPER
from .common import (NOT_ANSWERED, NOT_PREDICTED, REVEALED, CheckResult, is_placeholder,
                     number_answer, report)

__all__ = ["BN_VS_GN_OPTIONS", "RANKED_NORMS", "check_bn_vs_gn", "check_scaled_lr",
           "check_steps_per_epoch", "reveal_norm_ranking", "show_bn_vs_gn"]

RANKED_NORMS = ("bn", "ln", "in", "gn")



def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)


# ---- exercise 1: the linear scaling rule ----------------------------------------------------
def check_scaled_lr(answer: Any, batch_size: int = 8, base_lr: float = 0.1,
                    base_batch: int = 32) -> CheckResult:
    r"""Check the learning rate :math:`\eta_0 \cdot B / 32` for ``batch_size`` images."""
    title = f"Exercise 1 (learning rate at batch {batch_size})"
    value, problem = number_answer(answer, "give a number (a learning rate)")
    if problem is not None:
        return report(title, False, problem)
    B, b0, eta0 = batch_size, base_batch, base_lr
    right = eta0 * B / b0
    if _close(value, right):
        return report(title, True, f"eta = {eta0} x {B}/{b0} = {right:g}: steps {B / b0:g} x "
                      f"as large, {b0 / B:g} x as many of them per epoch, so an epoch moves "
                      "the weights about as far")
    slips = [
        (eta0, f"you kept eta_0 = {eta0}: the rule scales it with the batch (B/{b0})"),
        (eta0 * b0 / B, f"you inverted the ratio ({b0}/{B}): the lr grows with the batch, "
                        f"B/{b0}"),
        (eta0 * B, f"you multiplied by B = {B} but did not divide by the base batch {b0}"),
        (eta0 / b0, f"you divided by {b0} but did not multiply by B = {B}"),
        (B / b0, f"B/{b0} = {B / b0:g} is the factor only: multiply it by eta_0 = {eta0}"),
        (eta0 * math.sqrt(B / b0), f"that is the square-root rule eta_0 sqrt(B/{b0}); the "
                                   "paper (after Goyal et al. 2017) scales linearly"),
    ]
    why = next((w for v, w in slips if _close(value, v)),
               f"expected eta_0 x B / {b0} = {eta0} x {B} / {b0}")
    return report(title, False, f"{answer} is wrong: {why}")


# ---- exercise 2: SGD steps per epoch -------------------------------------------------------------
def check_steps_per_epoch(answer: Any, images: int, batch_size: int = 32, devices: int = 1,
                          epochs: int | None = None) -> CheckResult:
    """Check the SGD steps of one epoch of ``images`` at a total batch of ``batch_size`` spread
    over ``devices`` devices (the last partial batch is dropped). ``epochs``: the run's length,
    to recognize a count of the whole run."""
    title = "Exercise 2 (SGD steps per epoch)"
    if is_placeholder(answer):
        return report(title, False, NOT_ANSWERED)
    if isinstance(answer, bool) or not isinstance(answer, int):
        if isinstance(answer, float) and answer.is_integer():
            answer = int(answer)
        else:
            return report(title, False, "give a whole number: steps are counted, "
                          f"got {answer!r:.40}")
    right = images // batch_size
    per_device = batch_size // devices
    if answer == right:
        extra = (f"; the {devices} devices' slices of {per_device} images together make one "
                 "step" if devices > 1 else "")
        return report(title, True, f"{images:,} // {batch_size} = {right:,} steps{extra}")
    slips = {
        images: "that is the number of images: a step takes a whole batch",
        images * batch_size: f"you multiplied by the batch: divide {images:,} by {batch_size}",
        math.ceil(images / batch_size): "the last partial batch is dropped (every step sees "
                                        f"exactly {batch_size} images): round down",
    }
    if devices > 1:
        slips[images // per_device] = (f"you divided by the {per_device} images per device: "
                                       f"the {devices} devices work in parallel, their slices "
                                       f"together form one step of {batch_size} images")
        slips[images // (batch_size * devices)] = (
            f"you divided by {batch_size} x {devices}: the {batch_size} images of a step are "
            f"split over the {devices} devices, not multiplied by them")
    if epochs:
        slips[right * epochs] = f"that is the whole run ({epochs} epochs): one epoch is asked"
    why = slips.get(answer, f"expected images // batch = {images:,} // {batch_size}")
    return report(title, False, f"{answer:,} is wrong: {why}")


# ---- exercise 3: why BN trains worse but tests better --------------------------------------------
#: The options of exercise 3: the question is in notebook 04, the feedback in
#: :data:`_BN_VS_GN_FEEDBACK`.
BN_VS_GN_OPTIONS = {
    "a": "GN has more trainable parameters than BN, so it fits the training set better.",
    "b": "BN normalizes each image with statistics of the other images of its batch: a random "
         "perturbation that makes the training set harder to fit, but regularizes, so the test "
         "error profits.",
    "c": "During training BN normalizes with its running averages, which lag behind the "
         "changing weights.",
    "d": "The training error of GN is measured in eval mode, BN's in train mode.",
    "e": "The linear scaling rule gives GN a larger learning rate than BN.",
}
RIGHT_OPTION = "b"


def _bn_vs_gn_feedback(option: str, params: dict[str, int] | None) -> str:
    if option == "a":
        counts = (f" (here: BN {params['bn']:,}, GN {params['gn']:,})" if params else "")
        return ("both have exactly one gamma and one beta per channel: the same number of "
                f"parameters{counts}; GN's groups add no parameter")
    if option == "c":
        return ("in training BN normalizes with the statistics of the current batch (or "
                "device slice); the running averages are only updated then, and used at test "
                "time (eval mode)")
    if option == "d":
        return ("both training errors are measured the same way: during the epoch, on the "
                "training batches, in train mode. Train mode is where they differ: BN's output "
                "depends on the batch mates, GN's does not")
    if option == "e":
        return ("the learning rate depends on the batch size only (eta_0 x B/32), the same for "
                "every norm at the same batch")
    return ("right: the noise of the batch statistics is a regularizer (the paper, Sec. 4.1); "
            "GN's statistics come from the image alone, so it fits the training set more "
            "easily and loses that regularization")


def show_bn_vs_gn() -> None:
    """Print the options of exercise 3."""
    for key, text in BN_VS_GN_OPTIONS.items():
        print(f"({key}) {text}")


def check_bn_vs_gn(answer: Any, params: dict[str, int] | None = None) -> CheckResult:
    """Check the letter chosen in exercise 3. ``params``: ``{"bn": ..., "gn": ...}``
    parameter counts of the course's model, quoted in the feedback on option (a)."""
    title = "Exercise 3 (why, in the paper, BN's training error is higher)"
    if is_placeholder(answer):
        return report(title, False, NOT_ANSWERED)
    key = str(answer).strip().strip("()").lower()
    if key not in BN_VS_GN_OPTIONS:
        return report(title, False, f"answer with one letter of {', '.join(BN_VS_GN_OPTIONS)}, "
                      f"got {answer!r:.40}")
    return report(title, key == RIGHT_OPTION, f"({key}) {_bn_vs_gn_feedback(key, params)}")


# ---- predict, then reveal: the ranking at 32 images ----------------------------------------------
def _parse_ranking(prediction: Any) -> list[str] | str:
    if isinstance(prediction, str) or not isinstance(prediction, Sequence):
        return ("give a list of the four norms, lowest test error first, "
                "e.g. [\"in\", \"bn\", \"gn\", \"ln\"] (that order is only the format)")
    names = [str(p).strip().lower() for p in prediction]
    unknown = [n for n in names if n not in RANKED_NORMS]
    if unknown:
        return f"unknown norm(s) {unknown}: rank {', '.join(n.upper() for n in RANKED_NORMS)}"
    if sorted(names) != sorted(RANKED_NORMS):
        missing = [n.upper() for n in RANKED_NORMS if n not in names]
        twice = sorted({n.upper() for n in names if names.count(n) > 1})
        return ("rank each of the four norms exactly once"
                + (f"; missing {missing}" if missing else "")
                + (f"; twice {twice}" if twice else ""))
    return names


def reveal_norm_ranking(prediction: Any, records: list[dict]) -> CheckResult:
    """Reveal the measured ranking of BN, LN, IN and GN by test error (mean over usable
    seeds of ``records``: runs with statistics over the same images) once ``prediction`` (a
    list of the four norms, lowest error first) is recorded. Where the prediction swaps a
    pair, the seed-paired test says whether the runs contradict it or cannot tell."""
    from ..analysis import mean_se, paired_difference, runs_frame

    title = "Prediction (ranking by test error)"
    if is_placeholder(prediction):
        return report(title, False, NOT_PREDICTED)
    ranking = _parse_ranking(prediction)
    if isinstance(ranking, str):
        return report(title, False, ranking, REVEALED)
    df = runs_frame(records)
    ok = df[df["usable"]]
    means = {n: mean_se(ok[ok["norm"] == n]["test_error"].tolist()) for n in RANKED_NORMS}
    present = [n for n in RANKED_NORMS if means[n][2] > 0]
    if not present:
        return report(title, False, "no committed runs to compare with yet: nothing to reveal",
                      REVEALED)
    measured = sorted(present, key=lambda n: means[n][0])
    predicted = [n for n in ranking if n in present]
    shown = " < ".join(f"{n.upper()} {means[n][0]:.2f} %" for n in measured)
    seeds = sorted({int(s) for s in ok[ok["norm"].isin(present)]["seed"]})
    lines = [f"you predicted {' < '.join(n.upper() for n in ranking)}; measured: {shown} "
             f"(mean over {len(seeds)} seed{'s' * (len(seeds) != 1)})"]
    left_out = df[~df["usable"]].groupby("norm").size()
    if len(left_out):
        lines.append("left out (diverged or did not train): " + ", ".join(
            f"{n.upper()} {k} run{'s' * (k > 1)}" for n, k in left_out.items()))
    missing = [n.upper() for n in RANKED_NORMS if n not in present]
    if missing:
        lines.append(f"no usable runs yet: {', '.join(missing)} (ranked on the norms present)")
    if len(present) < 2:
        lines.append("one norm only: nothing to rank yet")
        return report(title, False, "\n  ".join(lines), REVEALED)
    swapped = [(a, b) for i, a in enumerate(predicted) for b in predicted[i + 1:]
               if means[a][0] > means[b][0]]
    for a, b in swapped:
        p = paired_difference(df, lambda d, n=a: d["norm"] == n, lambda d, n=b: d["norm"] == n)
        if p.significant:
            lines.append(f"you put {a.upper()} before {b.upper()}: the runs contradict it, "
                         f"{a.upper()} - {b.upper()} = {p} seed-paired, {p.verdict()}")
        else:
            lines.append(f"you put {a.upper()} before {b.upper()}: measured the other way round "
                         f"({a.upper()} - {b.upper()} = {p}), but {p.verdict()}: "
                         "not established by these seeds")
    paper = sorted(PAPER["batch32"], key=PAPER["batch32"].get)
    if ranking == paper:
        lines.append("you predicted the paper's ImageNet ranking ("
                     + " < ".join(NORM_LABELS[n] for n in paper) + ")")
    passed = predicted == measured
    if passed:
        lines.append("your order matches the measured means")
    return report(title, passed, "\n  ".join(lines), REVEALED)
