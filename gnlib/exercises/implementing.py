r"""Checkers for notebook 03's exercises, with specific feedback.

* :func:`check_forward` — exercise 1, ``fn(x, num_groups, weight, bias, eps) -> y`` with
  :math:`y = \gamma\,(x-\mu_i)/\sqrt{\sigma_i^2+\epsilon} + \beta` (Eq. 1, 2, 6) over the sets
  :math:`S_i` of GN (Eq. 7), :math:`\sigma_i^2` being the variance of :math:`S_i`.
* :func:`check_d_xhat_d_x` — exercise 2a (:mod:`~gnlib.exercises.derivation`, re-exported
  here): :math:`\partial\hat x_k/\partial x_j` of one set; a pass unlocks
  :func:`reveal_backward_derivation`.
* :func:`check_backward` — exercise 2b, ``fn(dy, x, mean, rstd, num_groups, weight) ->
  (dx, dweight, dbias)`` with ``mean``, ``rstd`` of shape ``(N, G)``.
* :func:`reveal_saved_memory`, :func:`saved_by_layer` — the memory each implementation and
  each layer keeps (:mod:`~gnlib.exercises.memory`, re-exported here).
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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..bench import fwd_and_grads
from ..norms import group_norm_reference
from .common import NOT_IMPLEMENTED, CheckResult, call_student, report
from .derivation import JACOBIAN_CASES, check_d_xhat_d_x, reveal_backward_derivation
from .implementing_mistakes import DX_HINTS, FORWARD_HINTS, dx_variant, forward_variant
from .memory import (MEMORY_GROUPS, MEMORY_SHAPE, LayerSaved, format_saved_by_layer,
                     reveal_saved_memory, saved_by_layer)

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
