"""gnlib.models: shapes, norm plumbing, initialisation, cost accounting."""
import pytest
import torch as _torch

_torch.set_num_threads(1)
import torch

from gnlib.models import build_model, count_macs, count_params, norm_layers, residual_last_norms
from gnlib.norms import GroupNorm


@pytest.mark.parametrize("norm", ["bn", "ln", "in", "gn", "none"])
def test_output_shape(norm):
    model = build_model(norm)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_norm_plumbing_groups():
    model = build_model("gn", groups=32)
    gns = [m for m in norm_layers(model) if isinstance(m, GroupNorm)]
    assert gns and all(m.num_groups == 32 for m in gns)
    assert min(m.num_channels // m.num_groups for m in gns) >= 2   # never silently IN
    ln = [m.num_groups for m in norm_layers(build_model("ln"))]
    assert set(ln) == {1}
    inn = norm_layers(build_model("in"))
    assert all(m.num_groups == m.num_channels for m in inn)
    assert all(isinstance(m, torch.nn.BatchNorm2d) for m in norm_layers(build_model("bn")))
    assert norm_layers(build_model("none")) == []


def test_channels_per_group():
    model = build_model("gn", channels_per_group=16)
    assert {m.num_channels // m.num_groups for m in norm_layers(model)} == {16}


@pytest.mark.parametrize("norm", ["bn", "gn"])
def test_gamma_init(norm):
    model = build_model(norm)
    last = residual_last_norms(model)
    assert last and all(torch.all(m.weight == 0) for m in last)
    others = [m for m in norm_layers(model) if all(m is not x for x in last)]
    assert others and all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in others)


def test_he_init_std():
    torch.manual_seed(0)
    conv = build_model("gn", widths=(64, 128)).stages[0].conv2
    fan_out = conv.out_channels * 9
    assert abs(conv.weight.std().item() - (2 / fan_out) ** 0.5) < 0.1 * (2 / fan_out) ** 0.5


def test_counts_documented():
    model = build_model("gn")
    assert round(count_params(model) / 1e6, 2) == 0.31
    assert round(count_macs(model) / 1e6, 1) == 7.6


def test_bad_arch():
    with pytest.raises(ValueError, match="same"):
        build_model("gn", widths=(8, 16), blocks=(1,), strides=(1,))
