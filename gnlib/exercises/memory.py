"""Notebook 03, predict then reveal: the memory each Group Norm keeps for backward.

:func:`reveal_saved_memory` reveals the KiB that the reference and gnlib keep, measured with
:func:`gnlib.bench.saved_memory`, only once a prediction is recorded; :func:`saved_by_layer`
measures what each layer of a block (conv -> GN -> ReLU) keeps.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..bench import SavedMemory
from .common import NOT_PREDICTED, REVEALED, CheckResult, keyed_answer, report

__all__ = ["MEMORY_GROUPS", "MEMORY_SHAPE", "LayerSaved", "format_saved_by_layer",
           "reveal_saved_memory", "saved_by_layer"]

#: The input of the prediction: a ResNet-like feature map, GN's default G = 32, float32.
MEMORY_SHAPE, MEMORY_GROUPS = (2, 64, 28, 28), 32
_WHY_SAVED = {
    "reference": ("autograd keeps what each recorded operation needs for its own backward: "
                  "x - mu for the square, x - mu again for the division (the code computes it "
                  "twice) and x_hat for the product with gamma"),
    "gnlib": ("the hand-derived backward rebuilds x_hat from x and the per-group mean and rstd "
              "(2 N G numbers), so it keeps those and no x_hat"),
}


def _memory_feedback(name: str, p: float, measured: float, x_kib: float) -> str:
    if abs(p - measured) <= 0.1 * measured:
        return "right"
    if abs(p - 1024 * measured) <= 0.1 * 1024 * measured:
        return "that is the number of bytes; the question asks KiB (1 KiB = 1024 bytes)"
    side = "above" if p > measured else "below"
    text = f"{abs(p - measured) / measured:.0%} {side}"
    if name == "gnlib" and p < 0.5 * x_kib:
        text += ": the statistics alone are not enough, (B1) needs x_hat, so x must stay alive"
    return text


def reveal_saved_memory(prediction: Any, memory: Mapping[str, SavedMemory],
                        shape: Sequence[int] = MEMORY_SHAPE) -> CheckResult:
    """Reveal the KiB that ``"reference"`` and ``"gnlib"`` keep for backward (``memory``, as
    measured by :func:`gnlib.bench.saved_memory` on a float32 input of ``shape``) only once
    ``prediction = {"reference": KiB, "gnlib": KiB}`` is recorded."""
    title = "Prediction (KiB saved for backward)"
    names = ("reference", "gnlib")
    prediction, problem = keyed_answer(prediction, names, "predict both", NOT_PREDICTED, str,
                                       form='{"reference": KiB, "gnlib": KiB}')
    if problem is not None:
        return report(title, False, problem)
    if not all(isinstance(prediction[n], (int, float)) and not isinstance(prediction[n], bool)
               for n in names):
        return report(title, False, "predict numbers (KiB), e.g. 392 or 2 * 392")
    numel = math.prod(shape)
    x_kib = numel * 4 / 1024
    lines, passed = [], True
    for name in names:
        p, measured = float(prediction[name]), memory[name].total / 1024
        big = sum(math.prod(s) == numel for s in memory[name].shapes)
        keeps_x = memory[name].total - memory[name].new >= 4 * numel   # x's own storage saved
        verdict = _memory_feedback(name, p, measured, x_kib)
        passed &= verdict == "right"
        lines.append(f"{name}: you predicted {p:,.1f} KiB; measured {measured:,.1f} KiB = "
                     f"{measured / x_kib:.2f} x the input's {x_kib:,.1f} KiB ({verdict})\n"
                     f"    tensors of x's size kept: {big}, x itself among them: "
                     f"{'yes' if keeps_x else 'no'}. Why: {_WHY_SAVED[name]}.")
    return report(title, passed, f"x of shape {tuple(shape)}, float32\n  " + "\n  ".join(lines),
                  REVEALED)


@dataclass(frozen=True)
class LayerSaved:
    """What one layer's forward keeps for backward, in bytes, by what the tensor is."""

    name: str
    input: int = 0          # the layer's own input
    output: int = 0         # the layer's own output
    parameters: int = 0     # its weight, bias
    other: int = 0          # tensors it computed (statistics, intermediates)


def saved_by_layer(layers: Sequence[tuple[str, Callable[[Tensor], Tensor]]],
                   x: Tensor) -> list[LayerSaved]:
    """Run ``x`` through ``layers`` (``(name, layer)`` pairs) in turn and measure, with
    :func:`torch.autograd.graph.saved_tensors_hooks`, what each layer keeps for backward:
    its input, its output, its parameters or other tensors (distinct storages, in bytes)."""
    rows = []
    for name, layer in layers:
        saved: dict[int, int] = {}

        def pack(t: Tensor) -> Tensor:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = layer(x)
        params = getattr(layer, "parameters", lambda: iter(()))()
        kinds = {x.untyped_storage().data_ptr(): "input", out.untyped_storage().data_ptr(): "output"}
        kinds.update({p.untyped_storage().data_ptr(): "parameters" for p in params})
        sizes = {"input": 0, "output": 0, "parameters": 0, "other": 0}
        for ptr, nbytes in saved.items():
            sizes[kinds.get(ptr, "other")] += nbytes
        rows.append(LayerSaved(name, **sizes))
        x = out
    return rows


def format_saved_by_layer(rows: Sequence[LayerSaved]) -> str:
    """Text table of :func:`saved_by_layer` in KiB."""
    width = max(len(r.name) for r in rows) + 2
    cols = ("its input", "its output", "parameters", "other")
    lines = [f"{'layer':<{width}}" + "".join(f"{c:>12}" for c in cols)
             + "   (KiB saved for backward)"]
    for r in rows:
        values = (r.input, r.output, r.parameters, r.other)
        lines.append(f"{r.name:<{width}}" + "".join(f"{v / 1024:>12,.1f}" for v in values))
    return "\n".join(lines)
