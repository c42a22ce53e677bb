"""Notebook 06's checkers name each typical mistake; the reveal waits for a prediction; the
measurement of the extremes and the noise floor compute what they say."""
from __future__ import annotations

import math

import pytest
import torch

from gnlib import analysis
from gnlib.exercises import ablation
from gnlib.models import build_model, norm_layers
from gnlib.paper import PAPER


def _check(capsys, result, feedback: str, passed: bool = False) -> None:
    assert result.passed is passed and bool(result) is passed
    assert feedback in result.message, result.message
    assert capsys.readouterr().out.strip() == result.message


def rec(seed: int, err: float, norm: str = "gn", groups: int = 32, cpg: int | None = None,
        batch: int = 32, commit: str = "abc1234", did_not_train: bool = False) -> dict:
    """A minimal results record as the analysis layer reads it."""
    return {"config": {"norm": norm, "groups": groups, "channels_per_group": cpg,
                       "batch_size": batch, "seed": seed, "epochs": 6, "devices": 1,
                       "batching": "shuffled"},
            "test_error": err, "train_error": err - 3, "diverged": False,
            "did_not_train": did_not_train, "git_commit": commit,
            "history": {"epoch": [1], "train_loss": [0.5], "train_error": [err],
                        "test_error": [err]}}


# ---- exercise 1 ------------------------------------------------------------------------
GROUP_MISTAKES = [
    ((1, 8), "(a) G = 1 gives 1 group(s) of C/G = 64 channels: Layer Norm"),
    ((32, 8), "(a) G = 32 gives 32 group(s) of C/G = 2 channels"),
    ((48, 8), "(a) G = 48 does not divide C = 64"),
    ((128, 8), "(a) G = 128 is impossible: 1 <= G <= C = 64"),
    ((64.0, 8), "(a) give G as an integer"),
    ((64, 16), "(b) 16 is C/G, the channels per group that the row fixes"),
    ((64, 4), "(b) G = 4 is what the 64-channel layers use (64/16)"),
    ((64, 2048), "(b) you multiplied C by C/G; divide"),
    ((64, 32), "(b) G = 32 is the fixed-G default"),
    ((64, 2), "(b) G = 2 would give C/G = 64 channels per group, not 16"),
]


@pytest.mark.parametrize("answer, feedback", GROUP_MISTAKES, ids=[str(a) for a, _ in GROUP_MISTAKES])
def test_group_counts_mistakes_get_specific_feedback(answer, feedback, capsys):
    _check(capsys, ablation.check_group_counts(*answer), feedback)


def test_group_counts_placeholders_and_the_right_answer(capsys):
    _check(capsys, ablation.check_group_counts(..., ...), "not answered yet")
    _check(capsys, ablation.check_group_counts(64, ...), "still missing ['g_wide']")
    right = [m.num_groups for m in norm_layers(build_model("gn", channels_per_group=16))
             if m.num_channels == 128][0]
    _check(capsys, ablation.check_group_counts(64, right), "G = 8", passed=True)


def test_both_wrong_answers_are_reported(capsys):
    result = ablation.check_group_counts(1, 16)
    assert "(a)" in result.message and "(b)" in result.message
    capsys.readouterr()


# ---- exercise 2 ------------------------------------------------------------------------
def test_worse_than_best_reads_table_3():
    assert ablation.worse_than_best(PAPER["groups"]) == {1: 1.2}
    assert ablation.worse_than_best(PAPER["channels_per_group"]) == {2: 1.4, 1: 4.2}
    assert ablation.worse_than_best({1: 10.0, 2: 10.5}, by=0.5) == {2: 0.5}


READING_MISTAKES = [
    ({"G": [1], "C/G": [1]}, "you left out C/G = 2: 25.6 % is 1.4 points above the best, C/G = 16"),
    ({"G": [], "C/G": [2, 1]}, "you left out G = 1: 25.3 % is 1.2 points above the best, G = 32"),
    ({"G": [1, 2], "C/G": [2, 1]}, "G = 2 (24.7 %) is only 0.6 points above the best, G = 32"),
    ({"G": [1, 32], "C/G": [2, 1]}, "G = 32 is the best, G = 32: 24.1 % itself"),
    ({"G": [1, 3], "C/G": [2, 1]}, "G = 3 is not in the table"),
    ({"G": [2, 1], "C/G": [1]}, "the rows are swapped"),
    ({"G": 1, "C/G": [2, 1]}, "G: give a list of settings (integers)"),
]


