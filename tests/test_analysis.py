"""gnlib.analysis: seed-paired statistics, runs left out, the Figure-1 table."""
import math

import pytest

from gnlib.analysis import (Paired, describe_paired, figure1_table, mean_se, paired_difference,
                            runs_frame, summary_table)
from gnlib.results import did_not_train, normalize


def rec(norm, seed, err, devices=1, loss=(1.0, 0.5), **extra):
    cfg = {"norm": norm, "groups": 32, "channels_per_group": None, "batch_size": 32,
           "devices": devices, "seed": seed, "epochs": len(loss)}
    return normalize({"config": cfg, "test_error": err, "train_error": err, "diverged": False,
                      "history": {"epoch": list(range(1, len(loss) + 1)), "train_loss": list(loss),
                                  "train_error": [err] * len(loss), "test_error": [err] * len(loss)},
                      **extra})


def test_mean_se():
    m, se, n = mean_se([1.0, 2.0, 3.0, float("nan")])
    assert (m, n) == (2.0, 3) and se == pytest.approx(1 / math.sqrt(3))
    assert math.isnan(mean_se([4.0])[1]) and mean_se([])[2] == 0


def test_paired_difference_matches_a_hand_computed_t_test():
    # seeds 0..2: A - B = 0.6, 0.7, 0.8 -> mean 0.7, sd 0.1, se 0.1/sqrt(3), t = 12.12, df 2
    recs = [rec("bn", s, 9.0 + 0.1 * s + d, devices=16) for s, d in enumerate((0.6, 0.7, 0.8))]
    recs += [rec("bn", s, 9.0 + 0.1 * s) for s in range(3)]
    df = runs_frame(recs)
    p = paired_difference(df, lambda d: d["devices"] == 16, lambda d: d["devices"] == 1)
    assert p.n == 3 and p.df == 2
    assert p.mean == pytest.approx(0.7) and p.se == pytest.approx(0.1 / math.sqrt(3))
    assert p.t == pytest.approx(0.7 / (0.1 / math.sqrt(3)))
    assert p.p == pytest.approx(0.00674, abs=2e-4)                  # scipy.stats.t, df = 2
    assert p.significant and p.verdict().startswith("worse")
    assert "+0.70 ± 0.06 (n = 3)" in describe_paired("BN at 2", "BN at 32", p)


def test_unpaired_seeds_and_noise_give_no_verdict():
    recs = [rec("bn", 0, 9.0), rec("bn", 1, 9.5), rec("gn", 1, 9.6), rec("gn", 2, 9.0)]
    df = runs_frame(recs)
    p = paired_difference(df, lambda d: d["norm"] == "gn", lambda d: d["norm"] == "bn")
    assert p.n == 1 and p.verdict() == "one seed pair only, no test"   # only seed 1 is in both
    noisy = [rec("gn", s, e) for s, e in enumerate((9.0, 10.0, 9.2))]
    noisy += [rec("bn", s, e) for s, e in enumerate((9.5, 9.1, 9.4))]
    p = paired_difference(runs_frame(noisy), lambda d: d["norm"] == "gn", lambda d: d["norm"] == "bn")
    assert not p.significant and p.verdict().startswith("not significant at 5 % with 3 seeds")


def test_runs_that_did_not_train_are_left_out_and_counted():
    chance = math.log(10)
    assert did_not_train([chance, 2.1]) and not did_not_train([chance, 1.0])
    assert did_not_train([1.0, None]) and did_not_train([])
    recs = [rec("gn", 0, 90.0, loss=(chance, chance)), rec("gn", 1, 9.0), rec("gn", 2, 9.2)]
    t = summary_table(recs, by=("norm",))
    assert t.loc["gn", "count"] == 2 and t.loc["gn", "left_out"] == 1
    assert t.loc["gn", "mean"] == pytest.approx(9.1)


def test_figure1_table_pairs_by_seed():
    recs = []
    for s in range(3):
        recs += [rec("bn", s, 8.5 + 0.1 * s), rec("bn", s, 9.2 + 0.1 * s, devices=16),
                 rec("gn", s, 9.0 + 0.1 * s), rec("bn", s, 47.0, devices=32)]
    t = figure1_table(recs).set_index(["norm", "images per device"])
    assert list(t.index) == [("bn", 32), ("bn", 2), ("bn", 1), ("gn", 32)]
    assert t.loc[("bn", 2), "vs BN at 32"].mean == pytest.approx(0.7)
    assert t.loc[("bn", 32), "vs GN"].mean == pytest.approx(-0.5)
    assert t.loc[("bn", 32), "vs BN at 32"] is None and t.loc[("gn", 32), "vs GN"] is None
    assert t.loc[("bn", 2), "seeds"] == 3


