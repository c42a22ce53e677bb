"""GhostBatchNorm2d (BN with per-device statistics) and the "gn+ws" / bn_splits model options."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gnlib.models import build_model, norm_layers
from gnlib.norms import GhostBatchNorm2d, GroupNorm, WSConv2d, make_norm


def test_each_slice_is_normalized_like_bn_on_that_slice_alone():
    torch.manual_seed(0)
    x = torch.randn(12, 5, 4, 3, dtype=torch.float64)
    ghost = GhostBatchNorm2d(5, splits=3, dtype=torch.float64)
    with torch.no_grad():
        ghost.weight.uniform_(0.5, 2); ghost.bias.uniform_(-1, 1)
    refs = [nn.BatchNorm2d(5, dtype=torch.float64) for _ in range(3)]
    for r in refs:
        r.load_state_dict(ghost.state_dict(), strict=False)
    y = ghost(x)
    expected = torch.cat([r(s) for r, s in zip(refs, x.chunk(3))])
    torch.testing.assert_close(y, expected)
    # running statistics: the average of what the 3 per-device BNs would hold
    torch.testing.assert_close(ghost.running_mean, torch.stack([r.running_mean for r in refs]).mean(0))
    torch.testing.assert_close(ghost.running_var, torch.stack([r.running_var for r in refs]).mean(0))
    # eval mode: plain BN inference with the running statistics
    ghost.eval(); refs[0].eval()
    refs[0].running_mean.copy_(ghost.running_mean); refs[0].running_var.copy_(ghost.running_var)
    torch.testing.assert_close(ghost(x), refs[0](x))


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_output_gradients_and_running_stats_match_batch_norm_on_each_slice(memory_format):
    """GhostBatchNorm2d against ``F.batch_norm`` applied to each slice separately: output,
    dL/dx, dL/dgamma, dL/dbeta, and running statistics equal to the slices' average."""
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(8, 3, 4, 5, generator=g, dtype=torch.float64) * 2 + 1)
    x = x.to(memory_format=memory_format).requires_grad_()
    dy = torch.randn(8, 3, 4, 5, generator=g, dtype=torch.float64)
    w = (torch.rand(3, generator=g, dtype=torch.float64) + 0.5).requires_grad_()
    b = torch.randn(3, generator=g, dtype=torch.float64).requires_grad_()
    ghost = GhostBatchNorm2d(3, splits=4, momentum=0.3, dtype=torch.float64)
    with torch.no_grad():
        ghost.weight.copy_(w), ghost.bias.copy_(b)
    y = ghost(x)
    assert y.is_contiguous(memory_format=memory_format)
    got = torch.autograd.grad(y, (x, ghost.weight, ghost.bias), dy)
    stats = [(torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
             for _ in range(4)]
    y_ref = torch.cat([F.batch_norm(s, m, v, w, b, training=True, momentum=0.3)
                       for s, (m, v) in zip(x.chunk(4), stats)])
    want = torch.autograd.grad(y_ref, (x, w, b), dy)
    torch.testing.assert_close(y, y_ref, atol=1e-12, rtol=0)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, atol=1e-12, rtol=0)
    torch.testing.assert_close(ghost.running_mean, torch.stack([m for m, _ in stats]).mean(0))
    torch.testing.assert_close(ghost.running_var, torch.stack([v for _, v in stats]).mean(0))


def test_splits_one_is_batch_norm_and_errors_are_clear():
    x = torch.randn(6, 4, 3, 3)
    torch.testing.assert_close(GhostBatchNorm2d(4, splits=1)(x), nn.BatchNorm2d(4)(x))
    with pytest.raises(ValueError, match="divisible"):
        GhostBatchNorm2d(4, splits=4)(x)
    with pytest.raises(ValueError, match="1 value per channel"):
        GhostBatchNorm2d(4, splits=6)(torch.randn(6, 4, 1, 1))
    with pytest.raises(ValueError, match="num_features=4"):
        GhostBatchNorm2d(4, splits=2)(torch.randn(6, 5, 3, 3))
    with pytest.raises(ValueError, match="positive int"):
        GhostBatchNorm2d(4, splits=0)
    assert isinstance(make_norm("bn", 4, splits=2), GhostBatchNorm2d)
    with pytest.raises(ValueError, match="'bn' only"):
        make_norm("gn", 4, groups=2, splits=2)
    assert "splits=2" in repr(GhostBatchNorm2d(4, splits=2))


def test_model_options_gn_ws_and_bn_splits():
    ws = build_model("gn+ws", widths=(8, 16), groups=4)
    convs = [m for m in ws.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(isinstance(m, WSConv2d) for m in convs)
    assert all(isinstance(m, GroupNorm) for m in norm_layers(ws))
    assert ws(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    bn = build_model("bn", widths=(8, 16), bn_splits=4)
    assert all(isinstance(m, GhostBatchNorm2d) and m.splits == 4 for m in norm_layers(bn))
    with pytest.raises(ValueError, match="'bn' only"):
        build_model("gn", widths=(8, 16), groups=4, bn_splits=2)
    with pytest.raises(ValueError, match="unknown norm"):
        build_model("ws", widths=(8, 16))
    br = build_model("br", widths=(8, 16))
    assert len(norm_layers(br)) == 7       # BR layers are norm layers (gamma init, stats)
