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
    assert a["val_error"] == b["val_error"]
    c = train(TrainConfig(norm=norm, batch_size=8, **{**TINY, "seed": 1}), tiny_data())
    assert c["history"]["train_loss"] != a["history"]["train_loss"]


def test_history_and_metric():
    res = train(TrainConfig(norm="bn", batch_size=4, **{**TINY, "epochs": 3}), tiny_data())
    h = res["history"]
    assert h["epoch"] == [1, 2, 3] and len(h["val_error"]) == 3
    assert res["val_error"] == sorted(h["val_error"])[1]      # median of last 3
    assert res["steps"] == 3 * (64 // 4) and not res["diverged"]
    assert res["val_error_train_mode"] is not None
    assert res["lr"] == pytest.approx(0.1 * 4 / 32)


def test_divergence_recorded():
    res = train(TrainConfig(norm="gn", batch_size=8, base_lr=1e6, **TINY), tiny_data())
    assert res["diverged"] and res["diverged_epoch"] == 1
    assert res["val_error"] is None and res["history"]["train_loss"] == [None]


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


def test_by_class_batching_runs_and_differs():
    base = dict(norm="bn", batch_size=8, **TINY)
    a = train(TrainConfig(**base), tiny_data())
    b = train(TrainConfig(batching="by_class", **base), tiny_data())
    assert b["steps"] == a["steps"] and b["history"]["train_loss"] != a["history"]["train_loss"]
    with pytest.raises(ValueError, match="batching"):
        train(TrainConfig(batching="sorted", **base), tiny_data())
