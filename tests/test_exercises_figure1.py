"""Notebook 05's checkers name the mistake: wrong answers in, specific feedback out."""
import math

from gnlib.analysis import paired_difference, runs_frame
from gnlib.exercises.figure1 import (PAIRED_CASES, check_paired_difference,
                                     check_values_per_statistic, reveal_bn_penalty,
                                     solution_paired_difference)


def test_values_per_statistic(capsys):
    args = dict(images=2, height=4, width=4, channels=128)
    assert check_values_per_statistic(32, **args)
    cases = {2: "images only", 16: "one image's positions", 32 * 128: "multiplied by the channels",
             512: "whole batch of 32", 7: "expected images x H x W"}
    for wrong, says in cases.items():
        res = check_values_per_statistic(wrong, **args)
        assert not res and says in res.message, (wrong, res.message)
    assert "not answered yet" in check_values_per_statistic(..., **args).message
    assert "whole number" in check_values_per_statistic(32.0, **args).message


def test_paired_difference_solution_matches_the_library():
    for a, b in PAIRED_CASES:
        recs = [{"config": {"norm": n, "groups": 32, "channels_per_group": None, "batch_size": 32,
                            "devices": 1, "seed": k, "epochs": 1},
                 "test_error": e, "train_error": e, "diverged": False, "did_not_train": False}
                for n, errs in (("a", a), ("b", b)) for k, e in enumerate(errs)]
        df = runs_frame(recs)
        p = paired_difference(df, lambda d: d["norm"] == "a", lambda d: d["norm"] == "b")
        mean, se = solution_paired_difference(a, b)
        assert math.isclose(mean, p.mean) and math.isclose(se, p.se)
    assert check_paired_difference(solution_paired_difference)


def test_paired_difference_names_the_mistake():
    def unpaired(a, b):
        n = len(a)
        va = sum((x - sum(a) / n) ** 2 for x in a) / (n - 1)
        vb = sum((x - sum(b) / n) ** 2 for x in b) / (n - 1)
        return sum(a) / n - sum(b) / n, math.sqrt(va / n + vb / n)

    def sd_not_se(a, b):
        m, se = solution_paired_difference(a, b)
        return m, se * math.sqrt(len(a))

    def flipped(a, b):
        m, se = solution_paired_difference(a, b)
        return -m, se

    def todo(a, b):
        raise NotImplementedError

    for fn, says in ((unpaired, "unpaired standard error"), (sd_not_se, "divide by sqrt(n)"),
                     (flipped, "sign is flipped"), (todo, "not implemented yet"),
                     (lambda a, b: 1.0, "return two numbers")):
        res = check_paired_difference(fn)
        assert not res and says in res.message, (fn, res.message)


def test_reveal_needs_a_prediction_and_says_how_close():
    assert "no prediction recorded" in reveal_bn_penalty(None, 0.7, 0.1, 3, 11.1).message
    assert reveal_bn_penalty(0.6, 0.7, 0.1, 3, 11.1)
    far = reveal_bn_penalty(10.0, 0.7, 0.1, 3, 11.1)
    assert not far and "paper's" in far.message
    assert "gain" in reveal_bn_penalty(-1.0, 0.7, 0.1, 3, 11.1).message
