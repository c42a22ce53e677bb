"""The results plots of notebooks 06 and 07: the group sweep as the change from the best
setting (one shared axis, ours next to the paper), the costs of GN's extremes, and Batch
Renorm's r / d figure with its sliders (recomputed with BatchRenorm2d)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from gnlib.paper import PAPER  # noqa: E402
from gnlib.plots import (group_sweep, plot_group_costs, plot_groups,  # noqa: E402
                         plot_renorm)
from gnlib.widgets import renorm_example, renorm_explorer, renorm_readout  # noqa: E402


def rec(seed: int, err: float, groups: int = 32, cpg: int | None = None,
        did_not_train: bool = False) -> dict:
    return {"config": {"norm": "gn", "groups": groups, "channels_per_group": cpg,
                       "batch_size": 32, "seed": seed, "epochs": 6, "devices": 1,
                       "batching": "shuffled"},
            "test_error": err, "train_error": err - 3, "diverged": False,
            "did_not_train": did_not_train,
            "history": {"epoch": [1], "train_loss": [0.5], "train_error": [err], "test_error": [err]}}


def _groups_records() -> list[dict]:
    out = []
    for seed, noise in enumerate((0.0, 0.1, -0.1)):
        out += [rec(seed, 14.0 + noise, groups=32), rec(seed, 15.0 + noise + 0.05 * seed, groups=1),
                rec(seed, 14.5 + noise, groups=8)]
        out += [rec(seed, 14.2 + noise, cpg=1), rec(seed, 16.0 + noise - 0.05 * seed, cpg=16)]
    out.append(rec(3, 90.0, groups=1, did_not_train=True))
    return out


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ---- groups -------------------------------------------------------------------------------
def test_group_sweep_pairs_each_setting_with_the_best():
    g = group_sweep(_groups_records(), "groups")
    assert list(g.index) == [32, 8, 1]
    assert g.loc[32, "vs_best"] is None
    assert g.loc[1, "vs_best"].mean == pytest.approx(1.05)
    assert g.loc[1, "vs_best"].n == 3 and g.loc[1, "left_out"] == 1 and g.loc[1, "seeds"] == 3
    c = group_sweep(_groups_records(), "channels_per_group")
    assert list(c.index) == [16, 1] and c.loc[16, "vs_best"].mean == pytest.approx(1.75)


def test_group_sweep_corrects_the_row_with_holm():
    from gnlib.analysis.stats import holm

    g = group_sweep(_groups_records(), "groups")
    raw = [g.loc[k, "vs_best"].p for k in (8, 1)]
    assert [g.loc[k, "p_holm"] for k in (8, 1)] == pytest.approx(holm(raw), nan_ok=True)
    assert g.loc[32, "p_holm"] != g.loc[32, "p_holm"] and g.loc[32, "vs_best_holm"] is None
    h = g.loc[1, "vs_best_holm"]
    assert h.mean == g.loc[1, "vs_best"].mean and h.p == pytest.approx(g.loc[1, "p_holm"])
    assert h.p >= g.loc[1, "vs_best"].p                              # never smaller than raw
    c = group_sweep(_groups_records(), "channels_per_group")         # one test: Holm = raw
    assert c.loc[16, "p_holm"] == pytest.approx(c.loc[16, "vs_best"].p)


def test_plot_groups_draws_changes_from_the_best_on_one_shared_axis():
    fig = plot_groups(_groups_records(), paper=PAPER, noise_floor=0.6)
    left, right = fig.axes
    assert left.get_shared_y_axes().joined(left, right)            # one scale for both rows
    assert "minus the row's best" in left.get_ylabel()
    assert left.get_xlabel() == "number of groups G"
    labels = [t.get_text() for t in left.get_legend().get_texts()]
    assert any("noise floor" in t and "rough run-to-run scale" in t for t in labels)
    assert any("paper" in t for t in labels) and any("best after the fact" in t for t in labels)
    ours = [line for line in left.get_lines() if line.get_marker() == "o"][0]
    assert sorted(ours.get_ydata()) == pytest.approx([0.0, 0.5, 1.05])
    paper = [line for line in left.get_lines() if line.get_marker() == "s"][0]
    assert min(paper.get_ydata()) == 0 and max(paper.get_ydata()) == pytest.approx(1.2)
    twins = [ax for ax in fig.axes if ax not in (left, right)]
    assert not twins                                                # no twin y-axes


def test_plot_groups_without_paper():
    fig = plot_groups(_groups_records())
    assert all(not any("paper" in t.get_text() for t in ax.get_legend().get_texts())
               for ax in fig.axes)


def test_plot_group_costs():
    import pandas as pd

    costs = pd.DataFrame([{"layer": k, "C": 64, "H x W": 49, "C/G": c, "G": 64 // c,
                           "values": c * 49, "scale_mismatch": 1 + 0.1 * np.log2(c) * (k + 1),
                           "class_accuracy": 50 - 3 * np.log2(c)}
                          for k in range(2) for c in (64, 8, 1)])
    fig = plot_group_costs(costs)
    assert len(fig.axes) == 2
    assert all(ax.get_xlabel().startswith("channels per group") for ax in fig.axes)
    mean = [line for line in fig.axes[0].get_lines() if line.get_linewidth() == 2][0]
    assert sorted(mean.get_ydata()) == pytest.approx(sorted(costs.groupby("C/G")["scale_mismatch"].mean()))


# ---- Batch Renorm -----------------------------------------------------------------------------
def test_renorm_example_clips_r_and_d():
    e = renorm_example(1.5, 0.5)
    assert np.allclose(e["r"], np.clip(e["ratio"], 1 / 1.5, 1.5), atol=1e-6)
    assert np.allclose(e["d"], np.clip(e["shift"], -0.5, 0.5), atol=1e-6)
    assert (e["ratio"] > 1.5).any() and (e["ratio"] < 1 / 1.5).any()   # the example clips r


def test_renorm_example_spans_bn_to_the_inference_formula():
    bn = renorm_example(1.0, 0.0)
    assert np.abs(bn["y_br"] - bn["y_bn"]).max() < 1e-5
    wide = renorm_example(10.0, 10.0)
    assert np.abs(wide["y_br"] - wide["y_inf"]).max() < 1e-4


def test_renorm_readout_lists_every_channel():
    text = renorm_readout(renorm_example(1.5, 0.5))
    assert text.startswith("r_max = 1.50, d_max = 0.50")
    assert len(text.splitlines()) == 2 + 4 + 1 and "max |BR - BN|" in text
    assert "-0.00" not in renorm_readout(renorm_example(1.0, 0.0))


def test_plot_renorm_panels():
    fig = plot_renorm(renorm_example(2.0, 0.25))
    assert len(fig.axes) == 3
    assert [ax.get_xlabel() for ax in fig.axes] == ["channel"] * 3
    assert "r_max = 2" in fig.axes[2].get_title()
    band = [p for p in fig.axes[0].patches][0].get_extents()   # the allowed interval is drawn
    assert band.height > 0


def test_renorm_explorer_recomputes_when_a_slider_moves():
    box = renorm_explorer(1.5, 0.5)
    image, numbers = box.children[1], box.children[2]
    before = (image.value, numbers.value, box.state["example"]["r"].copy())
    box.sliders["r_max"].value = 3.0
    assert box.state["example"]["r_max"] == 3.0
    assert box.state["example"]["r"].max() == pytest.approx(3.0)
    assert image.value != before[0] and numbers.value != before[1]
    box.sliders["d_max"].value = 0.0
    assert np.allclose(box.state["example"]["d"], 0.0)
    assert [s.description for s in box.sliders.values()] == ["r_max", "d_max"]


# ---- non-i.i.d. batches ---------------------------------------------------------------------
def test_plot_non_iid_marks_conditions_with_runs_left_out():
    from gnlib.plots import plot_non_iid

    def nrec(norm, seed, err, batching, devices, did_not_train=False):
        r = rec(seed, err, did_not_train=did_not_train)
        r["config"].update(norm=norm, batching=batching, devices=devices)
        r["history"]["train_loss"] = [2.31 if did_not_train else 0.5]
        return r

    recs = [nrec(n, s, 14.0 + s, "shuffled", 1) for n in ("bn", "gn") for s in range(3)]
    recs += [nrec("gn", 0, 58.0, "non-iid-2", 1)]
    recs += [nrec("gn", s, 90.0, "non-iid-2", 1, did_not_train=True) for s in (1, 2)]
    fig = plot_non_iid(recs)
    ax = fig.axes[0]
    notes = [t.get_text() for t in ax.texts]
    assert notes == ["n = 1 of 3"]
    legend = ax.get_legend()
    assert legend.get_bbox_to_anchor().x0 > ax.get_window_extent().x1 - 1   # outside, off the data
