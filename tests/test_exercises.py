"""The exercise checkers name each typical mistake; the model solutions pass."""
from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from gnlib import exercises, solutions


def _bcast(t: Tensor, x: Tensor) -> Tensor:
    return t.reshape((1, -1) + (1,) * (x.dim() - 2))


def _affine(x_hat: Tensor, w: Tensor | None, b: Tensor | None) -> Tensor:
    if w is not None:
        x_hat = x_hat * _bcast(w, x_hat)
    if b is not None:
        x_hat = x_hat + _bcast(b, x_hat)
    return x_hat


# ---- deliberately wrong forwards, written the way a student might --------------------
def fwd_per_channel(x, G, w=None, b=None, eps=1e-5):
    dims = tuple(range(2, x.dim())) or (1,)
    if x.dim() == 2:  # (N, C): a channel is a single value
        mean, var = x, torch.zeros_like(x)
    else:
        mean = x.mean(dims, keepdim=True)
        var = x.var(dims, unbiased=False, keepdim=True)
    return _affine((x - mean) / torch.sqrt(var + eps), w, b)


def fwd_whole_sample(x, G, w=None, b=None, eps=1e-5):
    dims = tuple(range(1, x.dim()))
    mean = x.mean(dims, keepdim=True)
    var = x.var(dims, unbiased=False, keepdim=True)
    return _affine((x - mean) / torch.sqrt(var + eps), w, b)


def fwd_over_batch(x, G, w=None, b=None, eps=1e-5):
    xg = x.reshape(x.shape[0], G, -1)
    mean = xg.mean((0, 2), keepdim=True)
    var = ((xg - mean) ** 2).mean((0, 2), keepdim=True)
    return _affine(((xg - mean) / torch.sqrt(var + eps)).reshape(x.shape), w, b)


