"""gnlib.norms against torch's native kernel, gradcheck, and every documented error."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gnlib.norms import (
    GroupNorm,
    channels_per_group,
    group_norm,
    group_norm_reference,
    make_norm,
    valid_groups,
)

SHAPES = [(4, 12), (3, 12, 7), (2, 12, 5, 6), (2, 12, 3, 4, 2)]
GROUPS = [1, 4, 12]  # LN, a middle divisor, IN
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def _inputs(shape, dtype, affine, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=dtype) * 2 + 0.5).requires_grad_()
    C = shape[1]
    w = (torch.rand(C, generator=g, dtype=dtype) + 0.5).requires_grad_() if affine else None
    b = torch.randn(C, generator=g, dtype=dtype).requires_grad_() if affine else None
    return x, w, b


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("G", GROUPS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("impl", [group_norm, group_norm_reference])
def test_matches_native_forward_and_backward(shape, G, dtype, affine, impl):
    if math.prod(shape[2:]) * shape[1] // G == 1:
        return _check_one_element_per_group(shape, G, dtype, affine, impl)
    x, w, b = _inputs(shape, dtype, affine)
    y = impl(x, G, w, b)
    y_ref = F.group_norm(x, G, w, b)
    atol = TOL[dtype]
    assert y.shape == x.shape and y.dtype == dtype
    torch.testing.assert_close(y, y_ref, atol=atol, rtol=atol)
    dy = torch.randn_like(y)
    params = [t for t in (x, w, b) if t is not None]
    grads = torch.autograd.grad(y, params, dy)
    grads_ref = torch.autograd.grad(y_ref, params, dy)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, atol=atol * 10, rtol=atol * 10)


def _check_one_element_per_group(shape, G, dtype, affine, impl):
    """|S_i| = 1: x_hat = x - mu = 0 exactly, so y = beta (0 without affine), dL/dx = 0 and
    dL/dgamma = 0; dL/dbeta = sum_n dL/dy. dL/dx is a difference of two equal terms of size
    r gamma dL/dy (r = eps^-1/2), so it is 0 up to the rounding of those terms."""
    x, w, b = _inputs(shape, dtype, affine)
    y = impl(x, G, w, b)
    torch.testing.assert_close(y, (b if affine else torch.zeros(shape[1], dtype=dtype))
                               .expand_as(y), atol=TOL[dtype], rtol=0)
    dy = torch.randn_like(y)
    params = [t for t in (x, w, b) if t is not None]
    grads = torch.autograd.grad(y, params, dy)
    term = (dy * (w if affine else 1)).abs().max() / math.sqrt(1e-5)   # |r gamma dL/dy|
    rounding = 4 * torch.finfo(dtype).eps * term.item()
    torch.testing.assert_close(grads[0], torch.zeros_like(x), atol=rounding, rtol=0)
    if affine:
        torch.testing.assert_close(grads[1], torch.zeros_like(w), atol=TOL[dtype], rtol=0)
        torch.testing.assert_close(grads[2], dy.sum(0), atol=TOL[dtype], rtol=TOL[dtype])


@pytest.mark.parametrize("shape", [(3, 6), (2, 6, 5), (2, 6, 3, 2), (2, 4, 2, 2, 2)])
@pytest.mark.parametrize("unbiased", [False, True])
def test_gradcheck_float64(shape, unbiased):
    x, w, b = _inputs(shape, torch.float64, True)
    G = 2
    assert torch.autograd.gradcheck(
        lambda x, w, b: group_norm(x, G, w, b, unbiased=unbiased), (x, w, b)
    )
    assert torch.autograd.gradgradcheck(
        lambda x, w, b: group_norm_reference(x, G, w, b, unbiased=unbiased), (x, w, b)
    )


@pytest.mark.parametrize("G", [1, 3, 6])                 # LN, a middle G, IN (C = 6)
@pytest.mark.parametrize("which", ["weight only", "bias only", "no affine", "x without grad"])
def test_gradcheck_partial_affine_and_input_without_grad(G, which):
    """The backward's branches: gamma without beta, beta without gamma, neither, and
    parameters that need gradients while x does not (a frozen input)."""
    x, w, b = _inputs((2, 6, 3, 2), torch.float64, True, seed=G)
    inputs, f = {
        "weight only": ((x, w), lambda x, w: group_norm(x, G, w, None)),
        "bias only": ((x, b), lambda x, b: group_norm(x, G, None, b)),
        "no affine": ((x,), lambda x: group_norm(x, G)),
        "x without grad": ((w, b), lambda w, b: group_norm(x.detach(), G, w, b)),
    }[which]
    assert torch.autograd.gradcheck(f, inputs)


def test_non_contiguous_input():
    base = torch.randn(2, 5, 8, 6, dtype=torch.float64)
    x = base.transpose(1, 3)[:, :, ::2]  # shape (2, 6, 4, 5), non-contiguous
    assert not x.is_contiguous()
    x.requires_grad_()
    y = group_norm(x, 3)
    torch.testing.assert_close(y, F.group_norm(x, 3), atol=1e-10, rtol=0)
    dy = torch.randn_like(y).transpose(2, 3).contiguous().transpose(2, 3)  # non-contiguous dy
    (g1,) = torch.autograd.grad(y, x, dy)
    (g2,) = torch.autograd.grad(F.group_norm(x, 3), x, dy)
    torch.testing.assert_close(g1, g2, atol=1e-10, rtol=0)


def test_unbiased_against_direct_formula():
    x = torch.randn(3, 8, 4, 4, dtype=torch.float64)
    eps = 1e-5
    y = group_norm(x, 4, eps=eps, unbiased=True)
    xg = x.reshape(3, 4, -1)
    m = xg.shape[-1]
    mu = xg.sum(-1, keepdim=True) / m
    var = ((xg - mu) ** 2).sum(-1, keepdim=True) / (m - 1)
    expected = ((xg - mu) / torch.sqrt(var + eps)).reshape(x.shape)
    torch.testing.assert_close(y, expected, atol=1e-12, rtol=0)
    # and it differs from the biased default by the factor sqrt((m-1)/m) (eps aside)
    y_biased = group_norm(x, 4, eps=0.0)
    y_unb = group_norm(x, 4, eps=0.0, unbiased=True)
    torch.testing.assert_close(y_unb, y_biased * math.sqrt((m - 1) / m), atol=1e-12, rtol=0)


def test_numerically_stable_far_from_zero():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 32, 16, 16, generator=g) + 1e3
    y = group_norm(x, 8)
    y64 = F.group_norm(x.double(), 8)
    assert (y.double() - y64).abs().max() < 1e-3


def test_output_is_not_a_view_so_inplace_relu_works():
    layer = nn.Sequential(GroupNorm(2, 4), nn.ReLU(inplace=True))
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_non_finite_input_gives_non_finite_output():
    x = torch.randn(2, 4, 3, 3)
    x[0, 0, 0, 0] = float("nan")
    x[1, 2, 1, 1] = float("inf")
    y = group_norm(x, 2)
    assert torch.isnan(y[0, :2]).all()          # the NaN spoils its whole group
    assert torch.isfinite(y[0, 2:]).all()       # other groups are untouched
    assert not torch.isfinite(y[1, 2:]).all()


def test_saves_only_input_and_group_statistics():
    x = torch.randn(2, 8, 5, 5, requires_grad=True)
    w = torch.ones(8, requires_grad=True)
    saved: list[int] = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        group_norm(x, 4, w, None)
    # x itself, mean and rstd (N*G each), and gamma (C)
    assert sorted(saved) == sorted([x.numel(), 2 * 4, 2 * 4, 8])


# --------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------
def test_module_matches_torch_groupnorm_interface():
    ours, theirs = GroupNorm(4, 8), nn.GroupNorm(4, 8)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for k in theirs.state_dict():
        torch.testing.assert_close(ours.state_dict()[k], theirs.state_dict()[k])
    with torch.no_grad():
        theirs.weight.uniform_()
        theirs.bias.uniform_()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(3, 8, 5, 5)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)
    assert repr(ours) == "GroupNorm(4, 8, eps=1e-05, affine=True)"
    assert "unbiased=True" in repr(GroupNorm(4, 8, unbiased=True))


def test_module_reset_parameters_and_no_affine():
    m = GroupNorm(2, 4)
    with torch.no_grad():
        m.weight.fill_(3)
        m.bias.fill_(3)
    m.reset_parameters()
    assert torch.equal(m.weight, torch.ones(4)) and torch.equal(m.bias, torch.zeros(4))
    m = GroupNorm(2, 4, affine=False)
    assert m.weight is None and list(m.parameters()) == []


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------
def test_not_divisible_lists_valid_groups():
    with pytest.raises(ValueError, match=r"not divisible.*Valid num_groups for C=12: \[1, 2, 3, 4, 6, 12\]"):
        group_norm(torch.randn(2, 12, 3, 3), 5)
    with pytest.raises(ValueError, match="not divisible"):
        GroupNorm(5, 12)


@pytest.mark.parametrize("G", [0, -2])
def test_non_positive_groups(G):
    with pytest.raises(ValueError, match="num_groups must be positive"):
        group_norm(torch.randn(2, 4, 3), G)
    with pytest.raises(ValueError, match="num_groups must be positive"):
        GroupNorm(G, 4)


def test_too_few_dims():
    with pytest.raises(ValueError, match=r"at least 2 dims.*unsqueeze"):
        group_norm(torch.randn(8), 2)


def test_channel_mismatch_in_module():
    with pytest.raises(ValueError, match="built for num_channels=8 but got an input with 4"):
        GroupNorm(2, 8)(torch.randn(2, 4, 3, 3))


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool])
def test_integer_dtype(dtype):
    with pytest.raises(TypeError, match="floating-point.*x.float"):
        group_norm(torch.ones(2, 4, 3, dtype=dtype), 2)


def test_wrong_types_and_affine_shapes():
    with pytest.raises(TypeError, match="torch.Tensor"):
        group_norm([[1.0, 2.0]], 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="num_groups must be an int"):
        group_norm(torch.randn(2, 4), 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"weight must have shape \(C,\) = \(4,\)"):
        group_norm(torch.randn(2, 4), 2, weight=torch.ones(3))
    with pytest.raises(ValueError, match="unbiased=True needs at least 2 elements"):
        group_norm(torch.randn(2, 4), 4, unbiased=True)


def test_valid_groups():
    assert valid_groups(32) == [1, 2, 4, 8, 16, 32]
    assert valid_groups(7) == [1, 7]


# --------------------------------------------------------------------------------------
# make_norm
# --------------------------------------------------------------------------------------
def test_make_norm_kinds():
    x = torch.randn(4, 64, 5, 5)
    assert isinstance(make_norm("bn", 64), nn.BatchNorm2d)
    assert isinstance(make_norm("bn", 64, spatial_dims=1), nn.BatchNorm1d)
    assert isinstance(make_norm("none", 64), nn.Identity)
    ln, inn, gn = make_norm("ln", 64), make_norm("in", 64), make_norm("gn", 64)
    assert (ln.num_groups, inn.num_groups, gn.num_groups) == (1, 64, 32)
    assert channels_per_group(gn) == 2 and channels_per_group(nn.Identity()) is None
    # the paper's LN (over C, H, W) and IN match torch's definitions
    torch.testing.assert_close(ln(x), F.layer_norm(x, x.shape[1:]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(inn(x), F.instance_norm(x), atol=1e-5, rtol=1e-5)
    assert make_norm("gn", 64, groups=8).num_groups == 8
    assert make_norm("gn", 64, unbiased=True).unbiased


def test_make_norm_gn_clamps_to_c_with_warning_and_rejects_unknown():
    with pytest.warns(UserWarning, match="Instance Norm"):
        layer = make_norm("gn", 16)
    assert layer.num_groups == 16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_norm("gn", 64)  # no warning when G <= C
    with pytest.raises(ValueError, match="unknown norm kind 'batch'"):
        make_norm("batch", 8)
    with pytest.raises(ValueError, match="not divisible"):
        make_norm("gn", 48, groups=32)
