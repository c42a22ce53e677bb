r"""Checkers for notebook 03's exercises, with specific feedback.

* :func:`check_forward` — exercise 1, ``fn(x, num_groups, weight, bias, eps) -> y`` with
  :math:`y = \gamma\,(x-\mu_i)/\sqrt{\sigma_i^2+\epsilon} + \beta` (Eq. 1, 2, 6) over the sets
  :math:`S_i` of GN (Eq. 7), :math:`\sigma_i^2` being the variance of :math:`S_i`.
* :func:`check_d_xhat_d_x` — exercise 2a, an inline formula ``fn(k, j, x_hat, r, m, D) ->``
  :math:`\partial\hat x_k/\partial x_j` for one set of ``m`` values; the first pass is recorded
  and unlocks :func:`reveal_backward_derivation` (the derivation of (B1)-(B2)).
* :func:`check_backward` — exercise 2b, ``fn(dy, x, mean, rstd, num_groups, weight) ->
  (dx, dweight, dbias)`` with ``mean``, ``rstd`` of shape ``(N, G)``.
* :func:`reveal_saved_memory` — predict, then reveal: the KiB that the reference and gnlib keep
  for backward, revealed from a measurement (:func:`gnlib.bench.saved_memory`) only once a
  prediction is recorded; :func:`saved_by_layer` measures what each layer of a block keeps.
* :func:`with_backward` turns a backward of that signature into a differentiable
  ``group_norm`` (an :class:`torch.autograd.Function`), e.g. for ``gradcheck``.

A checker runs the student's function on several inputs (float64, fixed seed), compares with
autograd (on :func:`gnlib.norms.group_norm_reference` or on :math:`\hat x(x)` of one set) and, on a
mismatch, with the outputs of typical *wrong* variants (statistics per channel, over the whole
sample, unbiased variance, eps outside the square root, a forgotten path through mu, a missing
Kronecker delta, ...), to name the mistake. It prints its verdict and returns a
:class:`CheckResult`; it never raises.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .. import solutions
from ..bench import SavedMemory, fwd_and_grads
from ..norms import group_norm_reference
from .common import (NOT_ANSWERED, NOT_IMPLEMENTED, NOT_PREDICTED, REVEALED, CheckResult,
                     call_student, is_placeholder, report)
from .implementing_mistakes import (DX_HINTS, DXHAT_HINTS, FORWARD_HINTS, dx_variant,
                                    dxhat_variant, forward_variant)

__all__ = [
    "CASES",
    "JACOBIAN_CASES",
    "MEMORY_GROUPS",
    "MEMORY_SHAPE",
    "CheckResult",
    "LayerSaved",
    "check_backward",
    "check_d_xhat_d_x",
    "check_forward",
    "format_saved_by_layer",
    "reveal_backward_derivation",
    "reveal_saved_memory",
    "saved_by_layer",
    "with_backward",
]

_ATOL, _RTOL = 1e-6, 1e-5


@dataclass(frozen=True)
class Case:
    """One test input: shape ``(N, C, *)``, number of groups and eps."""

    shape: tuple[int, ...]
    groups: int
    eps: float = 1e-5

    def describe(self) -> str:
        return f"x of shape {self.shape} ({len(self.shape)}D), G={self.groups}, eps={self.eps:g}"


#: The inputs every checker tries, in this order: a 4D case with 1 < G < C first (it tells
#: the reduction axes apart), a large eps (it tells where eps goes), 2D..5D, then LN and IN.
CASES = (
    Case((2, 8, 3, 4), 4),
    Case((2, 6, 3, 3), 3, eps=0.5),
    Case((5, 6), 3),
    Case((3, 6, 5), 2),
    Case((2, 4, 2, 3, 2), 2),
    Case((3, 4, 3, 3), 1),
    Case((2, 4, 3, 3), 4),
)


def _inputs(case: Case, seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x, weight, bias, dy)`` in float64; channels get different offsets and scales."""
    gen = torch.Generator().manual_seed(seed)
    C = case.shape[1]
    per_c = (1, C) + (1,) * (len(case.shape) - 2)
    scale = 0.5 + 2 * torch.rand(per_c, generator=gen, dtype=torch.float64)
    offset = 3 * torch.randn(per_c, generator=gen, dtype=torch.float64)
    x = torch.randn(case.shape, generator=gen, dtype=torch.float64) * scale + offset
    weight = 1 + 0.5 * torch.randn(C, generator=gen, dtype=torch.float64)
    bias = torch.randn(C, generator=gen, dtype=torch.float64)
    dy = torch.randn(case.shape, generator=gen, dtype=torch.float64)
    return x, weight, bias, dy


# --------------------------------------------------------------------------------------
# Comparing and reporting
# --------------------------------------------------------------------------------------
def _close(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=_RTOL, atol=_ATOL)