@pytest.mark.parametrize("answer, feedback", READING_MISTAKES,
                         ids=[str(a) for a, _ in READING_MISTAKES])
def test_paper_reading_mistakes_get_specific_feedback(answer, feedback, capsys):
    _check(capsys, ablation.check_paper_reading(answer), feedback)


def test_paper_reading_placeholders_and_the_right_answer(capsys):
    _check(capsys, ablation.check_paper_reading({"G": ..., "C/G": ...}), "not answered yet")
    _check(capsys, ablation.check_paper_reading({"G": [1]}), "still missing ['C/G']")
    _check(capsys, ablation.check_paper_reading({"G": [1], "c/g": (1, 2)}),
           "G = 1 (+1.2); C/G = 2 (+1.4); C/G = 1 (+4.2)", passed=True)


# ---- predict, then reveal ---------------------------------------------------------------
def _groups_records(gap: float = -2.0) -> list[dict]:
    """C/G = 16 at 16, 16.5, 17 % and C/G = 1 ``gap`` points away, seed by seed (+- noise)."""
    out = []
    for seed, (base, noise) in enumerate(((16.0, 0.1), (16.5, -0.1), (17.0, 0.0))):
        out.append(rec(seed, base, cpg=16))
        out.append(rec(seed, base + gap + noise, cpg=1))
    return out


def test_instance_gap_is_seed_paired():
    p = ablation.instance_gap(_groups_records(-2.0))
    assert p.n == 3 and p.mean == pytest.approx(-2.0) and p.significant


REVEALS = [
    (None, False, "no prediction recorded yet"),
    ("big", False, "predict a number of points"),
    (True, False, "predict a number of points"),
    (-2.2, True, "within 0.5 points of the measurement"),
    (4.2, False, "you followed the paper (+4.2 on ImageNet)"),
    (1.0, False, "you expected the IN-like end to be worse; here it came out better"),
    (-0.8, False, "right direction, but you were 1.2 points above the measurement"),
]


@pytest.mark.parametrize("prediction, passed, feedback", REVEALS, ids=[str(p) for p, *_ in REVEALS])
def test_reveal_instance_gap(prediction, passed, feedback, capsys):
    result = ablation.reveal_instance_gap(prediction, _groups_records(-2.0))
    _check(capsys, result, feedback, passed)
    if prediction is None:
        assert "-2.00" not in result.message       # nothing revealed before a prediction


def test_reveal_says_so_when_there_are_no_runs(capsys):
    _check(capsys, ablation.reveal_instance_gap(1.0, []), "no committed runs")


def test_reveal_labels_its_verdict_as_revealed(capsys):
    result = ablation.reveal_instance_gap(4.2, _groups_records(-2.0))
    assert "NOT QUITE (revealed)" in result.message and "-2.00 ± " in result.message
    capsys.readouterr()


# ---- the measurement of the extremes ------------------------------------------------------
def test_norm_inputs_catches_every_norm_layer_and_restores_the_mode():
    torch.manual_seed(0)
    model = build_model("gn", widths=(8, 16), groups=4)
    model.train()
    x = torch.randn(5, 1, 28, 28)
    acts = ablation.norm_inputs(model, x, batch=2)
    layers = norm_layers(model)
    assert len(acts) == len(layers)
    assert all(a.shape[:2] == (5, m.num_channels) for a, m in zip(acts, layers))
    assert model.training


