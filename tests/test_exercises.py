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


# ---- Exercise 2a: d x_hat_k / d x_j, and the derivation it unlocks -----------------------
from gnlib.exercises import derivation, implementing  # noqa: E402
from gnlib.exercises.implementing_mistakes import DXHAT_HINTS, dxhat_variant  # noqa: E402


@pytest.fixture
def fresh_record(monkeypatch):
    """No exercise passed yet in this 'session' (the record is module state)."""
    monkeypatch.setattr(derivation, "_SOLVED", set())
    return derivation._SOLVED


def _jac(rule):
    """A student's answer written from ``rule(delta_kj, x_hat_k, x_hat_j, r, m, D)``."""
    def d_xhat_d_x(k, j, x_hat, r, m, D):
        return rule(float(k == j), x_hat[k], x_hat[j], r, m, D)
    return d_xhat_d_x


def _placeholder(k, j, x_hat, r, m, D):
    return ...


DXHAT_MISTAKES = [
    (_placeholder, "not answered yet (replace the ... with your answer)"),
    (_jac(lambda d, xk, xj, r, m, D: r * (d - xk * xj / D)),
     "the path through mu is missing: mu = (1/m) sum_j x_j, so d mu / d x_j = 1/m"),
    (_jac(lambda d, xk, xj, r, m, D: r * (d - 1 / m)), "the path through sigma is missing"),
    (_jac(lambda d, xk, xj, r, m, D: r * d), "mu and sigma are treated as constants"),
    (_jac(lambda d, xk, xj, r, m, D: r * (d - 1 / m - xk * xj / m)),
     "m where D belongs: the path through sigma comes from sigma^2 = (1/D) sum (x - mu)^2"),
    (_jac(lambda d, xk, xj, r, m, D: r * (d - 1 / D - xk * xj / D)), "D where m belongs"),
    (_jac(lambda d, xk, xj, r, m, D: r * (d - 1 / D - xk * xj / m)), "m and D are swapped"),
    (_jac(lambda d, xk, xj, r, m, D: r * (1 - 1 / m - xk * xj / D)),
     "the Kronecker delta is missing: x_hat_k depends on x_j directly only when k = j"),
    (_jac(lambda d, xk, xj, r, m, D: r * (-1 / m - xk * xj / D)), "the direct term is missing"),
    (_jac(lambda d, xk, xj, r, m, D: r * (d - 1 / m + xk * xj / D)),
     "sign error in the path through sigma"),
    (_jac(lambda d, xk, xj, r, m, D: r * (d - 1 / m - 2 * xk * xj / D)), "a factor 2 too many"),
    (_jac(lambda d, xk, xj, r, m, D: r * (d - 1 / m) - r ** 3 * xk * xj / D),
     "x_hat where x - mu belongs"),
    (_jac(lambda d, xk, xj, r, m, D: d - 1 / m - xk * xj / D), "the overall factor r is missing"),
    (_jac(lambda d, xk, xj, r, m, D: r * (d - 1 / m - xk * xk / D)),
     "your matrix is not symmetric in k and j"),
    (_jac(lambda d, xk, xj, r, m, D: r * (0.5 * d - 1 / m - xk * xj / D)),
     "the entries with k != j are right, the diagonal (k == j) is not"),
    (_jac(lambda d, xk, xj, r, m, D: r * (d - 1 / m - xk * xj / D) + 0.1 * (1 - d)),
     "the diagonal (k == j) is right, the entries with k != j are not"),
    (lambda k, j, x_hat, r, m, D: torch.zeros(m, m),
     "return one number, d x_hat_k / d x_j for the given k and j; got a tensor of shape (6, 6)"),
    (lambda k, j, x_hat, r, m, D: x_hat[k + 100], "your function raised IndexError"),
    (lambda k, j, x_hat, r, m, D: "r", "return one number (a float or a 0-d tensor)"),
]


@pytest.mark.parametrize("fn, feedback", DXHAT_MISTAKES, ids=[str(i) for i in range(len(DXHAT_MISTAKES))])
def test_d_xhat_d_x_mistake_gets_specific_feedback(fn, feedback, fresh_record, capsys):
    result = implementing.check_d_xhat_d_x(fn)
    assert not result.passed
    assert feedback in result.message
    assert capsys.readouterr().out.strip() == result.message
    assert not fresh_record                                   # nothing unlocked


@pytest.mark.parametrize("kw, hint", DXHAT_HINTS, ids=[str(i) for i in range(len(DXHAT_HINTS))])
def test_every_named_jacobian_mistake_is_recognized(kw, hint, fresh_record):
    def variant(k, j, x_hat, r, m, D):
        return dxhat_variant(x_hat, r, m, D, **kw)[k, j]
    assert hint in implementing.check_d_xhat_d_x(variant).message


def test_m_for_d_is_caught_on_the_unbiased_set_and_says_where(fresh_record):
    message = implementing.check_d_xhat_d_x(DXHAT_MISTAKES[4][0]).message
    assert "for a set of m = 5 values, D = m - 1 = 4 (unbiased variance)" in message
    assert "entry (k=" in message and "got " in message and "expected " in message


def test_model_jacobian_matches_autograd_and_passes(fresh_record):
    for m, unbiased, eps in implementing.JACOBIAN_CASES:
        J, x_hat, r, D = derivation._one_set(m, unbiased, eps, seed=0)
        torch.testing.assert_close(dxhat_variant(x_hat, r, m, D), J)
        mine = torch.tensor([[float(solutions.d_xhat_d_x(k, j, x_hat, r, m, D)) for j in range(m)]
                             for k in range(m)], dtype=torch.float64)
        torch.testing.assert_close(mine, J)
    assert implementing.check_d_xhat_d_x(solutions.d_xhat_d_x).passed
    assert fresh_record == {"2a"}


