r"""Notebook 03, exercise 2a: :math:`\partial\hat x_k/\partial x_j` of one set, then the
derivation of (B1)-(B2) is revealed.

:func:`check_d_xhat_d_x` checks an inline formula ``fn(k, j, x_hat, r, m, D)`` against
autograd's Jacobian of :math:`\hat x(x)` on sets of ``m`` values (biased ``D = m``, unbiased
``D = m - 1``, a large eps) and names the usual mistakes (a missing path through
:math:`\mu` or :math:`\sigma`, ``m`` where ``D`` belongs, a forgotten Kronecker delta, ...);
the first pass unlocks :func:`reveal_backward_derivation`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .. import solutions
from .common import NOT_ANSWERED, NOT_IMPLEMENTED, CheckResult, call_student, report
from .implementing_mistakes import DXHAT_HINTS, dxhat_variant

__all__ = ["JACOBIAN_CASES", "check_d_xhat_d_x", "reveal_backward_derivation"]

_ATOL, _RTOL = 1e-6, 1e-5

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
    result = report(title, True, "the d x_hat_k / d x_j check passed; from it to (B1)-(B2):",
                    ("revealed", "locked"))
    try:
        from IPython.display import Markdown, display
    except ImportError:  # pragma: no cover - IPython comes with Jupyter
        print(solutions.BACKWARD_DERIVATION)
    else:
        display(Markdown(solutions.BACKWARD_DERIVATION))
    return result
