"""Weight Standardization (gnlib.norms.WSConv2d, Qiao et al. 2019)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gnlib.norms import WSConv2d, convert_to_ws, make_norm, standardize_weight


def _conv(**kw) -> WSConv2d:
    torch.manual_seed(0)
    conv = WSConv2d(6, 4, 3, padding=1, dtype=torch.float64, **kw)
    with torch.no_grad():  # a weight far from standardized: shifted and scaled per channel
        conv.weight.mul_(torch.arange(1, 5, dtype=torch.float64).view(4, 1, 1, 1) * 3)
        conv.weight.add_(torch.linspace(-2, 2, 4, dtype=torch.float64).view(4, 1, 1, 1))
    return conv


def test_standardized_weight_has_zero_mean_unit_variance_per_output_channel():
    conv = _conv()
    w_hat = conv.standardized_weight().reshape(4, -1)
    torch.testing.assert_close(w_hat.mean(1), torch.zeros(4, dtype=torch.float64),
                               atol=1e-12, rtol=0)
    var = w_hat.var(1, unbiased=False)
    # sigma_hat^2 = sigma^2 / (sigma^2 + eps): 1 up to eps / sigma^2
    torch.testing.assert_close(var, torch.ones(4, dtype=torch.float64), atol=1e-3, rtol=0)
    raw_var = conv.weight.reshape(4, -1).var(1, unbiased=False)
    torch.testing.assert_close(var, raw_var / (raw_var + conv.ws_eps), atol=1e-12, rtol=0)
    # the stored parameter is not changed
    assert conv.weight.reshape(4, -1).mean(1).abs().max() > 0.1


def test_forward_equals_conv2d_with_manually_standardized_weight():
    conv = _conv(bias=True, stride=2, dilation=1)
    x = torch.randn(2, 6, 7, 7, dtype=torch.float64)
    w = conv.weight.detach()
    mu = w.mean(dim=(1, 2, 3), keepdim=True)
    var = ((w - mu) ** 2).mean(dim=(1, 2, 3), keepdim=True)
    w_hat = (w - mu) / torch.sqrt(var + 1e-5)
    want = F.conv2d(x, w_hat, conv.bias, stride=2, padding=1)
    torch.testing.assert_close(conv(x), want, atol=1e-12, rtol=1e-12)


def test_grouped_conv_standardizes_over_its_own_fan_in():
    torch.manual_seed(0)
    conv = WSConv2d(4, 6, 3, groups=2, bias=True, dtype=torch.float64)
    w = conv.weight.detach()                       # (6, 2, 3, 3): fan-in 2 * 3 * 3 = 18
    mu = w.mean(dim=(1, 2, 3), keepdim=True)
    var = w.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
    w_hat = (w - mu) / torch.sqrt(var + 1e-5)
    torch.testing.assert_close(conv.standardized_weight(), w_hat, atol=1e-12, rtol=1e-12)
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(conv(x), F.conv2d(x, w_hat, conv.bias, groups=2),
                               atol=1e-12, rtol=1e-12)


def test_gradients_flow_through_the_standardization():
    conv = _conv()
    x = torch.randn(2, 6, 5, 5, dtype=torch.float64, requires_grad=True)
    w = conv.weight.detach().clone().requires_grad_()

    def f(x, w):
        mu = w.mean(dim=(1, 2, 3), keepdim=True)
        var = ((w - mu) ** 2).mean(dim=(1, 2, 3), keepdim=True)
        return F.conv2d(x, (w - mu) / torch.sqrt(var + 1e-5), padding=1)

    dy = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    got = torch.autograd.grad(conv(x), (x, conv.weight), dy)
    want = torch.autograd.grad(f(x, w), (x, w), dy)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    # the weight gradient is orthogonal to the per-channel mean direction (WS's projection)
    assert got[1].sum(dim=(1, 2, 3)).abs().max() < 1e-8


def test_weight_gradient_is_the_closed_form_projection():
    r"""With :math:`\hat w = (w - \mu) r`, :math:`r = (\sigma^2 + \epsilon)^{-1/2}` per output
    channel and :math:`g = \partial L/\partial \hat w`, the backward autograd derives must be
    :math:`\partial L/\partial w = r\,(g - \bar g - \hat w\,\overline{g \hat w})`
    (means over each channel's fan-in): g without its mean and its component along
    :math:`\hat w`, scaled by r."""
    g = torch.Generator().manual_seed(0)
    w = (torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64) * 2 + 0.7).requires_grad_()
    grad_out = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)
    (dw,) = torch.autograd.grad(standardize_weight(w, eps=1e-3), w, grad_out)
    flat, gf = w.detach().reshape(4, -1), grad_out.reshape(4, -1)
    mu, var = flat.mean(1, keepdim=True), flat.var(1, unbiased=False, keepdim=True)
    r = (var + 1e-3).rsqrt()
    w_hat = (flat - mu) * r
    want = r * (gf - gf.mean(1, keepdim=True) - w_hat * (gf * w_hat).mean(1, keepdim=True))
    torch.testing.assert_close(dw, want.reshape(w.shape), atol=1e-12, rtol=1e-12)


def test_convert_to_ws_keeps_parameters_and_replaces_every_conv2d():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, bias=True), make_norm("gn", 4, groups=2),
                          nn.Sequential(nn.ReLU(), nn.Conv2d(4, 8, 1, stride=2, bias=False)))
    before = [p.detach().clone() for p in model.parameters()]
    convert_to_ws(model)
    assert isinstance(model[0], WSConv2d) and isinstance(model[2][1], WSConv2d)
    assert model[2][1].stride == (2, 2) and model[2][1].bias is None
    for a, b in zip(model.parameters(), before):
        torch.testing.assert_close(a.detach(), b)
    assert model(torch.randn(2, 1, 6, 6)).shape == (2, 8, 2, 2)
    single = convert_to_ws(nn.Conv2d(2, 2, 1))
    assert isinstance(single, WSConv2d)


def test_clear_errors():
    with pytest.raises(ValueError, match="eps must be positive"):
        WSConv2d(2, 2, 3, eps=0.0)
    with pytest.raises(ValueError, match="built for in_channels=6"):
        _conv()(torch.randn(1, 3, 5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="shape \\(C_out, C_in, \\*kernel\\)"):
        standardize_weight(torch.randn(5))
    with pytest.raises(TypeError, match="floating-point"):
        standardize_weight(torch.ones(2, 2, dtype=torch.long))
    assert "ws_eps=1e-05" in repr(WSConv2d(2, 2, 3))
