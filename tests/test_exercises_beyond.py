"""Notebook 07's checkers name each typical mistake (verified by running BatchRenorm2d); the
reveal waits for a prediction; the Batch Renorm comparison is seed-paired per recipe."""
from __future__ import annotations

import math

import pytest

from gnlib.exercises import beyond


def _check(capsys, result, feedback: str, passed: bool = False) -> None:
    assert result.passed is passed and bool(result) is passed
    assert feedback in result.message, result.message
    assert capsys.readouterr().out.strip() == result.message


RIGHT = {"r": 1, "d": 0, "r_max": 1, "d_max": 0}


# ---- exercise 1: r, d and the bounds --------------------------------------------------------
def test_batch_renorm_itself_gives_the_right_answers():
    assert beyond.renorm_identity() == pytest.approx((1.0, 0.0))
    assert beyond.renorm_bn_gap(1.0, 0.0) < 1e-9
    assert beyond.renorm_bn_gap(1.5, 0.5) > 0.1


RENORM_MISTAKES = [
    ({"r": 0, "d": 1}, "r and d are swapped"),
    ({"r": 0}, "r = 0 is wrong: r is a ratio sigma_B / sigma, not a difference"),
    ({"d": 1}, "d = 1 is wrong: d is a shift (mu_B - mu) / sigma, not a ratio"),
    ({"r": 1.5}, "1.5 is r_max, the clip bound"),
    ({"d": 0.5}, "0.5 is d_max, the clip bound"),
    ({"r": 2}, "r = sigma_B / sigma with sigma_B = sigma gives 1"),
    ({"r": "one"}, "give r and d as numbers"),
    ({"r_max": 1.5}, "r_max = 1.5 lets r move away from 1"),
    ({"d_max": 0.5}, "d_max = 0.5 lets d move away from 0"),
    ({"r_max": 0}, "r_max = 0 is impossible: r is clipped to [1/r_max, r_max], so r_max >= 1"),
    ({"d_max": -1}, "d_max = -1 is impossible"),
    ({"r_max": math.inf, "d_max": math.inf}, "without clipping BR's training output is the "
                                            "inference formula"),
]


@pytest.mark.parametrize("wrong, feedback", RENORM_MISTAKES, ids=[str(w) for w, _ in RENORM_MISTAKES])
def test_renorm_mistakes_get_specific_feedback(wrong, feedback, capsys):
    _check(capsys, beyond.check_renorm_values({**RIGHT, **wrong}), feedback)


def test_renorm_placeholders_and_the_right_answer(capsys):
    _check(capsys, beyond.check_renorm_values({k: ... for k in RIGHT}), "not answered yet")
    _check(capsys, beyond.check_renorm_values({"r": 1, "d": 0}), "still missing ['r_max', 'd_max']")
    _check(capsys, beyond.check_renorm_values({"R": 1.0, "D": 0, "R_MAX": 1, "D_MAX": 0.0}),
           "its training output equals nn.BatchNorm2d's", passed=True)


# ---- exercise 2: values per statistic ---------------------------------------------------------
COUNT_MISTAKES = [
    ({"syncbn": 98, "per_device_bn": 1568}, "swapped: SyncBN gathers the statistics of all devices"),
    ({"syncbn": 98}, "syncbn: 98 is wrong, that counts one device's positions"),
    ({"per_device_bn": 49}, "per_device_bn: 49 is wrong, that counts one image's positions, "
                            "H x W: that is Instance Norm's set"),
    ({"syncbn": 32}, "you forgot the H x W positions of each image"),
    ({"per_device_bn": 2}, "one device's images only: you forgot the H x W positions"),
    ({"syncbn": 16 * 2 * 128 * 49}, "all channels of the global batch: BN statistics are per channel"),
    ({"per_device_bn": 2 * 128 * 49}, "all channels of one device: BN statistics are per channel"),
    ({"syncbn": 16 * 49}, "one image per device: each device holds n images"),
    ({"syncbn": 1000}, "it is none of the usual products"),
    ({"syncbn": 1568.0}, "give a whole number"),
]


@pytest.mark.parametrize("wrong, feedback", COUNT_MISTAKES, ids=[str(w) for w, _ in COUNT_MISTAKES])
def test_count_mistakes_get_specific_feedback(wrong, feedback, capsys):
    answer = {"syncbn": 16 * 2 * 49, "per_device_bn": 2 * 49, **wrong}
    _check(capsys, beyond.check_syncbn_count(answer), feedback)


def test_count_placeholders_and_the_right_answer(capsys):
    _check(capsys, beyond.check_syncbn_count({"syncbn": ..., "per_device_bn": ...}),
           "not answered yet")
    _check(capsys, beyond.check_syncbn_count({"syncbn": 1568}), "still missing ['per_device_bn']")
    _check(capsys, beyond.check_syncbn_count({"syncbn": 1568, "per_device_bn": 98}),
           "SyncBN: 16 x 2 x 49 = 1568 values per channel; per-device BN: 2 x 49 = 98 (16x fewer)",
           passed=True)


def test_count_follows_the_setup(capsys):
    setup = {"devices": 4, "per_device": 8, "C": 16, "H": 3, "W": 3}
    _check(capsys, beyond.check_syncbn_count({"syncbn": 288, "per_device_bn": 72}, setup),
           "SyncBN: 4 x 8 x 9 = 288", passed=True)