def fwd_interleaved(x, G, w=None, b=None, eps=1e-5):
    xg = x.reshape(x.shape[0], x.shape[1] // G, G, -1)
    mean = xg.mean((1, 3), keepdim=True)
    var = xg.var((1, 3), unbiased=False, keepdim=True)
    return _affine(((xg - mean) / torch.sqrt(var + eps)).reshape(x.shape), w, b)


def _fwd_grouped(norm: Callable[[Tensor, Tensor, Tensor], Tensor], affine: str = "both"):
    def fn(x, G, w=None, b=None, eps=1e-5):
        xg = x.reshape(x.shape[0], G, -1)
        y = norm(xg, xg.mean(-1, keepdim=True), eps).reshape(x.shape)
        return _affine(y, w if affine in ("both", "w") else None,
                       b if affine in ("both", "b") else None)
    return fn


fwd_unbiased = _fwd_grouped(lambda xg, mu, eps: (xg - mu) / torch.sqrt(xg.var(-1, keepdim=True) + eps))
fwd_eps_outside = _fwd_grouped(
    lambda xg, mu, eps: (xg - mu) / (xg.std(-1, unbiased=False, keepdim=True) + eps))
fwd_no_eps = _fwd_grouped(lambda xg, mu, eps: (xg - mu) / xg.std(-1, unbiased=False, keepdim=True))
fwd_var_not_std = _fwd_grouped(
    lambda xg, mu, eps: (xg - mu) / (xg.var(-1, unbiased=False, keepdim=True) + eps))
_ok_norm = lambda xg, mu, eps: (xg - mu) / torch.sqrt(xg.var(-1, unbiased=False, keepdim=True) + eps)  # noqa: E731
fwd_no_affine = _fwd_grouped(_ok_norm, affine="none")
fwd_no_gamma = _fwd_grouped(_ok_norm, affine="b")
fwd_no_beta = _fwd_grouped(_ok_norm, affine="w")
fwd_no_centering = _fwd_grouped(
    lambda xg, mu, eps: xg / torch.sqrt(xg.var(-1, unbiased=False, keepdim=True) + eps))


def fwd_grouped_shape(x, G, w=None, b=None, eps=1e-5):
    xg = x.reshape(x.shape[0], G, -1)
    return (xg - xg.mean(-1, keepdim=True)) / torch.sqrt(xg.var(-1, unbiased=False, keepdim=True) + eps)


def fwd_in_place(x, G, w=None, b=None, eps=1e-5):
    x -= 0.0 * x + 1.0
    return solutions.group_norm_forward(x, G, w, b, eps)


def fwd_garbage(x, G, w=None, b=None, eps=1e-5):
    return solutions.group_norm_forward(x, G, w, b, eps) * 1.01


def fwd_crashes(x, G, w=None, b=None, eps=1e-5):
    return x.reshape(x.shape[0], G, 5)


def fwd_placeholder(x, G, w=None, b=None, eps=1e-5):
    raise NotImplementedError


def fwd_returns_none(x, G, w=None, b=None, eps=1e-5):
    return None


FORWARD_MISTAKES = [
    (fwd_placeholder, "not implemented yet"),
    (fwd_returns_none, "not implemented yet"),
    (fwd_crashes, "your function raised RuntimeError"),
    (fwd_grouped_shape, "wrong output shape: y has shape (2, 4, 24), expected (2, 8, 3, 4)"),
    (fwd_per_channel, "wrong axis of reduction: your mean/variance are taken per channel"),
    (fwd_whole_sample, "wrong axis of reduction: your mean/variance are taken over the whole sample"),
    (fwd_over_batch, "average over the batch axis N"),
    (fwd_interleaved, "wrong grouping: your groups take every G-th channel"),
    (fwd_unbiased, "biased/unbiased mix-up"),
    (fwd_eps_outside, "eps outside the square root"),
    (fwd_no_eps, "eps is missing"),
    (fwd_var_not_std, "divided by the variance instead of the standard deviation"),
    (fwd_no_centering, "the mean is not subtracted"),
    (fwd_no_affine, "missing gamma and beta"),
    (fwd_no_gamma, "missing gamma"),
    (fwd_no_beta, "missing beta"),
    (fwd_in_place, "changed x in place"),
    (fwd_garbage, "first wrong element at index (0, 0, 0, 0)"),
]


@pytest.mark.parametrize("fn, feedback", FORWARD_MISTAKES, ids=[f.__name__ for f, _ in FORWARD_MISTAKES])
def test_forward_mistake_gets_specific_feedback(fn, feedback, capsys):
    result = exercises.check_forward(fn)
    assert not result.passed and not result
    assert feedback in result.message
    assert capsys.readouterr().out.strip() == result.message


def test_mismatch_message_names_index_and_values():
    message = exercises.check_forward(fwd_unbiased).message
    assert "first wrong element at index (" in message and "got " in message and "expected " in message


# ---- deliberately wrong backwards ------------------------------------------------------
def _bwd(dx_rule: Callable[..., Tensor], dw_rule=None, db_rule=None, per_channel=False):
    """A backward whose dx, dweight, dbias follow the given (possibly wrong) rules."""
    def fn(dy, x, mean, rstd, G, w):
        N, C = x.shape[:2]
        red = [0] + list(range(2, x.dim()))
        x_hat = ((x.reshape(N, G, -1) - mean[..., None]) * rstd[..., None]).reshape(x.shape)
        rows = C if per_channel else G
        if per_channel:
            xc = x.reshape(N, C, -1)
            mu = xc.mean(-1, keepdim=True)
            r = torch.rsqrt(xc.var(-1, unbiased=False, keepdim=True) + 1e-5)
            xh = (xc - mu) * r
        else:
            r, xh = rstd[..., None], x_hat.reshape(N, G, -1)
        g = (dy * _bcast(w, x)).reshape(N, rows, -1)
        dx = dx_rule(g, xh, r, dy.reshape(N, rows, -1)).reshape(x.shape)
        dw = dw_rule(dy, x, x_hat, red) if dw_rule else (dy * x_hat).sum(red)
        db = db_rule(dy, red) if db_rule else dy.sum(red)
        return dx, dw, db
    return fn


def _m(t: Tensor) -> Tensor:
    return t.mean(-1, keepdim=True)


_good_dx = lambda g, xh, r, dy: r * (g - _m(g) - xh * _m(g * xh))  # noqa: E731

BACKWARD_MISTAKES = [
    (lambda *a: None, "not implemented yet"),
    (_bwd(lambda g, xh, r, dy: r * g), "mu and sigma are treated as constants"),
    (_bwd(lambda g, xh, r, dy: r * (g - xh * _m(g * xh))), "the path through mu is missing"),
    (_bwd(lambda g, xh, r, dy: r * (g - _m(g))), "the path through sigma is missing"),
    (_bwd(lambda g, xh, r, dy: r * (g - _m(g) + xh * _m(g * xh))), "sign error"),
    (_bwd(lambda g, xh, r, dy: r * (g - _m(g) - xh * (g * xh).sum(-1, keepdim=True) / (g.shape[-1] - 1))),
     "biased/unbiased mix-up"),
    (_bwd(lambda g, xh, r, dy: r * (dy - _m(dy) - xh * _m(dy * xh))), "gamma is missing"),
    (_bwd(_good_dx, per_channel=True), "the sums in dx run per channel"),
    (_bwd(_good_dx, dw_rule=lambda dy, x, xh, red: (dy * x).sum(red)), "dweight uses x instead of x_hat"),
    (_bwd(_good_dx, dw_rule=lambda dy, x, xh, red: dy.sum(red),
          db_rule=lambda dy, red: dy.sum(red) * 0 + 1), "dweight and dbias are swapped"),
    (_bwd(_good_dx, db_rule=lambda dy, red: dy.sum(red[1:])),
     "wrong output shape: dbias has shape (2, 8), expected (8,)"),
    (_bwd(lambda g, xh, r, dy: 1.01 * _good_dx(g, xh, r, dy)),
     "dx (gradient mismatch) for x of shape (2, 8, 3, 4) (4D), G=4, eps=1e-05:\n  first wrong element at index (0, 0, 0, 0)"),
    (lambda dy, x, mean, rstd, G, w: (dy, w), "return a tuple (dx, dweight, dbias)"),
]


@pytest.mark.parametrize("fn, feedback", BACKWARD_MISTAKES, ids=[str(i) for i in range(len(BACKWARD_MISTAKES))])
def test_backward_mistake_gets_specific_feedback(fn, feedback, capsys):
    result = exercises.check_backward(fn)
    assert not result.passed
    assert feedback in result.message
    assert capsys.readouterr().out.strip() == result.message


def test_dweight_swapped_detected_on_dweight():
    fn = _bwd(_good_dx, dw_rule=lambda dy, x, xh, red: dy.sum(red), db_rule=lambda dy, red: (dy * 0).sum(red))
    assert "dweight (gradient mismatch)" in exercises.check_backward(fn).message


# ---- the solutions pass --------------------------------------------------------------
def test_solutions_pass(capsys):
    assert exercises.check_forward(solutions.group_norm_forward).passed
    assert exercises.check_backward(solutions.group_norm_backward).passed
    assert capsys.readouterr().out.count("PASSED") == 2


def test_solution_forward_matches_torch_in_float32():
    x = torch.randn(4, 6, 5, 5) * 3 + 2
    w, b = torch.randn(6), torch.randn(6)
    expected = torch.nn.functional.group_norm(x, 3, w, b, 1e-5)
    torch.testing.assert_close(solutions.group_norm_forward(x, 3, w, b), expected, atol=1e-5, rtol=1e-5)


def test_with_backward_passes_gradcheck():
    fn = exercises.with_backward(solutions.group_norm_backward)
    x = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: fn(x, 3, w, b), (x, w, b))


def test_checker_reports_are_deterministic():
    assert exercises.check_forward(fwd_unbiased).message == exercises.check_forward(fwd_unbiased).message


def test_gnlib_group_norm_passes_forward_checker():
    from gnlib import group_norm
    assert exercises.check_forward(lambda x, G, w, b, eps: group_norm(x, G, w, b, eps)).passed


# ---- the package keeps the old module's names ------------------------------------------
def test_package_keeps_every_public_name_of_the_old_module():
    for name in ("CASES", "Case", "CheckResult", "NOT_IMPLEMENTED", "check_backward",
                 "check_forward", "with_backward"):
        assert hasattr(exercises, name), name
    assert set(exercises.__all__) <= set(dir(exercises))
    from gnlib.exercises import implementing
    assert exercises.check_forward is implementing.check_forward