def _first_wrong(got: Tensor, expected: Tensor) -> str:
    """Index and values of the first element outside the tolerance, and the max difference."""
    bad = ~torch.isclose(got, expected, rtol=_RTOL, atol=_ATOL)
    idx = tuple(int(i) for i in bad.nonzero()[0])
    diff = float((got - expected).abs().nan_to_num(float("inf")).max())
    return (f"first wrong element at index {idx}: got {float(got[idx]):.4f}, expected "
            f"{float(expected[idx]):.4f} (max abs difference {diff:.4g})")


def _compare(name: str, got: Any, expected: Tensor, case: Case,
             variants: list[tuple[Tensor, str]]) -> str | None:
    """None if ``got`` matches ``expected``, else the feedback for this case."""
    where = f"for {case.describe()}"
    if not isinstance(got, Tensor):
        return f"{name} should be a torch.Tensor, got {type(got).__name__} {where}"
    if got.shape != expected.shape:
        return (f"wrong output shape: {name} has shape {tuple(got.shape)}, expected "
                f"{tuple(expected.shape)} {where} (reshape back to the shape of "
                f"{'x' if name in ('y', 'dx') else 'weight'})")
    got = got.detach().to(expected.dtype)
    if _close(got, expected):
        return None
    text = f"{name} is wrong {where}:\n  {_first_wrong(got, expected)}"
    for value, hint in variants:
        if not _close(value, expected) and _close(got, value):
            return f"{text}\n  Likely cause: {hint}"
    return text


# --------------------------------------------------------------------------------------
# Exercise 1: the forward pass
# --------------------------------------------------------------------------------------
def check_forward(fn: Callable[..., Any], seed: int = 0) -> CheckResult:
    """Check ``fn(x, num_groups, weight, bias, eps) -> y`` against Group Norm (Eq. 1-2, 6, 7)."""
    title = "Exercise 1 (forward)"
    for case in CASES:
        x, weight, bias, _ = _inputs(case, seed)
        x_before = x.clone()
        got, problem = call_student(fn, x, case.groups, weight, bias, case.eps)
        if problem is not None:
            return report(title, False, problem if problem == NOT_IMPLEMENTED
                           else f"{problem}\n  (for {case.describe()})")
        if not torch.equal(x, x_before):
            return report(title, False, "your function changed x in place; work on new "
                           "tensors (x - mean, not x -= mean)")
        expected = group_norm_reference(x, case.groups, weight, bias, case.eps)
        variants = [(forward_variant(x, case.groups, weight, bias, case.eps, **kw), hint)
                    for kw, hint in FORWARD_HINTS]
        problem = _compare("y", got, expected, case, variants)
        if problem is not None:
            return report(title, False, problem)
    return report(title, True, f"{len(CASES)} cases (2D to 5D inputs, G = 1 (LN) to C (IN), "
                   "small and large eps) match Group Norm")


# --------------------------------------------------------------------------------------
# Exercise 2a: d x_hat_k / d x_j of one set, then the derivation is revealed
# --------------------------------------------------------------------------------------
#: ``(m, unbiased, eps)`` of the sets the Jacobian is checked on: the biased ``D = m`` first
#: (it tells the paths apart), then the unbiased ``D = m - 1`` (it tells m from D), a large eps.
JACOBIAN_CASES = ((6, False, 1e-5), (5, True, 1e-5), (4, False, 0.5))

#: Exercises passed in this Python session; a pass of ``"2a"`` unlocks the derivation.
_SOLVED: set[str] = set()


def _one_set(m: int, unbiased: bool, eps: float, seed: int) -> tuple[Tensor, Tensor, float, int]:
    """``(J, x_hat, r, D)`` of one set of ``m`` float64 values; ``J[k, j]`` from autograd."""
    gen = torch.Generator().manual_seed(seed + m)
    x = 2 + 1.5 * torch.randn(m, generator=gen, dtype=torch.float64)
    D = m - 1 if unbiased else m

    def x_hat_of(v: Tensor) -> Tensor:
        mu = v.sum() / m
        return (v - mu) * torch.rsqrt(((v - mu) ** 2).sum() / D + eps)

    J = torch.autograd.functional.jacobian(x_hat_of, x)
    r = float(torch.rsqrt(((x - x.mean()) ** 2).sum() / D + eps))
    return J, x_hat_of(x), r, D


