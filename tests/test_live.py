"""gnlib.live: notebook 04's "train now" panel, driven without a browser (the button's callback
is called directly) on the synthetic data set."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from gnlib.live import LiveSetting, TrainNow, plot_live_vs_committed, train_now_panel  # noqa: E402

SIZES = dict(dataset="synthetic", train_size=256, test_size=128)


def record(norm, devices=1, groups=32, seed=0, errors=(20.0, 15.0, 12.0)):
    return {"config": {"norm": norm, "batch_size": 32, "devices": devices, "groups": groups,
                       "seed": seed, "epochs": len(errors), "train_size": 60000},
            "test_error": errors[-1], "train_error": errors[-1], "diverged": False,
            "did_not_train": False,
            "history": {"epoch": list(range(1, len(errors) + 1)), "test_error": list(errors)}}


COMMITTED = [record("bn"), record("bn", seed=1, errors=(21.0, 14.0, 11.0)),
             record("bn", devices=16, errors=(30.0, 25.0, 22.0)), record("gn")]


@pytest.fixture(scope="module")
def trainer():
    return TrainNow(COMMITTED, sizes=SIZES, max_epochs=3)


def test_settings_are_checked_and_labelled():
    for bad, msg in ((dict(norm="xn"), "norm must be"), (dict(images=3), "images per device"),
                     (dict(groups=3), "G must be"), (dict(epochs=0), "epochs must be")):
        with pytest.raises(ValueError, match=msg):
            LiveSetting(**bad)
    assert LiveSetting("bn", 2).label == "BN, statistics over 2 images per device"
    assert LiveSetting("bn", 1).label.endswith("1 image per device")
    assert LiveSetting("gn", 2, 16).label == "GN, G = 16"
    assert LiveSetting("ln", 2, 16).canonical == LiveSetting("ln", 32, 32)


def test_config_is_the_quick_figure1_recipe(trainer):
    from gnlib.experiments import PRESETS

    quick = PRESETS["quick"]["figure1"]["train"]
    cfg = trainer.config(LiveSetting("bn", 2, 16, epochs=3))
    assert (cfg.norm, cfg.batch_size, cfg.devices, cfg.groups, cfg.epochs) == ("bn", 32, 16, 32, 3)
    assert cfg.augment == quick["augment"] and cfg.base_lr == quick["base_lr"]
    assert cfg.train_size == 256 and cfg.dataset == "synthetic"
    cfg = trainer.config(LiveSetting("gn", 2, 16, epochs=1))
    assert (cfg.devices, cfg.groups) == (1, 16)
    with pytest.raises(ValueError, match="at most 3"):
        trainer.config(LiveSetting(epochs=4))


def test_committed_runs_of_the_same_setting(trainer):
    assert [r["config"]["seed"] for r in trainer.committed_runs(LiveSetting("bn", 32))] == [0, 1]
    assert trainer.committed_runs(LiveSetting("bn", 2))[0]["config"]["devices"] == 16
    assert trainer.committed_runs(LiveSetting("bn", 4)) == []
    assert len(trainer.committed_runs(LiveSetting("gn", 8, 32))) == 1
    assert trainer.committed_runs(LiveSetting("gn", 32, 16)) == []
    assert "no committed run for this setting" in trainer.summary(LiveSetting("ln"))


def test_run_records_and_draws_next_to_the_committed(trainer):
    s = LiveSetting("bn", 32, epochs=2)
    r = trainer.run(s)
    assert len(r["history"]["test_error"]) == 2 and r["config"]["devices"] == 1
    again = TrainNow(COMMITTED, sizes=SIZES, max_epochs=3).run(s)
    assert again["history"]["test_error"] == r["history"]["test_error"]      # deterministic
    text = trainer.summary()
    assert f"test error {r['test_error']:.2f} %" in text and "seeds 0, 1" in text
    fig = trainer.figure()
    left, right = fig.axes
    assert list(left.lines[0].get_ydata()) == r["history"]["test_error"]
    assert len(right.lines) == 3                               # two seeds and their mean
    assert list(right.lines[-1].get_ydata()) == [20.5, 14.5, 11.5]
    assert left.get_ylabel() == "test error (%)" and left.get_title() and right.get_title()
    other = trainer.figure(LiveSetting("gn", groups=16))       # no live run, nothing committed
    texts = [t.get_text() for ax in other.axes for t in ax.texts]
    assert texts == ["press Train now", "no committed run for this setting"]


def test_plot_without_committed_runs_says_so():
    live = {"config": {"norm": "gn", "train_size": 1000, "epochs": 2}, "wall_s": 3.0,
            "history": {"epoch": [1, 2], "test_error": [50.0, 40.0]}}
    fig = plot_live_vs_committed(live, [], "GN, G = 8")
    assert fig.axes[1].texts[0].get_text() == "no committed run for this setting"
    assert "GN, G = 8" in fig.get_suptitle()


def test_panel_button_trains_and_redraws():
    trainer = TrainNow(COMMITTED, sizes=SIZES, max_epochs=2)
    box = train_now_panel(trainer, LiveSetting("bn", 32, epochs=1))
    c = box.controls
    image, numbers = box.children[3], box.children[4]
    assert not c["images"].disabled and c["groups"].disabled
    assert "press Train now" in numbers.value and image.value
    before = image.value
    c["train"].click()                                         # the button's callback
    assert trainer.last is not None and trainer.last["config"]["epochs"] == 1
    assert image.value != before and "live run (quick preset" in numbers.value
    assert not c["train"].disabled and c["train"].description == "Train now"
    c["norm"].value = "gn"
    assert c["images"].disabled and not c["groups"].disabled
    assert "GN, G = 32" in numbers.value and "live run: press Train now" in numbers.value
    shown = image.value
    c["images"].value = 4                                      # ignored by GN: no redraw
    assert image.value == shown
    c["groups"].value = 8
    assert image.value != shown and "no committed run" in numbers.value
    record = box.start()
    assert record["config"]["norm"] == "gn" and record["config"]["groups"] == 8
    assert f"{record['test_error']:.2f} %" in numbers.value
