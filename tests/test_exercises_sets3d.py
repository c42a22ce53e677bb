"""Notebook 02's checkers name each typical mistake; the model solutions pass; the reveal waits
for a prediction; the typical wrong sets are all different from S_i."""
from __future__ import annotations

import pytest
import torch

from gnlib import exercises
from gnlib.exercises import model_solutions as ms
from gnlib.exercises.mistaken_sets import describe_difference, mistaken_sets
from gnlib.exercises.sets3d import gn_equals
from gnlib.sets import SET_KINDS, example_feature_map, normalization_set, statistics_check

C = exercises.LIMITS_C


def _check(capsys, result, feedback: str, passed: bool = False) -> None:
    assert result.passed is passed and bool(result) is passed
    assert feedback in result.message, result.message
    assert capsys.readouterr().out.strip() == result.message


# ---- exercise 1: the mask of S_i ----------------------------------------------------------
def _gn_only(make_gn_mask):
    """A student's mask function that is right except for GN, where it uses ``make_gn_mask``."""
    def fn(kind, shape, index, groups):
        if kind != "gn":
            return ms.normalization_set_by_hand(kind, shape, index, groups)
        mask = torch.zeros(shape, dtype=torch.bool)
        make_gn_mask(mask, shape, index, groups)
        return mask
    return fn


def _set(mask, where):
    mask[where] = True