def _activations(n: int, seed: int):
    """8 channels at 4 x 4: channel c has scale 2**(c % 4); the class (0 or 1) shifts the
    mean of channel 0 only, by 1.5 of its own std."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    scale = (2.0 ** (torch.arange(8) % 4)).view(1, 8, 1, 1)
    a = torch.randn(n, 8, 4, 4, generator=gen) * scale
    a[:, 0] += 1.5 * y.view(-1, 1, 1).float()
    return a, y


def test_group_costs_measures_mismatch_and_removed_information():
    (a, ya), (b, yb) = _activations(400, 0), _activations(400, 1)
    costs = ablation.group_costs([a], ya, [b], yb, channels_per_group=(8, 4, 2, 1))
    by = costs.set_index("C/G")
    assert list(by.index) == [8, 4, 2, 1]
    assert by.loc[1, "scale_mismatch"] == pytest.approx(1.0)
    assert by.loc[8, "scale_mismatch"] > 1.5                  # scales 1..8 share one std
    assert (by["values"] == by.index * 16).all()
    assert by.loc[1, "class_accuracy"] > 70                   # channel 0's own mean tells the class
    assert by.loc[8, "class_accuracy"] < by.loc[1, "class_accuracy"]
    assert set(costs.columns) >= {"layer", "C", "H x W", "G", "values", "scale_mismatch",
                                  "class_accuracy"}


def test_group_costs_skips_settings_that_do_not_divide_c():
    (a, ya), (b, yb) = _activations(20, 0), _activations(20, 1)
    costs = ablation.group_costs([a], ya, [b], yb, channels_per_group=(16, 3, 2))
    assert list(costs["C/G"]) == [2]


# ---- the noise floor ----------------------------------------------------------------------
def test_twin_runs_pairs_the_same_model_across_files():
    groups = [rec(s, 14.0 + s, cpg=1, commit="new") for s in range(3)]
    groups += [rec(s, 17.0, groups=1, commit="new") for s in range(3)]
    groups += [rec(0, 15.0, groups=32, commit="new")]
    batch = [rec(s, 13.5 + s, norm="in", commit="old") for s in range(3)]
    batch += [rec(s, 17.2, norm="ln", commit="old") for s in range(2)]
    batch += [rec(0, 15.0, norm="gn", commit="old"), rec(0, 20.0, norm="in", batch=2)]
    batch += [rec(1, 30.0, norm="gn", did_not_train=True)]
    t = analysis.twin_runs(groups, batch)
    assert list(t["twins"].value_counts().sort_index()) == [3, 2, 1]
    ins = t[t["twins"] == "GN C/G = 1 = IN"]
    assert ins["difference"].tolist() == pytest.approx([0.5, 0.5, 0.5])
    assert set(ins["commit (groups)"]) == {"new"} and set(ins["commit (batch-size)"]) == {"old"}
    p = analysis.twin_paired(t, "GN G = 1 = LN")
    assert p.n == 2 and p.mean == pytest.approx(-0.2) and math.isnan(p.p)


def test_twin_paired_flags_a_systematic_shift():
    groups = [rec(s, 14.0 + 0.1 * s, cpg=1) for s in range(3)]
    batch = [rec(s, 13.45 + 0.1 * s + 0.01 * s * s, norm="in") for s in range(3)]
    p = analysis.twin_paired(analysis.twin_runs(groups, batch), "GN C/G = 1 = IN")
    assert p.n == 3 and p.significant and p.mean > 0


# ---- the trained GN network of section 5 -----------------------------------------------------
def test_committed_gn_model_loads_and_names_its_run():
    model = ablation.load_trained_gn()
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert {m.num_groups for m in norm_layers(model)} == {ablation.GN32_RUN["groups"]}
    record = ablation.gn32_record()
    c = record["config"]
    assert (c["norm"], c["groups"], c["channels_per_group"], c["seed"], c["devices"]) == (
        "gn", 32, None, 0, 1)
    assert record["preset"] == "full" and record["git_commit"] and record["test_error"] < 20
    with torch.no_grad():
        out = model(torch.zeros(2, 1, 28, 28))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_gn32_record_refuses_a_file_without_that_run(tmp_path):
    path = tmp_path / "figure1.jsonl"
    path.write_text("")
    with pytest.raises(LookupError, match="found 0"):
        ablation.gn32_record(path)