# ---- predict, then reveal ------------------------------------------------------------------
def rec(norm: str, seed: int, err: float, batch: int = 2, renorm: str = "fixed",
        commit: str = "abc1234", train_mode: float | None = None) -> dict:
    return {"config": {"norm": norm, "groups": 32, "channels_per_group": None,
                       "batch_size": batch, "seed": seed, "epochs": 6, "devices": 1,
                       "batching": "shuffled", "renorm": renorm},
            "test_error": err, "train_error": err - 3, "diverged": False,
            "did_not_train": False, "git_commit": commit, "test_error_train_mode": train_mode,
            "history": {"epoch": [1], "train_loss": [0.5], "train_error": [err],
                        "test_error": [err], "bn_var_ratio": [1.01], "bn_mean_gap": [0.05]}}


def _small(gap: float = 0.6) -> list[dict]:
    out = []
    for seed, (base, noise) in enumerate(((13.4, 0.05), (13.9, -0.05), (13.8, 0.0))):
        out += [rec("bn", seed, base), rec("br", seed, base + gap + noise, renorm="warmup"),
                rec("br", seed, base + 0.5, renorm="fixed"), rec("bn", seed, base - 0.3, batch=4)]
    return out


def test_br_vs_bn_pairs_seeds_and_picks_the_recipe():
    assert beyond.br_vs_bn(_small(0.6)).mean == pytest.approx(0.6)
    assert beyond.br_vs_bn(_small(0.6), renorm="fixed").mean == pytest.approx(0.5)
    assert beyond.br_vs_bn(_small(0.6), batch_size=4).n == 0


REVEALS = [
    (None, False, "no prediction recorded yet"),
    ("small", False, "predict a number of points"),
    (0.5, True, "within 0.3 points of the measurement"),
    (-1.0, False, "you followed the GN paper's ImageNet gap at batch 4 (-1.0)"),
    (-0.4, False, "you expected BR to be better than BN; it came out worse"),
    (2.0, False, "right direction, 1.4 points above the measurement"),
]


@pytest.mark.parametrize("prediction, passed, feedback", REVEALS, ids=[str(p) for p, *_ in REVEALS])
def test_reveal_br_vs_bn(prediction, passed, feedback, capsys):
    result = beyond.reveal_br_vs_bn(prediction, _small(0.6))
    _check(capsys, result, feedback, passed)
    if prediction is None:
        assert "+0.60" not in result.message


def test_reveal_without_runs_says_so(capsys):
    _check(capsys, beyond.reveal_br_vs_bn(0.1, [rec("bn", 0, 13.0)]), "no committed BR")


# ---- Batch Renorm's recipes side by side ----------------------------------------------------
def test_renorm_frame_and_comparisons():
    recs = _small(0.6)
    recs[1]["git_commit"] = "def5678"
    recs[1]["bn_layers"] = {"slice_mean_dev": [0.1, 0.2], "slice_var_ratio": [0.9, 1.0]}
    df = beyond.renorm_frame(recs)
    assert df["slice_mean_dev"].iloc[1] == pytest.approx(0.15)
    assert df["slice_var_ratio"].iloc[1] == pytest.approx(0.95)
    assert df["slice_mean_dev"].isna().sum() == len(recs) - 1
    assert set(df["method"]) == {"Batch Norm", beyond.RENORM_LABELS["warmup"],
                                 beyond.RENORM_LABELS["fixed"]}
    assert set(df["commit"]) == {"abc1234", "def5678"}
    assert df["var_ratio"].tolist() == pytest.approx([1.01] * len(recs))
    out = {(b, a, r): p for b, a, r, p in beyond.renorm_comparisons(df)}
    warm, fixed = beyond.RENORM_LABELS["warmup"], beyond.RENORM_LABELS["fixed"]
    assert out[(2, warm, "Batch Norm")].mean == pytest.approx(0.6)
    assert out[(2, fixed, "Batch Norm")].mean == pytest.approx(0.5)
    assert out[(2, warm, fixed)].mean == pytest.approx(0.1)
    assert not any(b == 4 for b, *_ in out)          # no BR at batch 4: nothing to compare


def test_reveal_gives_no_verdict_below_the_floor_between_commits(capsys):
    recs = _small(0.6)
    for r in recs:
        if r["config"]["norm"] == "br":
            r["git_commit"] = "def5678+dirty"
    result = beyond.reveal_br_vs_bn(0.5, recs, floor=0.77)
    assert "different commits" in result.message and "no verdict" in result.message
    assert "BR runs: def5678+dirty; BN runs: abc1234" in result.message
    capsys.readouterr()


def test_describe_renorm_and_dirty_runs_name_the_commits():
    recs = _small(0.6)
    for r in recs:
        if r["config"]["renorm"] == "warmup" and r["config"]["norm"] == "br":
            r["git_commit"] = "def5678+dirty"
    df = beyond.renorm_frame(recs)
    lines = beyond.describe_renorm(df, floor=0.77)
    warm, fixed = beyond.RENORM_LABELS["warmup"], beyond.RENORM_LABELS["fixed"]
    line = [x for x in lines if x.startswith(f"batch 2: {warm} [def5678+dirty] minus {fixed}")][0]
    assert line.endswith("no verdict")                  # |0.1| < floor, different commits
    same = [x for x in lines if f"{fixed} [abc1234] minus Batch Norm [abc1234]" in x][0]
    assert "different commits" not in same             # one clean commit: the plain verdict
    assert beyond.dirty_runs(df) == [f"{warm} at batch 2: 3 of 3 runs (seeds 0, 1, 2; def5678+dirty)"]