MASK_MISTAKES = [
    ("bn_set", lambda kind, shape, index, groups: normalization_set("bn", shape, index),
     "your set includes other samples: channel i_C in all N samples is Batch Norm's set"),
    ("ln_set", lambda kind, shape, index, groups: normalization_set("ln", shape, index),
     "your set is the whole sample i_N, all C channels: that is Layer Norm's set"),
    ("in_set", lambda kind, shape, index, groups: normalization_set("in", shape, index),
     "your set is a single channel i_C of sample i_N: that is Instance Norm's set"),
    ("interleaved", _gn_only(lambda m, s, i, g: _set(m, (i[0], slice(i[1] % g, None, g)))),
     "your group takes every G-th channel (c % G == i_C % G), not C/G consecutive ones"),
    ("groups_of_G", _gn_only(lambda m, s, i, g: _set(m, (i[0], slice(i[1] // g * g, i[1] // g * g + g)))),
     "your groups hold G channels each (c // G == i_C // G); GN has G groups of C/G"),
    ("across_batch", _gn_only(lambda m, s, i, g: _set(m, (slice(None), slice(0, s[1] // g)))),
     "your set includes other samples: the group's channels in all N samples"),
    ("one_position", _gn_only(lambda m, s, i, g: _set(m, (i[0], slice(0, s[1] // g), i[2]))),
     "your set holds only the H·W position of the pixel"),
    ("whole_tensor", lambda kind, shape, index, groups: torch.ones(shape, dtype=torch.bool),
     "your set is the whole tensor: all samples and all channels"),
    ("one_extra_voxel", _gn_only(lambda m, s, i, g: (_set(m, (i[0], slice(0, s[1] // g))),
                                                     _set(m, (0, 7, 0)))),
     "your mask is not S_i: it includes 1 value(s) in sample(s) [0], channel(s) [7]"),
    ("missing_pixel", _gn_only(lambda m, s, i, g: (_set(m, (i[0], slice(0, s[1] // g))),
                                                   m.__setitem__(tuple(i), False))),
     "it does not contain the pixel i itself; it misses 1 value(s) in sample(s) [1], channel(s) [2]"),
]


@pytest.mark.parametrize("name, fn, feedback", MASK_MISTAKES, ids=[m[0] for m in MASK_MISTAKES])
def test_mask_mistake_gets_specific_feedback(name, fn, feedback, capsys):
    result = exercises.check_set_mask(fn)
    _check(capsys, result, feedback)
    assert "(kind='gn', shape (4, 8, 6), pixel i=(1, 2, 3), G=2)" in result.message


@pytest.mark.parametrize("fn, feedback", [
    (lambda *a: (_ for _ in ()).throw(NotImplementedError),
     "Exercise 1 (the mask of S_i): not implemented yet"),
    (lambda *a: None, "not implemented yet"),
    (lambda kind, shape, index, groups: torch.zeros(shape[:2], dtype=torch.bool),
     "wrong shape: your mask has shape (4, 8), expected (4, 8, 6)"),
    (lambda kind, shape, index, groups: torch.full(shape, 2.0), "return True/False (or 0/1)"),
    (lambda kind, shape, index, groups: object(), "return a boolean tensor, got object"),
    (lambda kind, shape, index, groups: 1 / 0, "your function raised ZeroDivisionError"),
])
def test_mask_placeholder_crash_and_wrong_type(fn, feedback, capsys):
    _check(capsys, exercises.check_set_mask(fn), feedback)


def test_mask_model_solution_passes_and_numpy_or_01_masks_are_accepted(capsys):
    _check(capsys, exercises.check_set_mask(ms.normalization_set_by_hand), "6 sets", True)
    as_numpy = lambda *a: ms.normalization_set_by_hand(*a).numpy()  # noqa: E731
    as_ints = lambda *a: ms.normalization_set_by_hand(*a).int()  # noqa: E731
    assert exercises.check_set_mask(as_numpy).passed and exercises.check_set_mask(as_ints).passed


@pytest.mark.parametrize("kind, shape, index, groups", exercises.MASK_CASES)
def test_model_mask_is_gnlibs_and_every_mistaken_set_differs(kind, shape, index, groups):
    correct = normalization_set(kind, shape, index, groups)
    assert torch.equal(ms.normalization_set_by_hand(kind, shape, index, groups), correct)
    masks = [m for m, _ in mistaken_sets(kind, shape, index, groups)]
    assert masks and all(not torch.equal(m, correct) for m in masks)
    assert all(not torch.equal(a, b) for j, a in enumerate(masks) for b in masks[j + 1:])


def test_describe_difference_names_samples_and_channels():
    expected = normalization_set("in", (2, 3, 4), (1, 2, 0))
    got = expected.clone()
    got[0, 1, :2] = True
    assert describe_difference(got, expected, (1, 2, 0)) == \
        "it includes 2 value(s) in sample(s) [0], channel(s) [1]"


# ---- exercise 2: which G gives LN and IN ------------------------------------------------
@pytest.mark.parametrize("answer, feedback", [
    ({"ln": C, "in": 1}, "LN and IN are swapped: G = 1 puts all 12 channels in one group (LN)"),
    ({"ln": 5, "in": C}, "LN: G = 5 does not divide C = 12; GN needs C/G whole channels per group"),
    ({"ln": 6, "in": C}, "LN: G = 6 gives 6 group(s) of C/G = 2 channel(s). Layer Norm needs all "
                         "C channels of the sample in one group"),
    ({"ln": 1, "in": 1}, "IN: G = 1 gives 1 group(s) of C/G = 12 channel(s): that is Layer Norm. "
                         "Instance Norm needs one channel per group"),
    ({"ln": C, "in": C}, "LN: G = 12 gives 12 group(s) of C/G = 1 channel(s): that is Instance Norm"),
    ({"ln": 1, "in": 6}, "IN: G = 6 gives 6 group(s) of C/G = 2 channel(s)"),
    ({"ln": 1, "in": 12.0}, "IN: give G as an integer"),
    ({"ln": 0, "in": C}, "LN: G = 0 does not divide C = 12"),
    ({"ln": ..., "in": ...}, "Exercise 2 (GN between LN and IN): not answered yet"),
    ({"ln": 1, "in": ...}, "answer both: still missing ['in']"),
    ({"ln": 1}, "answer both: still missing ['in']"),
])
def test_gn_limits_feedback(answer, feedback, capsys):
    _check(capsys, exercises.check_gn_limits(answer), feedback)


def test_gn_limits_model_solution_passes(capsys):
    _check(capsys, exercises.check_gn_limits(ms.gn_limits(C)), "GN(G=1) == LN and GN(G=12) == IN",
           True)
    assert exercises.check_gn_limits({"LN": 1, "IN": 12}).passed


def test_gn_equals_is_the_truth_of_the_sets():
    assert [g for g in (1, 2, 3, 4, 6, 12) if gn_equals("ln", g)] == [1]
    assert [g for g in (1, 2, 3, 4, 6, 12) if gn_equals("in", g)] == [12]
    assert gn_equals("in", 8, C=8) and not gn_equals("ln", 8, C=8)


# ---- predict, then reveal: what a larger batch changes -----------------------------------
def _stats(N):
    x = example_feature_map(N, 8, 6, seed=0)
    return {k: (s.mean_mask, s.std_mask) for k in SET_KINDS
            for s in [statistics_check(x, k, (1, 2, 3), groups=2)]}


BEFORE, AFTER = _stats(4), _stats(8)


def test_only_bn_statistics_change_when_the_batch_grows():
    assert [k for k in SET_KINDS if BEFORE[k] != AFTER[k]] == ["bn"]


@pytest.mark.parametrize("prediction", [None, ...])
def test_batch_growth_refuses_before_a_prediction(prediction, capsys):
    result = exercises.reveal_batch_growth(prediction, BEFORE, AFTER)
    _check(capsys, result, "no prediction recorded yet")
    assert "changed" not in result.message


@pytest.mark.parametrize("prediction, feedback, passed", [
    ({"bn"}, "RIGHT\n  you predicted ['bn']; changed: ['bn']", True),
    ("BN", "you predicted ['bn']", True),
    (["bn"], "changed: ['bn']", True),
    ({"bn", "gn"}, "GN: you said it changes, but Group Norm's S_i stays inside sample i_N", False),
    (set(), "BN: you said it stays, but Batch Norm's S_i spans every sample of the batch", False),
    ({"ln", "in"}, "IN: you said it changes, but Instance Norm's S_i stays inside sample i_N", False),
    ({"bn", "gn2"}, "unknown norm name(s) ['gn2']", False),
    (3, "predict a set of norm names", False),
])
def test_batch_growth_reveal_explains_each_wrong_norm(prediction, feedback, passed, capsys):
    _check(capsys, exercises.reveal_batch_growth(prediction, BEFORE, AFTER), feedback, passed)


def test_batch_growth_lists_every_mistake():
    message = exercises.reveal_batch_growth({"ln", "in"}, BEFORE, AFTER).message
    assert [line.split(":")[0].strip() for line in message.splitlines()[2:]] == ["BN", "IN", "LN"]
    assert "NOT QUITE (revealed)" in message

