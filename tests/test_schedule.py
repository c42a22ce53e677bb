"""gnlib.analysis.schedule: the last epoch's change and the same seeds at two budgets."""
import math

import matplotlib
import pytest

from gnlib.analysis import describe_schedules, last_epoch_change, schedule_pairs, schedule_table
from gnlib.results import normalize

matplotlib.use("Agg")


def rec(norm, seed, errors, devices=1, loss=None):
    """A finished run whose test error per epoch is ``errors`` (final = the last one)."""
    n = len(errors)
    cfg = {"norm": norm, "groups": 32, "channels_per_group": None, "batch_size": 32,
           "devices": devices, "seed": seed, "epochs": n}
    loss = loss or [1.0 / (e + 1) for e in range(n)]
    return normalize({"config": cfg, "test_error": errors[-1], "train_error": errors[-1],
                      "diverged": False,
                      "history": {"epoch": list(range(1, n + 1)), "train_loss": loss,
                                  "train_error": list(errors), "test_error": list(errors)}})


def test_last_epoch_change_is_the_mean_of_the_final_step_over_seeds():
    recs = [rec("bn", 0, [9.0, 8.6, 8.2]), rec("bn", 1, [9.0, 8.5, 8.4]), rec("gn", 0, [9.5, 9.0])]
    t = last_epoch_change(recs)
    assert t.loc[("bn", 32), "last_epoch_change"] == pytest.approx((-0.4 - 0.1) / 2)
    assert t.loc[("bn", 32), "final"] == pytest.approx(8.3)
    assert t.loc[("gn", 32), "last_epoch_change"] == pytest.approx(-0.5)


def test_schedule_table_pairs_seeds_across_budgets_and_judges_only_complete_conditions():
    short = [rec("bn", s, [9.0, 8.5 + 0.1 * s]) for s in range(3)]
    short += [rec("gn", s, [9.4, 9.0 + 0.1 * s]) for s in range(3)]
    short += [rec("bn", s, [9.8, 9.2], devices=16) for s in range(3)]
    # the longer budget: BN ends at 8.0 (0.5, 0.6, 0.7 lower), last steps -0.1, +0.05, -0.05
    long = [rec("bn", 0, [9.0, 8.6, 8.1, 8.0]), rec("bn", 1, [9.0, 8.5, 7.95, 8.0]),
            rec("bn", 2, [9.0, 8.5, 8.05, 8.0])]
    long += [rec("gn", 0, [9.4, 9.0, 8.8, 8.4])]                       # one seed so far
    long += [rec("bn", 0, [9.8, 9.2, 9.0, 8.9], devices=16),          # seed 1 did not train
             rec("bn", 1, [90.0, 90.0, 90.0, 90.0], devices=16, loss=[math.log(10)] * 4)]
    t = schedule_table(short, long).set_index(["norm", "images per device"])
    assert list(t.index) == [("bn", 32), ("bn", 2), ("gn", 32)]
    assert list(t.columns[2:4]) == ["2 epochs %", "4 epochs %"]
    bn = t.loc[("bn", 32)]
    assert bn["seeds"] == 3 and bn["left out"] == 0
    assert bn["2 epochs %"] == pytest.approx(8.6) and bn["4 epochs %"] == pytest.approx(8.0)
    p = bn["longer minus shorter"]
    assert p.n == 3 and p.mean == pytest.approx(-0.6) and p.se == pytest.approx(0.1 / math.sqrt(3))
    assert bn["last epoch, 4 epochs"] == pytest.approx((-0.1 + 0.05 - 0.05) / 3)
    assert bn["last epoch, 2 epochs"] == pytest.approx((-0.5 - 0.4 - 0.3) / 3)
    assert bn["criterion"] == "met"
    assert t.loc[("gn", 32), "criterion"] == "1 of 3 seeds"
    ghost = t.loc[("bn", 2)]
    assert ghost["seeds"] == 1 and ghost["left out"] == 1 and ghost["4 epochs %"] == pytest.approx(8.9)
    lines = describe_schedules(schedule_table(short, long))
    assert lines[0].startswith("BN over 32 images (3 seeds): 8.60 % -> 8.00 %, longer minus shorter -0.60")
    assert "better (p = " in lines[0] and lines[0].endswith("last epoch -0.03 points (met)")
    assert lines[2].startswith("GN (1 seed): 9.00 % -> 8.40 %") and "one seed pair only" in lines[2]


