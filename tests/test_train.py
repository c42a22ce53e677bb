"""gnlib.train: lr scaling and schedule, determinism, divergence, history."""
import math

import pytest
import torch as _torch

_torch.set_num_threads(1)
import torch

from gnlib.train import TrainConfig, evaluate, lr_at, scaled_lr, synthetic_data, train
from gnlib.data import to_float

TINY = dict(dataset="synthetic", train_size=64, test_size=32, epochs=2, widths=(8, 16),
            blocks=(1, 1), groups=4, eval_batch=32)


def tiny_data():
    xtr, ytr, xte, yte = synthetic_data(64, 32)
    return to_float(xtr), ytr, to_float(xte), yte


def test_lr_scaling():
    assert scaled_lr(0.1, 32) == pytest.approx(0.1)
    assert scaled_lr(0.1, 2) == pytest.approx(0.00625)
    assert TrainConfig(batch_size=8, base_lr=0.2).lr == pytest.approx(0.05)
    with pytest.raises(ValueError):
        scaled_lr(0.1, 0)


def test_schedules():
    assert lr_at(1.0, 0, 100, "cosine") == pytest.approx(1.0)
    assert lr_at(1.0, 50, 100, "cosine") == pytest.approx(0.5)
    assert lr_at(1.0, 100, 100, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert [lr_at(1.0, t, 100, "step") for t in (0, 30, 60, 95)] == pytest.approx(
        [1, 0.1, 0.01, 0.001])
    with pytest.raises(ValueError, match="schedule"):
        lr_at(1.0, 0, 10, "linear")


@pytest.mark.parametrize("norm", ["bn", "gn"])
def test_determinism(norm):
    cfg = TrainConfig(norm=norm, batch_size=8, **TINY)
    a, b = train(cfg, tiny_data()), train(cfg, tiny_data())
    assert a["history"]["train_loss"] == b["history"]["train_loss"]
    assert a["test_error"] == b["test_error"]
    c = train(TrainConfig(norm=norm, batch_size=8, **{**TINY, "seed": 1}), tiny_data())
    assert c["history"]["train_loss"] != a["history"]["train_loss"]


def test_history_and_metric():
    res = train(TrainConfig(norm="bn", batch_size=4, **{**TINY, "epochs": 3}), tiny_data())
    h = res["history"]
    assert h["epoch"] == [1, 2, 3] and len(h["test_error"]) == 3
    assert res["test_error"] == sorted(h["test_error"])[1]      # median of last 3
    assert res["steps"] == 3 * (64 // 4) and not res["diverged"]
    assert res["test_error_train_mode"] is not None
    assert res["lr"] == pytest.approx(0.1 * 4 / 32)


def test_divergence_recorded():
    res = train(TrainConfig(norm="gn", batch_size=8, base_lr=1e6, **TINY), tiny_data())
    assert res["diverged"] and res["diverged_epoch"] == 1
    assert res["test_error"] is None and res["history"]["train_loss"] == [None]


def test_train_mode_eval_leaves_running_stats():
    res_model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10),
                                    torch.nn.BatchNorm1d(10))
    xte = tiny_data()[2]
    before = res_model[2].running_mean.clone()
    evaluate(res_model, xte, torch.zeros(len(xte), dtype=torch.long), 4, train_mode=True)
    assert torch.equal(before, res_model[2].running_mean)
    assert res_model.training


def test_config_roundtrip():
    cfg = TrainConfig(norm="ln", widths=(8, 16))
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({"nrom": "gn"})


def test_non_iid_batching_runs_and_differs():
    base = dict(norm="bn", batch_size=8, **TINY)
    a = train(TrainConfig(**base), tiny_data())
    b = train(TrainConfig(batching="non-iid-1", **base), tiny_data())
    assert b["history"]["train_loss"] != a["history"]["train_loss"]
    with pytest.raises(ValueError, match="batching"):
        train(TrainConfig(batching="sorted", **base), tiny_data())


def test_epoch_batches_give_each_device_one_class():
    from gnlib.train import epoch_batches

    y = torch.arange(400) % 10
    cfg = TrainConfig(batch_size=16, devices=8, batching="non-iid-1")
    batches = epoch_batches(cfg, y, torch.Generator().manual_seed(0))
    assert batches.shape[1] == 16 and len(batches) == 400 // 16
    for step in batches:
        per_device = y[step].view(8, 2)
        assert (per_device == per_device[:, :1]).all()          # one class per device
        assert len(set(per_device[:, 0].tolist())) > 1          # but not per step
    iid = epoch_batches(TrainConfig(batch_size=16), y, torch.Generator().manual_seed(0))
    assert sorted(iid.flatten().tolist()) == sorted(set(iid.flatten().tolist()))


