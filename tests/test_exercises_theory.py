"""Notebook 01's checkers name each typical mistake; the model solutions pass; the reveal waits
for a prediction."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from gnlib import exercises
from gnlib.exercises import model_solutions as ms
from gnlib.exercises.theory import size_formulas

N, C, H, W = exercises.SIZE_SHAPE
G = exercises.SIZE_GROUPS
HW = H * W
RIGHT = ms.set_sizes(exercises.SIZE_SHAPE, G)


def _check(capsys, result, feedback: str, passed: bool = False) -> None:
    assert result.passed is passed and bool(result) is passed
    assert feedback in result.message, result.message
    assert capsys.readouterr().out.strip() == result.message


# ---- exercise 1: |S_i| ----------------------------------------------------------------
def test_size_formulas_all_differ_so_a_wrong_number_names_one():
    values = list(size_formulas(exercises.SIZE_SHAPE, G).values())
    assert len(values) == len(set(values))


SIZE_MISTAKES = [
    ({"bn": N}, "BN: 8 is wrong, you computed N: you forgot the H·W positions"),
    ({"ln": C}, "LN: 64 is wrong, you computed C: you forgot the H·W positions"),
    ({"gn": C // G}, "you computed C/G: you forgot the H·W positions"),
    ({"gn": G * HW}, "you put G channels in a group; GN has G groups of C/G channels"),
    ({"in": N * HW}, "IN: 1568 is wrong, that is |S_i| of Batch Norm (N·H·W)"),
    ({"gn": C * HW}, "that is |S_i| of Layer Norm (C·H·W)"),
    ({"bn": HW}, "that is |S_i| of Instance Norm (H·W)"),
    ({"ln": N * C * HW}, "you computed N·C·H·W: that includes other samples; LN stays in one"),
    ({"gn": N * (C // G) * HW}, "you computed N·(C/G)·H·W: that includes other samples"),
    ({"bn": 12345}, "it is none of the usual products of N, C, G, H and W"),
]


@pytest.mark.parametrize("wrong, feedback", SIZE_MISTAKES, ids=[str(w) for w, _ in SIZE_MISTAKES])
def test_set_size_mistake_gets_specific_feedback(wrong, feedback, capsys):
    _check(capsys, exercises.check_set_sizes({**RIGHT, **wrong}), feedback)


def test_set_sizes_lists_every_wrong_norm(capsys):
    result = exercises.check_set_sizes({"bn": N, "ln": C, "in": 1, "gn": G * HW})
    assert [line.split(":")[0].strip() for line in result.message.splitlines()[1:]] == \
        ["BN", "LN", "IN", "GN"]


@pytest.mark.parametrize("answer, feedback", [
    ({"bn": ..., "ln": ..., "in": ..., "gn": ...}, "Exercise 1 (set sizes): not answered yet"),
    (..., "not answered yet"),
    ({"bn": 1568, "ln": 12544, "in": 196, "gn": ...}, "still missing ['gn']"),
    ({"bn": 1568, "ln": 12544, "in": 196}, "still missing ['gn']"),
    ({"bn": 1568.0, "ln": 12544, "in": 196, "gn": 392}, "give whole numbers"),
])
def test_set_sizes_placeholder_and_malformed_answers(answer, feedback, capsys):
    _check(capsys, exercises.check_set_sizes(answer), feedback)


def test_set_sizes_model_solution_passes_and_keys_are_case_insensitive(capsys):
    _check(capsys, exercises.check_set_sizes(RIGHT), "BN 1568, LN 12544, IN 196, GN 392", True)
    upper = {k.upper(): v for k, v in RIGHT.items()}
    assert exercises.check_set_sizes(upper).passed


# ---- exercise 2: (m, mu, var) of one pixel's set ---------------------------------------
def _stats_over(kind_of_set: str, channels=None, samples="own", spatial=False, unbiased=False,
                std=False, m_fn=None):
    """A student's ``pixel_statistics`` that takes a (possibly wrong) set."""
    def fn(x, kind, index, groups):
        if kind != "gn" and kind_of_set == "gn":  # only GN is made wrong, the rest is right
            return ms.pixel_statistics(x, kind, index, groups)
        n = slice(None) if samples == "all" else slice(index[0], index[0] + 1)
        if channels is None:
            c = slice(None) if kind_of_set == "ln" else slice(index[1], index[1] + 1)
            if kind_of_set == "bn":
                n = slice(None)
        else:
            c = channels(x.shape[1], index[1], groups)
        values = x[n, c]
        if spatial:
            values = values[..., index[2], index[3]]
        m = values.numel()
        mu = values.mean()
        var = ((values - mu) ** 2).sum() / (m - 1 if unbiased else m)
        return (m_fn(m) if m_fn else m), float(mu), float(var.sqrt() if std else var)
    return fn


