"""Figures of the group ablation (notebook 06, the paper's Table 3), drawn from records.

* :func:`plot_groups`: error vs G and vs channels per group as the change from the best
  setting, ours next to the paper (Table 3); :func:`group_sweep` is its table (seed-paired
  tests against the row's best, Holm-corrected per row);
* :func:`plot_group_costs`: the two costs behind GN's extremes.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from .style import NORM_COLORS, label_axes

__all__ = ["GROUP_ROWS", "group_sweep", "plot_group_costs", "plot_groups"]


GROUP_ROWS = (("groups", "number of groups G", "G"),
              ("channels_per_group", "channels per group C/G", "C/G"))


def group_sweep(records: list[dict], column: str):
    """One row of Table 3 measured: per setting of ``column`` (``"groups"`` or
    ``"channels_per_group"``) the mean test error over usable seeds and the seed-paired
    difference from the row's best setting (``vs_best``, :class:`gnlib.analysis.Paired`;
    ``None`` for the best itself). The best is the lowest mean, chosen after the fact, and the
    row tests every other setting against it, so ``p_holm`` holds the p-values adjusted with
    Holm's method over the row's tests (:func:`gnlib.analysis.stats.holm`) and ``vs_best_holm``
    the same differences carrying that adjusted p (its ``verdict()`` is the row's verdict).
    A DataFrame indexed by the setting, largest first."""
    import dataclasses

    import pandas as pd

    from ..analysis import mean_se, paired_difference, runs_frame
    from ..analysis.stats import holm

    df = runs_frame(records)
    df = df[df["norm"] == "gn"]
    if column == "groups":
        df = df[df["channels_per_group"].isna()]
    else:
        df = df[df["channels_per_group"].notna()]
    rows = {}
    for k, g in df.groupby(column):
        m, se, n = mean_se(g[g["usable"]]["test_error"].tolist())
        rows[int(k)] = {"mean": m, "se": se, "seeds": n, "left_out": int((~g["usable"]).sum())}
    out = pd.DataFrame.from_dict(rows, orient="index").sort_index(ascending=False)
    if not len(out):
        return out
    best = int(out["mean"].idxmin())
    at = lambda k: (lambda d: d[column] == k)  # noqa: E731
    out["vs_best"] = [None if k == best else paired_difference(df, at(k), at(best))
                      for k in out.index]
    tested = [k for k in out.index if k != best]
    adjusted = dict(zip(tested, holm([out.loc[k, "vs_best"].p for k in tested])))
    out["p_holm"] = [adjusted.get(k) for k in out.index]
    out["vs_best_holm"] = [None if k == best else dataclasses.replace(out.loc[k, "vs_best"],
                                                                      p=adjusted[k])
                           for k in out.index]
    out.index.name = column
    return out


def plot_groups(records: list[dict], paper: dict | None = None,
                noise_floor: float | None = None) -> Figure:
    """GN's test error vs the number of groups G (left) and vs channels per group C/G (right),
    as the **change from the best setting of the row**, in points, on one shared axis: ours
    (Fashion-MNIST: seed-paired difference from our best setting, mean ± SE) next to the
    paper's Table 3 (``paper["groups"]`` / ``paper["channels_per_group"]`` minus the best of
    its row). Filled markers: worse than the best after Holm's correction (p < 0.05); hollow:
    not significant. ``noise_floor`` (points) shades the band within which runs of the same
    model from different commits already differ: the sweep's runs share one commit, so it is
    drawn only as a rough scale of run-to-run variation, not as a test."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2), sharey=True)
    for ax, (col, xlabel, short) in zip(axes, GROUP_ROWS):
        sweep = group_sweep(records, col)
        ticks = set(sweep.index)
        if noise_floor:
            ax.axhspan(0, noise_floor, color="0.85", zorder=0,
                       label=f"noise floor between commits ({noise_floor:.2f}):\n"
                             "here only a rough run-to-run scale")
        if len(sweep):
            best = int(sweep["mean"].idxmin())
            diff = [0.0 if p is None else p.mean for p in sweep["vs_best"]]
            err = [0.0 if p is None or p.se != p.se else p.se for p in sweep["vs_best"]]
            ax.errorbar(sweep.index, diff, yerr=err, fmt="o-", capsize=3, color=NORM_COLORS["gn"],
                        label=f"ours (Fashion-MNIST), mean ± SE over seeds:\nminus {short} = "
                              f"{best} ({sweep.loc[best, 'mean']:.2f} %), the best after the fact")
            open_ = [(k, d) for k, d, p in zip(sweep.index, diff, sweep["vs_best_holm"])
                     if p is not None and not p.significant]
            if open_:
                ax.plot(*zip(*open_), "o", mfc="white", color=NORM_COLORS["gn"], zorder=3,
                        label="hollow: not significant after Holm (5 %)")
        if paper and col in paper:
            row = paper[col]
            ks = sorted(row)
            best_k = min(row, key=row.get)
            ax.plot(ks, [row[k] - row[best_k] for k in ks], "s--", color="k", alpha=0.6,
                    label=f"paper (ImageNet): minus {short} = {best_k} ({row[best_k]:.1f} %)")
            ticks |= set(ks)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log", base=2)
        ticks = sorted(ticks)
        extreme = "LN" if col == "groups" else "IN"
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"1\n({extreme})" if v == 1 else str(int(v)) for v in ticks])
        ax.set_xticks([], minor=True)
        label_axes(ax, xlabel=xlabel, ylabel="test error minus the row's best (points)",
                   title=f"GN vs {xlabel} (batch 32): change from the best setting",
                   legend=dict(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.27)))
    low, high = axes[0].get_ylim()
    axes[0].set_ylim(min(low, -0.3), high)
    axes[1].yaxis.set_tick_params(labelleft=True)
    fig.tight_layout()
    return fig


def plot_group_costs(costs) -> Figure:
    """The two costs behind GN's extremes, from :func:`gnlib.exercises.ablation.group_costs`
    (one row per layer and C/G): left, how far a channel's std is from its group's (the LN
    end, many channels per group); right, how well the statistics GN removes predict the class
    (the IN end, one channel per group). Thin lines: layers; thick: their mean."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    panels = (("scale_mismatch", "channel std / group std (typical factor, 1 = none)",
               "LN end: one set for channels of different scale"),
              ("class_accuracy", "class accuracy from the removed (μ, σ) (%)",
               "IN end: what normalization removes tells the class"))
    for ax, (col, ylabel, title) in zip(axes, panels):
        for (layer, C, hw), d in costs.groupby(["layer", "C", "H x W"]):
            ax.plot(d["C/G"], d[col], "-", color="0.6", lw=0.8, alpha=0.7,
                    label="one layer" if layer == costs["layer"].min() else None)
        mean = costs.groupby("C/G")[col].mean()
        ax.plot(mean.index, mean.values, "o-", color=NORM_COLORS["gn"], lw=2,
                label=f"mean over {costs['layer'].nunique()} layers")
        if col == "class_accuracy":
            ax.axhline(10, color="k", ls=":", lw=1, label="chance (10 classes)")
        ax.set_xscale("log", base=2)
        ticks = sorted(costs["C/G"].unique())
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(int(v)) for v in ticks])
        ax.set_xticks([], minor=True)
        label_axes(ax, xlabel="channels per group C/G (1 = IN; 64 = LN on 64 channels)",
                   ylabel=ylabel, title=title, legend=dict(fontsize=8))
    fig.tight_layout()
    return fig