def _student_jacobian(fn: Callable[..., Any], x_hat: Tensor, r: float, m: int,
                      D: int) -> tuple[Tensor | None, str | None]:
    """``fn`` evaluated on every ``(k, j)``, or ``(None, problem)``."""
    J = torch.empty(m, m, dtype=torch.float64)
    for k in range(m):
        for j in range(m):
            out, problem = call_student(fn, k, j, x_hat.clone(), r, m, D)
            if out is ... or problem == NOT_IMPLEMENTED:
                return None, NOT_ANSWERED
            if problem is not None:
                return None, f"{problem} (at k={k}, j={j})"
            if isinstance(out, Tensor) and out.numel() != 1:
                return None, (f"return one number, d x_hat_k / d x_j for the given k and j; got a "
                              f"tensor of shape {tuple(out.shape)} (x_hat[k] is x_hat_k)")
            try:
                J[k, j] = float(out)
            except (TypeError, ValueError, RuntimeError):
                return None, f"return one number (a float or a 0-d tensor), got {out!r:.60}"
    return J, None


def _jacobian_feedback(got: Tensor, expected: Tensor, x_hat: Tensor, r: float, m: int,
                       D: int) -> str:
    """What is wrong with ``got``: a named mistake, else where the error sits, and one entry."""
    close = lambda a, b: torch.allclose(a, b, rtol=_RTOL, atol=_ATOL)  # noqa: E731
    bad = (~torch.isclose(got, expected, rtol=_RTOL, atol=_ATOL)).nonzero()[0].tolist()
    entry = (f"entry (k={bad[0]}, j={bad[1]}): got {float(got[tuple(bad)]):.4f}, expected "
             f"{float(expected[tuple(bad)]):.4f}")
    for kw, hint in DXHAT_HINTS:
        variant = dxhat_variant(x_hat, r, m, D, **kw)
        if not close(variant, expected) and close(got, variant):
            return f"{entry}\n  Likely cause: {hint}"
    off = ~torch.eye(m, dtype=torch.bool)
    if not close(got, got.T):
        why = ("your matrix is not symmetric in k and j, but the true one is (x_hat_k x_hat_j): "
               "check that you use x_hat[k] and x_hat[j], not one of them twice")
    elif close(got[off], expected[off]):
        why = ("the entries with k != j are right, the diagonal (k == j) is not: look at the "
               "direct term, r times the Kronecker delta")
    elif close(got.diagonal(), expected.diagonal()):
        why = ("the diagonal (k == j) is right, the entries with k != j are not: every x_j moves "
               "mu and sigma, so x_hat_k depends on x_j also when k != j")
    else:
        why = "compare each path with the derivative of x_hat_k = (x_k - mu) r by the product rule"
    return f"{entry}\n  {why}"


def check_d_xhat_d_x(fn: Callable[..., Any], seed: int = 0) -> CheckResult:
    r"""Check ``fn(k, j, x_hat, r, m, D) ->`` :math:`\partial\hat x_k/\partial x_j` for one set
    of ``m`` values (``x_hat`` a 1-D tensor, ``r = 1/sqrt(sigma^2 + eps)``, ``sigma^2`` dividing
    by ``D``) against autograd's Jacobian on :data:`JACOBIAN_CASES`. A pass is recorded and
    unlocks :func:`reveal_backward_derivation`."""
    title = "Exercise 2a (d x_hat_k / d x_j)"
    for m, unbiased, eps in JACOBIAN_CASES:
        J, x_hat, r, D = _one_set(m, unbiased, eps, seed)
        where = (f"for a set of m = {m} values, D = {'m - 1' if unbiased else 'm'} = {D} "
                 f"({'unbiased' if unbiased else 'biased'} variance), eps = {eps:g}")
        got, problem = _student_jacobian(fn, x_hat, r, m, D)
        if problem is not None:
            return report(title, False, problem if problem == NOT_ANSWERED
                          else f"{problem}\n  ({where})")
        if not torch.allclose(got, J, rtol=_RTOL, atol=_ATOL):
            return report(title, False, f"wrong {where}:\n  "
                          + _jacobian_feedback(got, J, x_hat, r, m, D))
    _SOLVED.add("2a")
    return report(title, True, f"{len(JACOBIAN_CASES)} sets (D = m and D = m - 1, small and large "
                  "eps): every entry matches autograd's Jacobian. The derivation is unlocked.")


def reveal_backward_derivation() -> CheckResult:
    """Show the derivation of (B1)-(B2) (Markdown) once :func:`check_d_xhat_d_x` has passed in
    this session; before that, refuse and say how to unlock it."""
    title = "Derivation of (B1)-(B2)"
    if "2a" not in _SOLVED:
        return report(title, False, "try Exercise 2a first: nothing is revealed before your "
                      "d x_hat_k / d x_j passes check_d_xhat_d_x (then run this cell again)",
                      ("revealed", "locked"))
    result = report(title, True, "your d x_hat_k / d x_j passed; from it to (B1)-(B2):",
                    ("revealed", "locked"))
    try:
        from IPython.display import Markdown, display
    except ImportError:  # pragma: no cover - IPython comes with Jupyter
        print(solutions.BACKWARD_DERIVATION)
    else:
        display(Markdown(solutions.BACKWARD_DERIVATION))
    return result


