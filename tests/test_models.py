"""gnlib.models: shapes, norm plumbing, initialisation, cost accounting."""
import re

import pytest
import torch as _torch

_torch.set_num_threads(1)
import torch

from gnlib import models
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


def _doc_number(pattern: str) -> float:
    match = re.search(pattern, " ".join(models.__doc__.split()))
    assert match, f"the models docstring no longer says {pattern!r}"
    return float(match.group(1))


def test_docstring_counts_are_measured():
    """The numbers the module docstring states are what count_params / count_macs measure
    on the default model (so the docstring cannot go stale)."""
    model = build_model("gn")
    params = _doc_number(r"It has ([\d.]+) M parameters")
    macs = _doc_number(r"([\d.]+) M multiply-accumulates")
    layers = _doc_number(r"(\d+) norm layers")
    assert round(count_params(model) / 1e6, 2) == params
    assert round(count_macs(model) / 1e6, 1) == macs
    assert len(norm_layers(model)) == layers


def test_docstring_table_matches_the_layer_shapes():
    """Each row ``layer  C x H x W  C/G, ...`` of the docstring's table against the output
    shape and the GN layers of the stem and of every residual block."""
    rows = re.findall(r"^(stem|block \d).*?(\d+) x (\d+) x (\d+)\s+([\d, a-z]+)$",
                      models.__doc__, flags=re.M)
    model = build_model("gn", groups=32).eval()
    parts = [model.stem] + list(model.stages)
    assert len(rows) == len(parts)
    x = torch.zeros(1, 1, 28, 28)
    for (name, c, h, w, cpg), part in zip(rows, parts):
        x = part(x)
        assert tuple(x.shape[1:]) == (int(c), int(h), int(w)), name
        gns = [m for m in part.modules() if isinstance(m, GroupNorm)]
        assert [m.num_channels // m.num_groups for m in gns] == \
            [int(v) for v in re.findall(r"\d+", cpg)], name


def test_bad_arch():
    with pytest.raises(ValueError, match="same"):
        build_model("gn", widths=(8, 16), blocks=(1,), strides=(1,))
