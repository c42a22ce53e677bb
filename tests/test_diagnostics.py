"""gnlib.diagnostics: BN running statistics vs data, batch statistics vs data."""
import pytest
import torch

from gnlib.diagnostics import batch_statistics_deviation, bn_layers, bn_statistics_gap
from gnlib.models import build_model
from gnlib.train import TrainConfig, epoch_batches


def _data(n=200):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 10
    x = torch.randn(n, 1, 28, 28, generator=g) + y.view(-1, 1, 1, 1) * 0.5   # class shifts the mean
    return x, y


def test_whole_data_as_one_batch_has_the_data_statistics():
    torch.manual_seed(0)
    model = build_model("bn", widths=(8, 16))
    x, _ = _data()
    dev = batch_statistics_deviation(model, x, torch.arange(len(x)).view(1, -1))
    assert dev["mean_dev"].shape == (1,)
    assert dev["mean_dev"].item() < 1e-5 and abs(dev["var_ratio"].item() - 1) < 1e-5


def test_one_class_slices_deviate_more_than_shuffled_slices():
    torch.manual_seed(0)
    model = build_model("bn", widths=(8, 16))
    x, y = _data()
    g = lambda: torch.Generator().manual_seed(1)
    iid = epoch_batches(TrainConfig(batch_size=20, devices=10), y, g())
    one = epoch_batches(TrainConfig(batch_size=20, devices=10, batching="non-iid-1"), y, g())
    d_iid = batch_statistics_deviation(model, x, iid, devices=10)
    d_one = batch_statistics_deviation(model, x, one, devices=10)
    assert d_iid["mean_dev"].shape == (len(iid) * 10,)
    assert d_one["mean_dev"].mean() > 1.2 * d_iid["mean_dev"].mean()
    assert d_one["var_ratio"].mean() < d_iid["var_ratio"].mean()   # between-class variance lost


def test_errors_and_layers():
    model = build_model("gn", widths=(8, 16), groups=4)
    assert bn_layers(model) == [] and bn_statistics_gap(model, torch.randn(4, 1, 28, 28)) == {}
    with pytest.raises(ValueError, match="no BN layer"):
        batch_statistics_deviation(model, torch.randn(4, 1, 28, 28), torch.arange(4).view(1, 4))
    bn = build_model("bn", widths=(8, 16))
    with pytest.raises(ValueError, match="layer must be"):
        batch_statistics_deviation(bn, torch.randn(4, 1, 28, 28), torch.arange(4).view(1, 4), layer=99)
    with pytest.raises(ValueError, match="slices"):
        batch_statistics_deviation(bn, torch.randn(4, 1, 28, 28), torch.arange(4).view(1, 4), devices=3)
    assert len(bn_layers(build_model("br", widths=(8, 16)))) == 7