# --------------------------------------------------------------------------------------
# Exercise 2b: the backward pass
# --------------------------------------------------------------------------------------
def _expected_grads(case: Case, seed: int) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """Inputs ``(dy, x, mean, rstd, weight)`` and autograd's ``(dx, dweight, dbias)``."""
    x, weight, bias, dy = _inputs(case, seed)
    N, G = case.shape[0], case.groups
    xg = x.reshape(N, G, -1)
    mean = xg.mean(-1)
    rstd = torch.rsqrt(xg.var(-1, unbiased=False) + case.eps)
    _, *grads = fwd_and_grads(group_norm_reference, x, G, weight, bias, dy, eps=case.eps)
    return (dy, x, mean, rstd, weight), tuple(grads)


def check_backward(fn: Callable[..., Any], seed: int = 0) -> CheckResult:
    """Check ``fn(dy, x, mean, rstd, num_groups, weight) -> (dx, dweight, dbias)`` (B1, B2)."""
    title = "Exercise 2b (backward)"
    for case in CASES:
        (dy, x, mean, rstd, weight), (dx, dw, db) = _expected_grads(case, seed)
        got, problem = call_student(fn, dy, x, mean, rstd, case.groups, weight)
        if problem is not None:
            return report(title, False, problem if problem == NOT_IMPLEMENTED
                           else f"{problem}\n  (for {case.describe()})")
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            return report(title, False, "return a tuple (dx, dweight, dbias)")
        per_channel = [0] + list(range(2, x.dim()))
        dx_variants = [(dx_variant(dy, x, case.groups, weight, case.eps, **kw), hint)
                       for kw, hint in DX_HINTS]
        dw_variants = [((dy * x).sum(per_channel), "dweight uses x instead of x_hat: "
                        "dL/dgamma_c = sum over k with k_C = c of dy_k * x_hat_k."),
                       (db, "dweight and dbias are swapped.")]
        db_variants = [(dw, "dweight and dbias are swapped."),
                       (dy.mean(per_channel), "dbias averages dy; it is the sum.")]
        for name, value, expected, variants in (
            ("dx", got[0], dx, dx_variants),
            ("dweight", got[1], dw, dw_variants),
            ("dbias", got[2], db, db_variants),
        ):
            problem = _compare(name, value, expected, case, variants)
            if problem is not None:
                return report(title, False, problem.replace("is wrong", "(gradient mismatch)"))
    return report(title, True, f"{len(CASES)} cases (2D to 5D inputs, G = 1 to C): dx, "
                   "dweight and dbias match autograd")


# --------------------------------------------------------------------------------------
# Predict, then reveal: the memory each implementation keeps for backward
# --------------------------------------------------------------------------------------
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
    if is_placeholder(prediction) or (isinstance(prediction, Mapping)
                                      and all(is_placeholder(v) for v in prediction.values())):
        return report(title, False, NOT_PREDICTED)
    if not isinstance(prediction, Mapping):
        return report(title, False, 'predict a dict {"reference": KiB, "gnlib": KiB}, got '
                      f"{prediction!r:.40}")
    missing = [n for n in names if is_placeholder(prediction.get(n))]
    if missing:
        return report(title, False, f"predict both: still missing {missing}")
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


# --------------------------------------------------------------------------------------
# A backward of the exercise's signature as a differentiable group_norm
# --------------------------------------------------------------------------------------
def with_backward(backward: Callable[..., tuple[Tensor, Tensor, Tensor]]) -> Callable[..., Tensor]:
    """``group_norm(x, num_groups, weight, bias, eps)`` whose backward calls ``backward``.

    The forward saves only ``x`` and the per-group ``mean`` and ``rstd`` (shape ``(N, G)``).
    """

    class _Function(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Tensor, groups: int, weight: Tensor, bias: Tensor,
                    eps: float) -> Tensor:  # type: ignore[override]
            xg = x.reshape(x.shape[0], groups, -1)
            mean = xg.mean(-1)
            rstd = torch.rsqrt(xg.var(-1, unbiased=False) + eps)
            ctx.save_for_backward(x, mean, rstd, weight)
            ctx.groups = groups
            return group_norm_reference(x, groups, weight, bias, eps)

        @staticmethod
        def backward(ctx: Any, dy: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
            x, mean, rstd, weight = ctx.saved_tensors
            dx, dweight, dbias = backward(dy, x, mean, rstd, ctx.groups, weight)
            return dx, None, dweight, dbias, None

    def group_norm(x: Tensor, num_groups: int, weight: Tensor, bias: Tensor,
                   eps: float = 1e-5) -> Tensor:
        return _Function.apply(x, num_groups, weight, bias, eps)

    return group_norm