def test_derivation_is_locked_until_the_jacobian_passes(fresh_record, capsys):
    locked = implementing.reveal_backward_derivation()
    assert not locked and "locked" in locked.message and "try Exercise 2a first" in locked.message
    assert "(B1)" not in capsys.readouterr().out.replace("(B1)-(B2)", "")
    implementing.check_d_xhat_d_x(_jac(lambda d, xk, xj, r, m, D: r * (d - 1 / m)))   # wrong
    assert not implementing.reveal_backward_derivation().passed
    implementing.check_d_xhat_d_x(solutions.d_xhat_d_x)
    capsys.readouterr()
    revealed = implementing.reveal_backward_derivation()
    assert revealed.passed and "revealed" in revealed.message
    out = capsys.readouterr().out   # outside IPython, display() prints the Markdown object
    assert "Markdown" in out or "(B1)" in out


def test_derivation_text_derives_the_checked_jacobian():
    text = solutions.BACKWARD_DERIVATION
    for piece in (r"\delta_{kj} - \dfrac1m - \dfrac{\hat x_k\,\hat x_j}{D}", "(B1)", "(B2)",
                  r"\dfrac{\partial \mu}{\partial x_j} = \dfrac1m", "Biased vs unbiased"):
        assert piece in text, piece


def test_backward_checker_is_exercise_2b():
    assert exercises.check_backward(lambda *a: None).message.startswith("Exercise 2b (backward)")


# ---- predict, then reveal: the memory kept for backward -------------------------------
@pytest.fixture(scope="module")
def memory():
    from gnlib import bench
    return {name: bench.saved_memory(fn, implementing.MEMORY_SHAPE, implementing.MEMORY_GROUPS)
            for name, fn in bench.IMPLEMENTATIONS.items()}


X_KIB = 2 * 64 * 28 * 28 * 4 / 1024


@pytest.mark.parametrize("prediction, passed, feedback", [
    (None, False, "no prediction recorded yet"),
    ({"reference": ..., "gnlib": ...}, False, "no prediction recorded yet"),
    ({"reference": 1000}, False, "predict both: still missing ['gnlib']"),
    ({"reference": "3x", "gnlib": 1}, False, "predict numbers (KiB)"),
    (1000, False, 'predict a dict {"reference": KiB, "gnlib": KiB}'),
    ({"reference": 3 * X_KIB, "gnlib": X_KIB}, True, "RIGHT"),
    ({"reference": X_KIB, "gnlib": X_KIB}, False, "reference: you predicted 392.0 KiB; measured 1,176.5 KiB"),
    ({"reference": 3 * X_KIB, "gnlib": 0.5}, False, "the statistics alone are not enough"),
    ({"reference": 3 * X_KIB * 1024, "gnlib": X_KIB}, False, "that is the number of bytes"),
])
def test_saved_memory_reveal(prediction, passed, feedback, memory, capsys):
    result = implementing.reveal_saved_memory(prediction, memory)
    assert result.passed is passed
    assert feedback in result.message
    assert capsys.readouterr().out.strip() == result.message


def test_saved_memory_reveal_states_what_is_measured(memory):
    message = implementing.reveal_saved_memory({"reference": 1, "gnlib": 1}, memory).message
    assert "NOT QUITE (revealed)" in message
    assert "reference: you predicted 1.0 KiB; measured 1,176.5 KiB = 3.00 x the input's 392.0 KiB" in message
    assert "tensors of x's size kept: 3, x itself among them: no" in message
    assert "tensors of x's size kept: 1, x itself among them: yes" in message


def test_reference_keeps_no_x_but_three_x_sized_tensors(memory):
    """What the reveal's 'Why' text says about the reference and gnlib, measured."""
    ref, ours = memory["reference"], memory["gnlib"]
    numel = 2 * 64 * 28 * 28
    assert ref.total - ref.new == 64 * 4                     # of the arguments, only weight
    assert sum(torch.Size(s).numel() == numel for s in ref.shapes) == 3
    assert ours.total - ours.new == numel * 4 + 64 * 4       # x itself and weight
    assert ours.new == 2 * 2 * 32 * 4                        # mean and rstd, (N, G) float32


def test_saved_by_layer_sorts_what_conv_gn_relu_keep():
    from gnlib import GroupNorm
    x = torch.randn(2, 8, 5, 5, requires_grad=True)
    block = [("conv", torch.nn.Conv2d(8, 8, 3, padding=1, bias=False)), ("gn", GroupNorm(4, 8)),
             ("relu", torch.nn.ReLU())]
    conv, gn, relu = implementing.saved_by_layer(block, x)
    act = x.numel() * 4
    assert (conv.input, conv.output, conv.parameters, conv.other) == (act, 0, 8 * 8 * 9 * 4, 0)
    assert (gn.input, gn.output, gn.parameters, gn.other) == (act, 0, 8 * 4, 2 * 2 * 4 * 4)
    assert (relu.input, relu.output, relu.parameters, relu.other) == (0, act, 0, 0)
    table = implementing.format_saved_by_layer([conv, gn, relu])
    assert table.splitlines()[1].split() == ["conv", "1.6", "0.0", "2.2", "0.0"]
