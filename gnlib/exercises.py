r"""Checkers for notebook 03's exercises, with specific feedback.

* :func:`check_forward` — exercise 1, ``fn(x, num_groups, weight, bias, eps) -> y`` with
  :math:`y = \gamma\,(x-\mu_i)/\sqrt{\sigma_i^2+\epsilon} + \beta` (Eq. 1, 2, 6) over the sets
  :math:`S_i` of GN (Eq. 7), :math:`\sigma_i^2` being the variance of :math:`S_i`.
* :func:`check_backward` — exercise 2, ``fn(dy, x, mean, rstd, num_groups, weight) ->
  (dx, dweight, dbias)`` with ``mean``, ``rstd`` of shape ``(N, G)``.
* :func:`with_backward` turns a backward of that signature into a differentiable
  ``group_norm`` (an :class:`torch.autograd.Function`), e.g. for ``gradcheck``.

A checker runs the student's function on 2D to 5D inputs and several ``G`` (float64, fixed
seed), compares with autograd on :func:`gnlib.norms.group_norm_reference` and, on a mismatch,
with the outputs of typical *wrong* variants (statistics per channel, over the whole sample,
unbiased variance, eps outside the square root, a forgotten path through mu, ...), to name
the mistake. It prints its verdict and returns a :class:`CheckResult`; it never raises.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .bench import fwd_and_grads
from .norms import group_norm_reference

__all__ = [
    "CASES",
    "CheckResult",
    "check_backward",
    "check_forward",
    "with_backward",
]

NOT_IMPLEMENTED = "not implemented yet"
_ATOL, _RTOL = 1e-6, 1e-5


@dataclass(frozen=True)
class CheckResult:
    """Verdict of a checker: ``passed`` and the printed ``message``."""

    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed


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
# Wrong variants: what typical mistakes compute, to recognize them by their output
# --------------------------------------------------------------------------------------
def _grouped(x: Tensor, groups: int, grouping: str) -> tuple[Tensor, tuple[int, ...]]:
    """``x`` viewed so that the sets of ``grouping`` are reduced over the returned dims."""
    N, C = x.shape[:2]
    if grouping == "group":
        return x.reshape(N, groups, -1), (2,)
    if grouping == "channel":
        return x.reshape(N, C, -1), (2,)
    if grouping == "sample":
        return x.reshape(N, 1, -1), (2,)
    if grouping == "batch":
        return x.reshape(N, groups, -1), (0, 2)
    if grouping == "interleaved":
        return x.reshape(N, C // groups, groups, -1), (1, 3)
    raise ValueError(grouping)


def _per_channel(t: Tensor, dim: int) -> Tensor:
    return t.reshape((1, -1) + (1,) * (dim - 2))


def _forward_variant(
    x: Tensor, groups: int, weight: Tensor, bias: Tensor, eps: float, *,
    grouping: str = "group", correction: int = 0, eps_mode: str = "inside",
    center: bool = True, affine: str = "both",
) -> Tensor:
    """Eq. (1)-(2), (6) with one deliberate deviation (the defaults are the correct GN)."""
    xv, dims = _grouped(x, groups, grouping)
    m = 1
    for d in dims:
        m *= xv.shape[d]
    mean = xv.mean(dims, keepdim=True)
    var = ((xv - mean) ** 2).sum(dims, keepdim=True) / (m - correction)
    num = xv - mean if center else xv
    den = {"inside": torch.sqrt(var + eps), "outside": torch.sqrt(var) + eps,
           "none": torch.sqrt(var), "variance": var + eps}[eps_mode]
    y = (num / den).reshape(x.shape)
    if affine in ("both", "weight"):
        y = y * _per_channel(weight, x.dim())
    if affine in ("both", "bias"):
        y = y + _per_channel(bias, x.dim())
    return y


_FORWARD_HINTS: tuple[tuple[dict[str, Any], str], ...] = (
    (dict(grouping="channel"),
     "wrong axis of reduction: your mean/variance are taken per channel (like Instance Norm). "
     "GN pools the C/G channels of a group: reshape x to (N, G, -1) and reduce the last axis."),
    (dict(grouping="sample"),
     "wrong axis of reduction: your mean/variance are taken over the whole sample, all C "
     "channels (like Layer Norm). Use G groups: reshape x to (N, G, -1)."),
    (dict(grouping="batch"),
     "wrong axis of reduction: your statistics also average over the batch axis N (like Batch "
     "Norm). GN never mixes samples: reduce only the last axis of x.reshape(N, G, -1)."),
    (dict(grouping="interleaved"),
     "wrong grouping: your groups take every G-th channel (reshape(N, C//G, G, ...)). A group "
     "is C/G consecutive channels: reshape(N, G, C//G, ...), i.e. x.reshape(N, G, -1)."),
    (dict(correction=1),
     "biased/unbiased mix-up: the variance divides by m = |S_i|, not m - 1 (torch.var "
     "defaults to m - 1: pass unbiased=False or correction=0)."),
    (dict(eps_mode="outside"),
     "eps outside the square root: use (x - mu) / sqrt(var + eps), not / (sqrt(var) + eps)."),
    (dict(eps_mode="none"),
     "eps is missing: divide by sqrt(var + eps)."),
    (dict(eps_mode="variance"),
     "divided by the variance instead of the standard deviation: use sqrt(var + eps)."),
    (dict(center=False),
     "the mean is not subtracted: x_hat = (x - mu) / sqrt(var + eps)."),
    (dict(affine="none"),
     "missing gamma and beta: y = weight * x_hat + bias, one weight and bias per channel, "
     "shaped (1, C, 1, ...) to broadcast."),
    (dict(affine="bias"),
     "missing gamma: multiply x_hat by weight (one value per channel) before adding bias."),
    (dict(affine="weight"),
     "missing beta: add bias (one value per channel) after multiplying by weight."),
)


def _dx_variant(
    dy: Tensor, x: Tensor, groups: int, weight: Tensor, eps: float, *,
    grouping: str = "group", mu_path: bool = True, sigma_path: bool = True,
    correction: int = 0, gamma: bool = True, sigma_sign: float = 1.0,
) -> Tensor:
    r"""(B1) :math:`r(g - \overline{g} - \hat x\,\overline{g\hat x})` with one deviation."""
    xv, _ = _grouped(x, groups, grouping)  # "group", "channel" or "sample": sets on axis 2
    m = xv.shape[-1]
    mean = xv.mean(-1, keepdim=True)
    rstd = torch.rsqrt(((xv - mean) ** 2).mean(-1, keepdim=True) + eps)
    x_hat = (xv - mean) * rstd
    g = (dy * _per_channel(weight, x.dim()) if gamma else dy).reshape(xv.shape)
    dx = g.clone()
    if mu_path:
        dx = dx - g.mean(-1, keepdim=True)
    if sigma_path:
        dx = dx - sigma_sign * x_hat * (g * x_hat).sum(-1, keepdim=True) / (m - correction)
    return (rstd * dx).reshape(x.shape)


_DX_HINTS: tuple[tuple[dict[str, Any], str], ...] = (
    (dict(mu_path=False, sigma_path=False),
     "mu and sigma are treated as constants: dx = r * g misses both paths through the "
     "statistics; every x_k moves mu and sigma of its group."),
    (dict(mu_path=False),
     "the path through mu is missing: subtract (1/m) sum_S g_j (d mu / d x_k = 1/m)."),
    (dict(sigma_path=False),
     "the path through sigma is missing: subtract x_hat_k (1/m) sum_S g_j x_hat_j."),
    (dict(sigma_sign=-1.0),
     "sign error in the path through sigma: dx = r (g - mean(g) - x_hat mean(g x_hat))."),
    (dict(correction=1),
     "biased/unbiased mix-up: the forward divides by m, so d sigma^2 / d x_k = 2 (x_k - mu)/m "
     "and the last term is x_hat_k (1/m) sum_S g_j x_hat_j, not 1/(m - 1)."),
    (dict(gamma=False),
     "gamma is missing: the gradient reaching x_hat is g = weight * dy (per channel)."),
    (dict(grouping="channel"),
     "wrong axis of reduction: the sums in dx run per channel; they must run over the "
     "group S_i (reshape to (N, G, -1))."),
    (dict(grouping="sample"),
     "wrong axis of reduction: the sums in dx run over the whole sample; they must run over "
     "the group S_i (reshape to (N, G, -1))."),
)


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


def _report(title: str, passed: bool, text: str) -> CheckResult:
    message = f"{title}: {'PASSED' if passed else 'FAILED'}\n  {text}"
    if text == NOT_IMPLEMENTED:
        message = f"{title}: {NOT_IMPLEMENTED} (replace the placeholder with your code)"
    print(message)
    return CheckResult(passed, message)


def _call(fn: Callable[..., Any], *args: Any) -> tuple[Any, str | None]:
    """``(result, None)`` or ``(None, problem)``: never raises."""
    try:
        out = fn(*args)
    except NotImplementedError:
        return None, NOT_IMPLEMENTED
    except Exception as err:  # noqa: BLE001 - any failure of student code is feedback
        return None, f"your function raised {type(err).__name__}: {err}"
    return out, (NOT_IMPLEMENTED if out is None else None)


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
        got, problem = _call(fn, x, case.groups, weight, bias, case.eps)
        if problem is not None:
            return _report(title, False, problem if problem == NOT_IMPLEMENTED
                           else f"{problem}\n  (for {case.describe()})")
        if not torch.equal(x, x_before):
            return _report(title, False, "your function changed x in place; work on new "
                           "tensors (x - mean, not x -= mean)")
        expected = group_norm_reference(x, case.groups, weight, bias, case.eps)
        variants = [(_forward_variant(x, case.groups, weight, bias, case.eps, **kw), hint)
                    for kw, hint in _FORWARD_HINTS]
        problem = _compare("y", got, expected, case, variants)
        if problem is not None:
            return _report(title, False, problem)
    return _report(title, True, f"{len(CASES)} cases (2D to 5D inputs, G = 1 (LN) to C (IN), "
                   "small and large eps) match Group Norm")


# --------------------------------------------------------------------------------------
# Exercise 2: the backward pass
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
    title = "Exercise 2 (backward)"
    for case in CASES:
        (dy, x, mean, rstd, weight), (dx, dw, db) = _expected_grads(case, seed)
        got, problem = _call(fn, dy, x, mean, rstd, case.groups, weight)
        if problem is not None:
            return _report(title, False, problem if problem == NOT_IMPLEMENTED
                           else f"{problem}\n  (for {case.describe()})")
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            return _report(title, False, "return a tuple (dx, dweight, dbias)")
        per_channel = [0] + list(range(2, x.dim()))
        dx_variants = [(_dx_variant(dy, x, case.groups, weight, case.eps, **kw), hint)
                       for kw, hint in _DX_HINTS]
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
                return _report(title, False, problem.replace("is wrong", "(gradient mismatch)"))
    return _report(title, True, f"{len(CASES)} cases (2D to 5D inputs, G = 1 to C): dx, "
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