def _group(C, i_C, groups):
    per = C // groups
    return slice(i_C // per * per, i_C // per * per + per)


def _interleaved(C, i_C, groups):
    return torch.arange(C) % groups == i_C % groups


def _groups_of_g(C, i_C, groups):
    return torch.arange(C) // groups == i_C // groups


PIXEL_MISTAKES = [
    ("unbiased", _stats_over("gn", _group, unbiased=True),
     "you divided by m - 1 (the unbiased estimator); Eq. (2) divides by m = |S_i|"),
    ("std", _stats_over("gn", _group, std=True), "you returned sigma_i, the standard deviation"),
    ("m_channels", _stats_over("gn", _group, m_fn=lambda m: m // 4),
     "m = 2 counts channels, not values: each brings its 4 H·W positions"),
    ("m_wrong", _stats_over("gn", _group, m_fn=lambda m: m + 1),
     "mu_i is right but m is not: |S_i| = 8 values, you returned 9"),
    ("bn_set", lambda x, kind, index, groups: ms.pixel_statistics(x, "bn", index, groups),
     "your set includes other samples: channel i_C in all N samples is Batch Norm's set"),
    ("ln_set", lambda x, kind, index, groups: ms.pixel_statistics(x, "ln", index, groups),
     "your set is the whole sample i_N, all C channels: that is Layer Norm's set"),
    ("in_set", lambda x, kind, index, groups: ms.pixel_statistics(x, "in", index, groups),
     "your set is a single channel i_C of sample i_N: that is Instance Norm's set"),
    ("interleaved", _stats_over("gn", _interleaved), "your group takes every G-th channel"),
    ("groups_of_G", _stats_over("gn", _groups_of_g), "your groups hold G channels each"),
    ("across_batch", _stats_over("gn", _group, samples="all"),
     "your set includes other samples: the group's channels in all N samples"),
    ("across_batch_unbiased", _stats_over("gn", _group, samples="all", unbiased=True),
     "the group's channels in all N samples. GN never mixes samples: keep k_N = i_N. GN's S_i"),
    ("one_position", _stats_over("gn", _group, spatial=True),
     "your set holds only the H·W position of the pixel"),
    ("garbage", lambda x, kind, index, groups: (8, 123.0, 1.0), "mu_i is wrong: expected"),
]


@pytest.mark.parametrize("name, fn, feedback", PIXEL_MISTAKES, ids=[p[0] for p in PIXEL_MISTAKES])
def test_pixel_statistics_mistake_gets_specific_feedback(name, fn, feedback, capsys):
    result = exercises.check_pixel_statistics(fn)
    _check(capsys, result, feedback)
    assert "(kind='gn', pixel i=(1, 3, 1, 0), G=3, x of shape (3, 6, 2, 2))" in result.message


def test_unbiased_on_a_wrong_set_says_both():
    fn = _stats_over("gn", _group, samples="all", unbiased=True)
    assert "(and you divided by m - 1)" in exercises.check_pixel_statistics(fn).message


def test_pixel_statistics_wrong_for_one_kind_names_that_kind():
    def wrong_bn(x, kind, index, groups):
        if kind == "bn":
            return ms.pixel_statistics(x, "in", index, groups)
        return ms.pixel_statistics(x, kind, index, groups)
    message = exercises.check_pixel_statistics(wrong_bn).message
    assert "kind='bn'" in message and "Instance Norm's set" in message
    assert "BN's S_i = {k | k_C = i_C}" in message


@pytest.mark.parametrize("fn, feedback", [
    (lambda *a: (_ for _ in ()).throw(NotImplementedError), "not implemented yet"),
    (lambda *a: None, "not implemented yet"),
    (lambda x, kind, index, groups: x[index[5]], "your function raised IndexError"),
    (lambda *a: (1, 2), "return three numbers (m, mu, var)"),
    (lambda *a: "abc", "return three numbers (m, mu, var)"),
])
def test_pixel_statistics_placeholder_crash_and_wrong_type(fn, feedback, capsys):
    _check(capsys, exercises.check_pixel_statistics(fn), feedback)


def test_pixel_statistics_model_solution_passes_and_accepts_tensors(capsys):
    _check(capsys, exercises.check_pixel_statistics(ms.pixel_statistics), "5 pixels", True)

    def tensors(x, kind, index, groups):
        m, mu, var = ms.pixel_statistics(x, kind, index, groups)
        return torch.tensor(m), torch.tensor(mu), torch.tensor(var)
    assert exercises.check_pixel_statistics(tensors).passed


def test_pixel_statistics_model_solution_matches_gnlib_sets_on_every_pixel():
    from gnlib.sets import set_statistics
    x = torch.randn(2, 6, 2, 3, dtype=torch.float64)
    for index in itertools.product(range(2), range(6), range(2), range(3)):
        for kind in ("bn", "ln", "in", "gn"):
            m, mu, var = ms.pixel_statistics(x, kind, index, 3)
            mu_ref, sigma_ref, m_ref = set_statistics(x, kind, index, 3)
            assert m == m_ref and math.isclose(mu, mu_ref, abs_tol=1e-12)
            assert math.isclose(var, sigma_ref ** 2, rel_tol=1e-9)


def test_student_changing_x_in_place_does_not_break_the_checker():
    def in_place(x, kind, index, groups):
        out = ms.pixel_statistics(x, kind, index, groups)
        x.zero_()
        return out
    assert exercises.check_pixel_statistics(in_place).passed


# ---- predict, then reveal ------------------------------------------------------------
SIZES, BN = [2, 4, 8], [0.105, 0.101, 0.081]


@pytest.mark.parametrize("prediction", [None, ...])
def test_reveal_refuses_before_a_prediction(prediction, capsys):
    result = exercises.reveal_bn_batch_dependence(prediction, SIZES, BN)
    _check(capsys, result, "no prediction recorded yet")
    assert "0.101" not in result.message and "nothing is revealed" in result.message


@pytest.mark.parametrize("prediction, feedback, passed", [
    (0.1, "RIGHT\n  you predicted 0.100; measured at N = 4: 0.101 (N = 2: 0.105)", True),
    (0.09, "close: you saw that doubling N barely moves BN's deviation", True),
    (0.105 / math.sqrt(2), "you followed the 1/sqrt(N) law (0.074)", False),
    (0.0525, "you followed the 1/N law (0.052)", False),
    (0.2, "you predicted a larger deviation", False),
    (0.02, "you were 80% below it", False),
    (0.062, "you were 39% below it", False),
])
def test_reveal_names_the_law_behind_the_prediction(prediction, feedback, passed, capsys):
    result = exercises.reveal_bn_batch_dependence(prediction, SIZES, BN)
    _check(capsys, result, feedback, passed)
    if not passed:
        assert "NOT QUITE (revealed)" in result.message


@pytest.mark.parametrize("prediction", ["0.1", True, [0.1]])
def test_reveal_wants_a_number(prediction, capsys):
    _check(capsys, exercises.reveal_bn_batch_dependence(prediction, SIZES, BN), "predict a number")


def test_deviation_laws_figure_draws_measured_and_laws_relative_to_the_first():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gnlib.plots.theory import plot_bn_deviation_laws

    laws = {"1/sqrt(N)": [1 / math.sqrt(b) for b in SIZES]}
    fig = plot_bn_deviation_laws(SIZES, {"16 trials": BN}, laws)
    ax = fig.axes[0]
    measured, law = ax.lines
    assert measured.get_ydata()[0] == 1.0 and law.get_ydata()[0] == 1.0
    assert math.isclose(law.get_ydata()[1], 1 / math.sqrt(2))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == \
        ["BN, measured (16 trials)", "1/sqrt(N)"]
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    plt.close(fig)
