"""Notebook 04's checkers name the mistake: wrong answers in, specific feedback out."""
import math

import pytest

from gnlib.exercises.training import (BN_VS_GN_OPTIONS, RIGHT_OPTION, check_bn_vs_gn,
                                      check_scaled_lr, check_steps_per_epoch,
                                      reveal_norm_ranking)


def test_scaled_lr_right_and_each_slip_named():
    assert check_scaled_lr(0.025)
    assert check_scaled_lr(1 / 40)
    assert check_scaled_lr(0.2, batch_size=64)
    cases = {0.1: "kept eta_0", 0.4: "inverted the ratio", 0.8: "did not divide",
             0.1 / 32: "did not multiply", 0.25: "factor only",
             0.1 * math.sqrt(8 / 32): "square-root rule", 0.03: "expected eta_0 x B / 32"}
    for wrong, says in cases.items():
        res = check_scaled_lr(wrong)
        assert not res and says in res.message, (wrong, res.message)
    assert "not answered yet" in check_scaled_lr(...).message
    assert "give a number" in check_scaled_lr("0.025").message
    assert "give a number" in check_scaled_lr(True).message


def test_steps_per_epoch_right_and_each_slip_named():
    args = dict(images=60000, batch_size=32, devices=16, epochs=10)
    res = check_steps_per_epoch(1875, **args)
    assert res and "16 devices' slices" in res.message
    assert check_steps_per_epoch(1875.0, **args)
    cases = {30000: "images per device", 60000: "number of images", 60000 * 32: "multiplied",
             117: "not multiplied by them", 18750: "whole run", 1900: "expected images // batch"}
    for wrong, says in cases.items():
        res = check_steps_per_epoch(wrong, **args)
        assert not res and says in res.message, (wrong, res.message)
    res = check_steps_per_epoch(313, images=10000, batch_size=32)       # 312.5 -> 312
    assert not res and "partial batch is dropped" in res.message
    assert "not answered yet" in check_steps_per_epoch(None, images=60000).message
    assert "whole number" in check_steps_per_epoch(1875.5, images=60000).message


def test_bn_vs_gn_explains_every_wrong_option():
    assert check_bn_vs_gn(RIGHT_OPTION)
    assert check_bn_vs_gn(" (B) ")
    says = {"a": "same number of", "c": "statistics of the current batch",
            "d": "measured the same way", "e": "depends on the batch size only"}
    assert set(says) | {RIGHT_OPTION} == set(BN_VS_GN_OPTIONS)
    for option, text in says.items():
        res = check_bn_vs_gn(option)
        assert not res and text in res.message, (option, res.message)
    assert "BN 310,346, GN 310,346" in check_bn_vs_gn("a", {"bn": 310346, "gn": 310346}).message
    assert "not answered yet" in check_bn_vs_gn(...).message
    assert "one letter" in check_bn_vs_gn("f").message


def _records(errors: dict[str, list[float]], did_not_train=()):
    return [{"config": {"norm": n, "groups": 32, "channels_per_group": None, "batch_size": 32,
                        "devices": 1, "seed": k, "epochs": 10},
             "test_error": e, "train_error": e, "diverged": False,
             "did_not_train": (n, k) in did_not_train}
            for n, errs in errors.items() for k, e in enumerate(errs)]


# GN clearly above BN (paired differences 0.5, 0.6, 0.55); LN and IN close to each other
RUNS = _records({"bn": [9.0, 9.2, 8.9], "gn": [9.5, 9.8, 9.45], "ln": [10.0, 10.4, 9.9],
                 "in": [10.1, 10.2, 10.05]})


def test_ranking_is_revealed_only_after_a_prediction():
    res = reveal_norm_ranking(None, RUNS)
    assert not res and "no prediction recorded" in res.message and "BN 9" not in res.message
    assert "list of the four norms" in reveal_norm_ranking("bn < gn", RUNS).message
    assert "unknown norm" in reveal_norm_ranking(["bn", "gn", "ln", "xn"], RUNS).message
    msg = reveal_norm_ranking(["bn", "gn", "gn", "in"], RUNS).message
    assert "exactly once" in msg and "missing ['LN']" in msg and "twice ['GN']" in msg


def test_ranking_right_and_swaps_judged_by_the_paired_test():
    res = reveal_norm_ranking(["BN", "gn", "ln", "in"], RUNS)
    assert res and "matches the measured means" in res.message
    assert "the paper's ImageNet ranking" in res.message
    res = reveal_norm_ranking(["gn", "bn", "ln", "in"], RUNS)
    assert not res and "you put GN before BN: the runs contradict it" in res.message
    res = reveal_norm_ranking(["bn", "gn", "in", "ln"], RUNS)
    assert not res and "you put IN before LN: measured the other way round" in res.message
    assert "not established by these seeds" in res.message


def test_ranking_with_a_subset_and_left_out_runs():
    few = _records({"bn": [9.0], "gn": [9.3]}, did_not_train={("gn", 0)})
    res = reveal_norm_ranking(["bn", "gn", "ln", "in"], few)
    assert not res and "nothing to rank yet" in res.message
    assert "no usable runs yet: LN, IN, GN" in res.message and "left out" in res.message
    few = _records({"bn": [9.0], "gn": [9.3], "in": [8.5]})
    res = reveal_norm_ranking(["bn", "gn", "ln", "in"], few)
    assert not res and "no usable runs yet: LN" in res.message and "(mean over 1 seed)" in res.message
    assert "but one seed pair only, no test" in res.message
    assert reveal_norm_ranking(["in", "ln", "bn", "gn"], few)
    assert "nothing to reveal" in reveal_norm_ranking(["bn", "gn", "ln", "in"], []).message


@pytest.mark.parametrize("prediction", [["in", "ln", "gn", "bn"], ("ln", "in", "bn", "gn")])
def test_ranking_message_lists_measured_means(prediction):
    msg = reveal_norm_ranking(prediction, RUNS).message
    assert "measured: BN 9.03 % < GN 9.58 % < LN 10.10 % < IN 10.12 % (mean over 3 seeds)" in msg