def test_devices_must_divide_the_batch_and_need_bn():
    with pytest.raises(ValueError, match="divisor"):
        train(TrainConfig(norm="bn", batch_size=8, devices=3, **TINY), tiny_data())
    with pytest.raises(ValueError, match="'bn' only"):
        train(TrainConfig(norm="br", batch_size=8, devices=2, **TINY), tiny_data())


def test_devices_split_bn_statistics_but_not_gn():
    """GN never looks across samples: devices changes nothing. BN's statistics do change."""
    gn1 = train(TrainConfig(norm="gn", batch_size=8, **TINY), tiny_data())
    gn4 = train(TrainConfig(norm="gn", batch_size=8, devices=4, **TINY), tiny_data())
    assert gn1["history"]["train_loss"] == gn4["history"]["train_loss"]
    bn1 = train(TrainConfig(norm="bn", batch_size=8, **TINY), tiny_data())
    bn4 = train(TrainConfig(norm="bn", batch_size=8, devices=4, **TINY), tiny_data())
    assert bn1["history"]["train_loss"] != bn4["history"]["train_loss"]
    assert len(bn4["history"]["bn_var_ratio"]) == TINY["epochs"]
    assert "bn_var_ratio" not in gn1["history"]


def test_bn_statistics_gap_is_zero_for_exact_running_statistics():
    from gnlib.models import build_model
    from gnlib.diagnostics import bn_statistics_gap

    torch.manual_seed(0)
    model = build_model("bn", widths=(8, 16), groups=4)
    x = torch.randn(64, 1, 28, 28)
    for m in model.modules():       # momentum None = cumulative average: one pass = exact
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
            m.reset_running_stats()
    # running stats from a train-mode pass are the train-mode input statistics; eval-mode
    # inputs of later layers differ, so only the first layer (the stem) is exact
    model.train()(x)
    gap = bn_statistics_gap(model.stem, x)
    assert gap["mean_gap"] < 1e-5 and abs(gap["var_ratio"] - 64 * 196 / (64 * 196 - 1)) < 1e-5
    model.stem[1].running_mean += 1.0
    assert bn_statistics_gap(model.stem, x)["mean_gap"] > 0.1


def test_syncbn_is_bn_over_all_simulated_devices():
    """SyncBN's statistics cover every device's images: with i.i.d. slices it is plain BN."""
    bn = train(TrainConfig(norm="bn", batch_size=8, **TINY), tiny_data())
    sync = train(TrainConfig(norm="syncbn", batch_size=8, devices=4, **TINY), tiny_data())
    ghost = train(TrainConfig(norm="bn", batch_size=8, devices=4, **TINY), tiny_data())
    assert sync["history"]["train_loss"] == bn["history"]["train_loss"]
    assert ghost["history"]["train_loss"] != bn["history"]["train_loss"]
    assert sync["test_error_train_mode"] is not None and "bn_var_ratio" in sync["history"]
    with pytest.raises(ValueError, match="devices > 1"):
        train(TrainConfig(norm="syncbn", batch_size=8, **TINY), tiny_data())


def test_gn_backend_reaches_every_group_norm_layer_and_is_checked():
    from gnlib.norms import GroupNorm, group_norm_cpp
    from gnlib.train import prepare_model

    for norm in ("gn", "ln", "in"):
        for backend in ("python", "auto", "cpp"):
            model = prepare_model(TrainConfig(norm=norm, gn_backend=backend, **TINY))
            layers = [m for m in model.modules() if isinstance(m, GroupNorm)]
            assert layers and {m.backend for m in layers} == {backend}
    assert TrainConfig().gn_backend == "auto"                  # the fast route by default
    with pytest.raises(ValueError, match="gn_backend"):
        TrainConfig(gn_backend="fortran")
    if group_norm_cpp.available():                             # same recipe, other kernel: close
        a = train(TrainConfig(norm="gn", batch_size=8, gn_backend="python", **TINY), tiny_data())
        b = train(TrainConfig(norm="gn", batch_size=8, gn_backend="cpp", **TINY), tiny_data())
        assert a["history"]["train_loss"] == pytest.approx(b["history"]["train_loss"], rel=1e-4)
