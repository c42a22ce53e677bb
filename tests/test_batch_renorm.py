"""Batch Renormalization (gnlib.norms.BatchRenorm2d) against its equations (Ioffe 2017)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from gnlib.norms import (
    NORM_KINDS,
    BatchRenorm1d,
    BatchRenorm2d,
    BatchRenorm3d,
    RenormSchedule,
    make_norm,
)

EPS = 1e-5


def _x(shape=(4, 3, 5, 5), seed=0, scale=2.0, shift=0.5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=dtype) * scale + shift


def _layer(C=3, r_max=1.5, d_max=0.5, seed=1, **kw):
    """A BR layer with non-trivial running statistics and affine parameters (float64)."""
    layer = BatchRenorm2d(C, r_max=r_max, d_max=d_max, dtype=torch.float64, **kw)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.running_mean.copy_(torch.randn(C, generator=g, dtype=torch.float64))
        layer.running_var.copy_(torch.rand(C, generator=g, dtype=torch.float64) * 3 + 0.2)
        if layer.affine:
            layer.weight.copy_(torch.rand(C, generator=g, dtype=torch.float64) + 0.5)
            layer.bias.copy_(torch.randn(C, generator=g, dtype=torch.float64))
    return layer


def _direct(x, mu, var, w, b, r_max, d_max, detach=True):
    """Eq. (BR) written out with per-channel loops over explicit formulas."""
    out = torch.empty_like(x)
    rs, ds = [], []
    for c in range(x.shape[1]):
        xc = x[:, c]
        mu_b = xc.mean()
        sigma_b = torch.sqrt(((xc - mu_b) ** 2).mean() + EPS)
        sigma = torch.sqrt(var[c] + EPS)
        r = torch.clamp(sigma_b / sigma, 1 / r_max, r_max)
        d = torch.clamp((mu_b - mu[c]) / sigma, -d_max, d_max)
        if detach:
            r, d = r.detach(), d.detach()
        rs.append(r)
        ds.append(d)
        out[:, c] = w[c] * ((xc - mu_b) / sigma_b * r + d) + b[c]
    return out, torch.stack(rs), torch.stack(ds)


def test_training_forward_matches_equations():
    layer = _layer()
    x = _x()
    mu, var = layer.running_mean.clone(), layer.running_var.clone()
    y = layer(x)
    y_ref, r_ref, d_ref = _direct(x, mu, var, layer.weight, layer.bias, 1.5, 0.5)
    torch.testing.assert_close(y, y_ref, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(layer.last_r, r_ref.detach())
    torch.testing.assert_close(layer.last_d, d_ref.detach())


def test_r_and_d_are_clipped_to_the_bounds():
    C = 4
    layer = BatchRenorm2d(C, r_max=1.5, d_max=0.5, affine=False, dtype=torch.float64)
    with torch.no_grad():
        layer.running_mean.copy_(torch.tensor([0.0, 0.0, 10.0, -10.0], dtype=torch.float64))
        layer.running_var.copy_(torch.tensor([1e-2, 1e2, 1.0, 1.0], dtype=torch.float64))
    x = _x((8, C, 4, 4), scale=1.0, shift=0.0)
    layer(x)
    r, d = layer.last_r, layer.last_d
    # channel 0: sigma_B / sigma ~ 10 -> r_max; channel 1: ~ 0.1 -> 1/r_max
    assert r[0].item() == pytest.approx(1.5) and r[1].item() == pytest.approx(1 / 1.5)
    # channel 2: (mu_B - 10)/1 ~ -10 -> -d_max; channel 3: ~ +10 -> +d_max
    assert d[2].item() == pytest.approx(-0.5) and d[3].item() == pytest.approx(0.5)
    assert bool((r <= 1.5 + 1e-12).all() and (r >= 1 / 1.5 - 1e-12).all())
    assert bool((d.abs() <= 0.5 + 1e-12).all())


def test_unclipped_r_d_give_the_inference_formula_in_training():
    # r, d not clipped: x_hat = (x - mu_B)/sigma_B * sigma_B/sigma + (mu_B - mu)/sigma = (x - mu)/sigma
    layer = _layer(r_max=1e6, d_max=1e6)
    mu, var = layer.running_mean.clone(), layer.running_var.clone()
    x = _x()
    y = layer(x)
    shape = (1, -1, 1, 1)
    want = (x - mu.view(shape)) / torch.sqrt(var.view(shape) + EPS)
    want = want * layer.weight.view(shape) + layer.bias.view(shape)
    torch.testing.assert_close(y, want, atol=1e-10, rtol=1e-10)


def test_r1_d0_equals_batchnorm_in_training_running_stats_and_eval():
    br = BatchRenorm2d(3, momentum=0.2)
    bn = nn.BatchNorm2d(3, momentum=0.2)
    with torch.no_grad():
        for m in (br, bn):
            m.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
            m.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    for step in range(3):
        x = _x((4, 3, 3, 3), seed=step, dtype=torch.float32).requires_grad_()
        y1, y2 = br(x), bn(x)
        torch.testing.assert_close(y1, y2, atol=1e-5, rtol=1e-5)
        dy = torch.randn_like(y1)
        g1 = torch.autograd.grad(y1, (x, br.weight, br.bias), dy)
        g2 = torch.autograd.grad(y2, (x, bn.weight, bn.bias), dy)
        for a, b in zip(g1, g2):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(br.running_mean, bn.running_mean)
    torch.testing.assert_close(br.running_var, bn.running_var)
    assert br.num_batches_tracked.item() == bn.num_batches_tracked.item() == 3
    br.eval(), bn.eval()
    x = _x((2, 3, 3, 3), seed=9, dtype=torch.float32)
    torch.testing.assert_close(br(x), bn(x), atol=1e-5, rtol=1e-5)


def test_no_gradient_through_r_and_d():
    layer = _layer()
    x = _x().requires_grad_()
    mu, var = layer.running_mean.clone(), layer.running_var.clone()
    dy = torch.randn_like(x)
    y = layer(x)
    grads = torch.autograd.grad(y, (x, layer.weight, layer.bias), dy)
    y_sg, _, _ = _direct(x, mu, var, layer.weight, layer.bias, 1.5, 0.5, detach=True)
    want = torch.autograd.grad(y_sg, (x, layer.weight, layer.bias), dy)
    for a, b in zip(grads, want):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    # ... and differentiating through r and d (no stop-gradient) gives a different dx
    y_full, _, _ = _direct(x, mu, var, layer.weight, layer.bias, 1.5, 0.5, detach=False)
    (dx_full,) = torch.autograd.grad(y_full, x, dy)
    assert (dx_full - grads[0]).abs().max() > 1e-3


def test_gradcheck_where_r_and_d_are_clipped():
    # With r and d saturated at their bounds they are locally constant, so the stop-gradient
    # backward is the true derivative and finite differences must agree with it.
    layer = _layer(C=2)
    buffers = {"running_mean": torch.tensor([10.0, -1000.0], dtype=torch.float64),
               "running_var": torch.tensor([1e-3, 1e3], dtype=torch.float64)}
    x = _x((3, 2, 2, 2), scale=1.0, shift=0.0).requires_grad_()
    w = layer.weight.detach().clone().requires_grad_()
    b = layer.bias.detach().clone().requires_grad_()

    def f(x, w, b):
        fresh = {k: v.clone() for k, v in buffers.items()}  # the forward updates them in place
        return torch.func.functional_call(layer, {"weight": w, "bias": b, **fresh}, (x,))

    f(x, w, b)
    assert torch.allclose(layer.last_r.abs(), torch.tensor([1.5, 1 / 1.5], dtype=torch.float64))
    assert torch.allclose(layer.last_d, torch.tensor([-0.5, 0.5], dtype=torch.float64))
    assert torch.autograd.gradcheck(f, (x, w, b))


def test_running_statistics_update():
    layer = _layer(momentum=0.3)
    mu, var = layer.running_mean.clone(), layer.running_var.clone()
    x = _x()
    layer(x)
    mu_b = x.mean(dim=(0, 2, 3))
    var_unbiased = x.var(dim=(0, 2, 3), unbiased=True)
    torch.testing.assert_close(layer.running_mean, 0.7 * mu + 0.3 * mu_b)
    torch.testing.assert_close(layer.running_var, 0.7 * var + 0.3 * var_unbiased)
    assert layer.num_batches_tracked.item() == 1
    # eval mode does not touch the running statistics
    layer.eval()
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    layer(x)
    for k, v in layer.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_eval_mode_is_the_inference_formula_and_batch_independent():
    layer = _layer().eval()
    x = _x()
    shape = (1, -1, 1, 1)
    want = (x - layer.running_mean.view(shape)) / torch.sqrt(layer.running_var.view(shape) + EPS)
    want = want * layer.weight.view(shape) + layer.bias.view(shape)
    torch.testing.assert_close(layer(x), want, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(layer(x[:1]), want[:1], atol=1e-12, rtol=1e-12)  # one sample


def test_schedule_warm_up_and_layer_follows_it():
    s = RenormSchedule(3.0, 5.0, start=10, r_end=50, d_end=30)
    assert s(0) == (1.0, 0.0) and s(10) == (1.0, 0.0)
    assert s(30) == pytest.approx((2.0, 5.0))
    assert s(50) == (3.0, 5.0) and s(10_000) == (3.0, 5.0)
    p = RenormSchedule.paper(40_000)
    assert (p.start, p.d_end, p.r_end) == (5000, 25000, 40000)
    layer = BatchRenorm2d(2, r_max=RenormSchedule(2.0, 1.0, start=0, r_end=2, d_end=2))
    assert layer.bounds == (1.0, 0.0)
    layer(torch.randn(2, 2, 2, 2))
    assert layer.bounds == (1.5, 0.5)
    layer(torch.randn(2, 2, 2, 2))
    assert layer.bounds == (2.0, 1.0) and layer.r_max == 2.0 and layer.d_max == 1.0
    assert "schedule=RenormSchedule(r_max=2.0" in repr(layer)


def test_make_norm_br():
    assert "br" in NORM_KINDS
    layer = make_norm("br", 8)
    assert isinstance(layer, BatchRenorm2d)
    assert layer.bounds == (1.5, 0.5)  # the GN paper's setting
    assert isinstance(make_norm("br", 8, spatial_dims=1), BatchRenorm1d)
    assert isinstance(make_norm("br", 8, spatial_dims=3), BatchRenorm3d)
    custom = make_norm("br", 8, r_max=3.0, d_max=5.0, momentum=0.01, eps=1e-3)
    assert (custom.bounds, custom.momentum, custom.eps) == ((3.0, 5.0), 0.01, 1e-3)
    sched = make_norm("br", 8, r_max=RenormSchedule.paper(800))
    assert sched.schedule is not None and sched.bounds == (1.0, 0.0)
    assert "r_max=1.5, d_max=0.5" in repr(layer)
    with pytest.raises(ValueError, match="spatial_dims"):
        make_norm("br", 8, spatial_dims=4)


def test_state_dict_keys_match_batchnorm():
    assert set(BatchRenorm2d(4).state_dict()) == set(nn.BatchNorm2d(4).state_dict())
    br = BatchRenorm2d(4)
    br.load_state_dict(nn.BatchNorm2d(4).state_dict())


def test_clear_errors():
    layer = BatchRenorm2d(3)
    with pytest.raises(ValueError, match="built for num_features=3 but got an input with 5"):
        layer(torch.randn(2, 5, 4, 4))
    with pytest.raises(ValueError, match="expects a 4D input"):
        layer(torch.randn(2, 3, 4))
    with pytest.raises(TypeError, match="floating-point"):
        layer(torch.ones(2, 3, 4, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor"):
        layer([1.0, 2.0])
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        layer(torch.randn(1, 3, 1, 1))
    layer.eval()(torch.randn(1, 3, 1, 1))  # fine in eval mode
    with pytest.raises(ValueError, match="r_max must be >= 1"):
        BatchRenorm2d(3, r_max=0.5)
    with pytest.raises(ValueError, match="d_max must be >= 0"):
        BatchRenorm2d(3, d_max=-1.0)
    with pytest.raises(ValueError, match="momentum"):
        BatchRenorm2d(3, momentum=0.0)
    with pytest.raises(ValueError, match="num_features must be positive"):
        BatchRenorm2d(0)
    with pytest.raises(TypeError, match="num_features must be an int"):
        BatchRenorm2d(3.0)
    with pytest.raises(ValueError, match="inside the RenormSchedule"):
        BatchRenorm2d(3, r_max=RenormSchedule(), d_max=1.0)
    with pytest.raises(ValueError, match="ramps must end after they start"):
        RenormSchedule(start=10, r_end=5)
    with pytest.raises(ValueError, match="expects a 2D or 3D input"):
        BatchRenorm1d(3)(torch.randn(2, 3, 4, 4))


def test_no_affine_and_in_place_relu_on_the_output():
    """``ReLU(inplace=True)`` straight on BR's output (as torchvision's ResNet does) must
    leave the backward intact: the same gradient as an out-of-place ReLU."""
    a, b, c = (BatchRenorm2d(3, affine=False, r_max=1.5, d_max=0.5, dtype=torch.float64)
               for _ in range(3))
    assert a.weight is None and a.bias is None
    x = _x((4, 3, 2, 2)).requires_grad_()
    dy = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    y_inplace = a(x)
    torch.relu_(y_inplace)                       # modifies the layer's own output tensor
    (dx,) = torch.autograd.grad(y_inplace, x, dy)
    (dx_ref,) = torch.autograd.grad(torch.relu(b(x)), x, dy)
    torch.testing.assert_close(dx, dx_ref, atol=1e-12, rtol=0)
    (dx_no_relu,) = torch.autograd.grad(c(x), x, dy)
    assert (dx - dx_no_relu).abs().max() > 1e-3  # the ReLU mattered


def test_base_class_for_isinstance_checks():
    from gnlib.norms import BatchRenorm

    assert all(isinstance(make_norm("br", 4, spatial_dims=d), BatchRenorm) for d in (1, 2, 3))
    assert isinstance(make_norm("br", 4, spatial_dims=1), BatchRenorm1d)
    assert isinstance(make_norm("br", 4, spatial_dims=3), BatchRenorm3d)


@pytest.mark.parametrize("cls, bn_cls, shape", [
    (BatchRenorm1d, nn.BatchNorm1d, (6, 3)), (BatchRenorm1d, nn.BatchNorm1d, (4, 3, 5)),
    (BatchRenorm3d, nn.BatchNorm3d, (2, 3, 3, 2, 2)),
])
def test_1d_and_3d_with_r1_d0_equal_batchnorm(cls, bn_cls, shape):
    br, bn = cls(3, momentum=0.2, dtype=torch.float64), bn_cls(3, momentum=0.2).double()
    with torch.no_grad():
        for m in (br, bn):
            m.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
            m.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    for step in range(2):
        x = _x(shape, seed=step).requires_grad_()
        y1, y2 = br(x), bn(x)
        torch.testing.assert_close(y1, y2, atol=1e-10, rtol=1e-10)
        dy = torch.randn_like(y1)
        for a, b in zip(torch.autograd.grad(y1, (x, br.weight, br.bias), dy),
                        torch.autograd.grad(y2, (x, bn.weight, bn.bias), dy)):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(br.running_mean, bn.running_mean)
    torch.testing.assert_close(br.running_var, bn.running_var)
    br.eval(), bn.eval()
    x = _x(shape, seed=7)
    torch.testing.assert_close(br(x), bn(x), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("cls, shape", [(BatchRenorm1d, (6, 3)), (BatchRenorm1d, (4, 3, 5)),
                                        (BatchRenorm3d, (2, 3, 3, 2, 2))])
def test_1d_and_3d_training_forward_matches_equations(cls, shape):
    layer = cls(3, r_max=1.5, d_max=0.5, dtype=torch.float64)
    with torch.no_grad():
        layer.running_mean.copy_(torch.tensor([3.0, 0.5, -20.0]))    # d clipped on 0 and 2
        layer.running_var.copy_(torch.tensor([0.1, 4.0, 40.0]))      # r clipped on 0 and 2
        layer.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        layer.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    mu, var = layer.running_mean.clone(), layer.running_var.clone()
    x = _x(shape)
    y = layer(x)
    y_ref, r_ref, d_ref = _direct(x, mu, var, layer.weight, layer.bias, 1.5, 0.5)
    torch.testing.assert_close(y, y_ref, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(layer.last_r, r_ref.detach())
    torch.testing.assert_close(layer.last_d, d_ref.detach())
    assert layer.last_r[0] == 1.5 and layer.last_r[2] == 1 / 1.5
    assert layer.last_d[0] == -0.5 and layer.last_d[2] == 0.5