def test_schedule_pairs_keeps_only_seeds_usable_at_both_budgets():
    short = [rec("bn", s, [9.0, 8.5 + 0.1 * s]) for s in range(3)] + [rec("gn", 0, [9.4, 9.1])]
    long = [rec("bn", 0, [9.0, 8.6, 8.1]), rec("bn", 2, [9.0, 8.5, 8.3]),
            rec("bn", 1, [90.0] * 3, loss=[math.log(10)] * 3),                # did not train
            rec("gn", 0, [9.4, 9.0, 8.8]), rec("bn", 0, [9.9, 9.5, 9.4], devices=16)]
    pairs, conds, budgets = schedule_pairs(short, long)
    assert budgets == ("2 epochs", "3 epochs")
    assert conds == [("bn", 32), ("bn", 2), ("gn", 32)]
    bn = pairs[(pairs["norm"] == "bn") & (pairs["slice"] == 32)].set_index("seed")
    assert list(bn.index) == [0, 2]
    assert bn.loc[2, "final_a"] == pytest.approx(8.7) and bn.loc[2, "final_b"] == pytest.approx(8.3)
    assert bn.loc[0, "last_epoch_change_a"] == pytest.approx(-0.5)
    assert bn.loc[0, "last_epoch_change_b"] == pytest.approx(-0.5)
    assert len(pairs[pairs["slice"] == 2]) == 0                               # no shorter run


def test_a_missed_criterion_is_reported():
    short = [rec("bn", s, [9.0, 8.5]) for s in range(3)]
    long = [rec("bn", s, [9.0, 8.5, 8.0]) for s in range(3)]            # still -0.5 per epoch
    t = schedule_table(short, long)
    assert t.loc[0, "criterion"] == "missed"


def test_plot_schedules_draws_both_budgets():
    from gnlib.plots import plot_schedules

    short = [rec("bn", s, [9.0, 8.5 + 0.1 * s]) for s in range(2)] + [rec("bn", 0, [60.0, 47.0], devices=32)]
    long = [rec("bn", s, [9.0, 8.5, 8.0 + 0.1 * s]) for s in range(2)] + [rec("bn", 0, [50.0, 45.0, 43.0], devices=32)]
    fig = plot_schedules(short, long)
    left, right = fig.axes
    assert [t.get_text() for t in left.get_xticklabels()] == ["BN 32", "BN 1"]
    lines = [ln for ln in left.get_lines() if len(ln.get_xdata()) == 2]
    ys = sorted(tuple(ln.get_ydata()) for ln in lines)
    assert ys == [pytest.approx((8.5, 8.0)), pytest.approx((8.6, 8.1))]
    assert any("47 -> 43 %" in t.get_text() for t in left.texts)          # off scale, written
    heights = sorted(round(b.get_height(), 3) for b in right.patches if b.get_width() < 0.5)
    assert heights == [-1.0, -1.0, -0.45, -0.45]                           # BN 1 clipped at -1
    assert {t.get_text() for t in right.texts} == {"-13.0", "-2.0"}


def test_schedule_gap_compares_the_same_seeds_at_both_budgets():
    from gnlib.analysis import schedule_gap

    short = [rec("bn", s, [9.0, 8.5 + 0.1 * s]) for s in range(3)]
    short += [rec("bn", s, [9.9, 9.2 + 0.1 * s + 0.05 * s], devices=16) for s in range(3)]
    long = [rec("bn", s, [9.0, 8.0]) for s in range(3)]
    long += [rec("bn", s, [9.5, 8.7 + 0.1 * s], devices=16) for s in range(2)]   # seed 2 not yet
    at_short, at_long, change = schedule_gap(short, long, ("bn", 2), ("bn", 32))
    assert at_short.n == at_long.n == change.n == 2                       # seeds 0 and 1 only
    assert at_short.mean == pytest.approx((0.7 + 0.75) / 2)
    assert at_long.mean == pytest.approx((0.7 + 0.8) / 2)
    assert change.mean == pytest.approx((0.0 + 0.05) / 2)                 # per seed: 0.7-0.7, 0.8-0.75
    assert change.se == pytest.approx(0.025)


def test_a_p_value_just_above_5_percent_is_not_printed_as_0_05():
    from gnlib.analysis import Paired

    assert Paired(-0.67, 0.05, -13.4, 1, 0.0525, 2).verdict().endswith("(p = 0.052)")
    assert Paired(0.1, 0.2, 0.5, 2, 0.66, 3).verdict().endswith("(p = 0.66)")