def test_normalize_reads_old_records_in_todays_names():
    old = {"preset": "full", "val_error": 13.5, "val_error_train_mode": 13.9,
           "config": {"norm": "bn", "batching": "iid"},
           "history": {"val_error": [14.0, 13.5], "train_loss": [1.0, 0.5]}}
    new = normalize(old)
    assert new["test_error"] == 13.5 and new["test_error_train_mode"] == 13.9
    assert "val_error" not in new and new["history"]["test_error"] == [14.0, 13.5]
    assert new["config"]["batching"] == "shuffled" and new["config"]["memory_format"] == "contiguous"
    assert new["config"]["gn_backend"] == "python"           # before the C++ kernel existed
    assert new["did_not_train"] is False and isinstance(Paired(0, 0, 0, 0, 1, 1), Paired)


# ---- Holm's correction and comparisons across commits ---------------------------------------
def test_holm_matches_hand_computed_values():
    from gnlib.analysis.stats import holm

    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> max(0.06, .)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])               # capped at 1
    assert holm([0.02]) == pytest.approx([0.02])                       # one test: unchanged
    out = holm([float("nan"), 0.02, 0.04])                             # NaN: no test, not counted
    assert math.isnan(out[0]) and out[1:] == pytest.approx([0.04, 0.04])
    assert holm([]) == []


def test_commit_verdict_withholds_a_verdict_below_the_floor_between_commits():
    from gnlib.analysis.reports import commit_verdict, same_commit

    p = Paired(mean=0.5, se=0.05, t=10.0, df=2, p=0.01, n=3)
    assert commit_verdict(p, ["abc"], ["abc"], floor=0.77) == p.verdict()   # one clean commit
    below = commit_verdict(p, ["abc"], ["def"], floor=0.77)
    assert "different commits" in below and "no verdict" in below and "worse" not in below
    above = commit_verdict(Paired(1.5, 0.1, 15.0, 2, 0.004, 3), ["abc"], ["def"], floor=0.77)
    assert "above the between-commit floor" in above and above.endswith("worse (p = 0.004)")
    assert not same_commit(["abc+dirty"], ["abc+dirty"])                 # uncommitted changes
    assert not same_commit(["abc", "def"], ["abc", "def"])
    assert commit_verdict(p, ["abc+dirty"], ["abc+dirty"], floor=0.77).endswith("no verdict")


def test_describe_conditions_names_the_commits():
    from gnlib.analysis import describe_conditions

    def nrec(norm, seed, err, batching, devices, commit):
        r = rec(norm, seed, err, devices=devices, git_commit=commit)
        r["config"]["batching"] = batching
        return r

    recs = [nrec("bn", s, 13.0 + 0.1 * s, "shuffled", 1, "aaa") for s in range(3)]
    recs += [nrec("bn", s, 13.4 + 0.1 * s + 0.01 * s * s, "shuffled", 16, "bbb") for s in range(3)]
    lines = describe_conditions(recs, floor=0.77)
    assert "commit aaa" in lines[0]
    assert "(bbb)" not in lines[1] and "commit bbb" in lines[1] and "(aaa)" in lines[1]
    assert lines[1].rstrip().split(", train-mode")[0].endswith("no verdict")


def test_describe_small_batch_names_commits_only_when_given_a_floor():
    from gnlib.analysis import describe_small_batch

    def srec(norm, seed, err, commit):
        r = rec(norm, seed, err, git_commit=commit)
        r["config"]["batch_size"] = 2
        return r

    recs = [srec("bn", s, 13.0 + 0.1 * s, "aaa") for s in range(3)]
    recs += [srec("gn", s, 13.3 + 0.1 * s + 0.01 * s * s, "bbb") for s in range(3)]
    plain = describe_small_batch(recs)
    assert plain and "aaa" not in plain[-1]
    line = [x for x in describe_small_batch(recs, floor=0.77) if "GN " in x][0]
    assert "(bbb), minus BN (aaa)" in line and line.endswith("no verdict")
