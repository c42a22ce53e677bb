"""Figures beyond the paper (notebook 07), drawn from records or computed examples.

* :func:`plot_small_batch`: BN / Batch Renorm / GN / GN+WS at batch 4 and 2;
* :func:`plot_non_iid`: BN vs GN when the batch or each device's slice is not i.i.d.;
* :func:`plot_bn_drift`: how far BN's running statistics are from the data's, per epoch;
* :func:`plot_statistics_deviation`: how far the batch statistics BN trains with are from them;
* :func:`plot_renorm`: Batch Renorm's r and d on an example batch (the r_max / d_max sliders).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from .style import NORM_COLORS, NORM_LABELS, label_axes

__all__ = ["SMALL_BATCH_ORDER", "plot_bn_drift", "plot_non_iid", "plot_renorm", "plot_small_batch",
           "plot_statistics_deviation"]


SMALL_BATCH_ORDER = ("bn", "br", "gn", "gn+ws")


def plot_small_batch(records: list[dict], paper: dict | None = None,
                     norms=SMALL_BATCH_ORDER) -> Figure:
    """Test error (%) per norm at each small batch size: mean ± std over seeds, seeds as dots;
    ``paper`` (``{norm: error}`` at batch 4) as a second panel for reference."""
    from ..analysis import runs_frame

    df = runs_frame(records)
    df = df[df["usable"] & df["norm"].isin(norms)]
    present = [n for n in norms if n in set(df["norm"])]
    sizes = sorted(df["batch_size"].unique(), reverse=True)
    ncols = 2 if paper else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 4), squeeze=False,
                             gridspec_kw={"width_ratios": [1.4, 1][:ncols]})
    ax = axes[0, 0]
    width = 0.8 / max(len(sizes), 1)
    markers = "os^D"
    for j, b in enumerate(sizes):
        for i, n in enumerate(present):
            v = df[(df["norm"] == n) & (df["batch_size"] == b)]["test_error"]
            x = i + (j - (len(sizes) - 1) / 2) * width
            ax.errorbar(x, v.mean(), yerr=v.std() if len(v) > 1 else 0, fmt=markers[j % 4],
                        color=NORM_COLORS[n], capsize=4, ms=8, mfc="white" if j else None,
                        label=f"batch {b}" if i == 0 else None)
            ax.plot([x] * len(v), v, ".", color="k", alpha=0.4, ms=4)
    ax.set_xticks(range(len(present)))
    ax.set_xticklabels([NORM_LABELS[n] for n in present])
    label_axes(ax, ylabel="test error (%)", grid="y", legend=dict(fontsize=8),
               title="Fashion-MNIST (ours): mean ± std over seeds (dots: seeds)")
    for h in ax.get_legend().legend_handles:
        h.set_color("k")
    if paper:
        ax2 = axes[0, 1]
        ks = [n for n in norms if n in paper]
        ax2.bar(range(len(ks)), [paper[k] for k in ks], color=[NORM_COLORS[k] for k in ks],
                alpha=0.7, label="ResNet-50, ImageNet, batch 4")
        ax2.set_xticks(range(len(ks)))
        ax2.set_xticklabels([NORM_LABELS[k] for k in ks])
        ax2.set_ylim(0, max(paper.values()) * 1.15)           # bars start at 0
        for i, k in enumerate(ks):
            ax2.text(i, paper[k] + 0.2, f"{paper[k]:.1f}", ha="center", fontsize=9)
        label_axes(ax2, ylabel="ImageNet val error (%)", title="paper (Wu & He 2018), batch 4",
                   grid="y", legend=dict(fontsize=8, loc="lower left"))
    fig.tight_layout()
    return fig


def _non_iid_frame(records: list[dict]):
    from ..analysis import condition_order, runs_frame

    df = runs_frame(records)
    return df[df["usable"]], condition_order(records), df.groupby(["norm", "condition"]).size()


def plot_non_iid(records: list[dict]) -> Figure:
    """Test error (%) of BN and GN per batch condition at batch 32 (mean ± std over seeds);
    for BN also the error with train-mode statistics (hollow markers). Where runs were left
    out (did not train), the marker is annotated "n = usable of runs"; the legend sits outside
    the axes, off the data."""
    df, order, totals = _non_iid_frame(records)
    fig, ax = plt.subplots(figsize=(11, 0.55 * len(order) + 2))
    y = {c: i for i, c in enumerate(order)}
    series = [("bn", "test_error", False), ("bn", "test_error_train_mode", True),
              ("syncbn", "test_error", False), ("gn", "test_error", False)]
    series = [s for s in series if s[0] in set(df["norm"])]
    for k, (norm, col, hollow) in enumerate(series):
        d = df[df["norm"] == norm].groupby("condition")[col].agg(["mean", "std", "count"])
        d = d.dropna(subset=["mean"])
        off = (k - (len(series) - 1) / 2) * 0.18
        ax.errorbar(d["mean"], [y[c] + off for c in d.index], xerr=d["std"].fillna(0), fmt="o",
                    color=NORM_COLORS[norm], mfc="white" if hollow else None, capsize=3,
                    label=NORM_LABELS[norm] + (" (train-mode statistics on test)" if hollow
                                               else " (eval mode)"))
        for c, row in d.iterrows():
            total = int(totals.get((norm, c), 0))
            if not hollow and row["count"] < total:
                ax.annotate(f"n = {int(row['count'])} of {total}", (row["mean"], y[c] + off),
                            xytext=(7, 0), textcoords="offset points", fontsize=8,
                            va="center", color=NORM_COLORS[norm])
        runs = df[(df["norm"] == norm) & df[col].notna()]
        ax.plot(runs[col], [y[c] + off for c in runs["condition"]], ".", color="k", alpha=0.4,
                ms=4, label="single seeds" if k == 0 else None)
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels(order)
    ax.invert_yaxis()
    label_axes(ax, xlabel="test error (%; guessing gives 90 %)",
               title="batch 32 (one SGD step on all 32): how its images are grouped", grid="x",
               legend=dict(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0)))
    fig.tight_layout()
    return fig


def plot_bn_drift(records: list[dict]) -> Figure:
    """BN's running statistics vs the data's, per epoch and condition (band: ± std over seeds):
    variance ratio (1 = right) and standardized mean gap (0 = right), averaged over layers."""
    from ..analysis import bn_drift_frame, condition_order

    order = condition_order(records)
    d = bn_drift_frame([r for r in records if r["config"]["norm"] == "bn"])
    if not len(d):
        raise FileNotFoundError("no BN runs with running-statistics history in these records")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    hue = [c for c in order if c in set(d["condition"])]
    import seaborn as sns

    pal = dict(zip(hue, sns.color_palette("colorblind", len(hue))))
    for ax, col, ylabel, ref in ((axes[0], "var_ratio", "running var / var of eval-mode input", 1.0),
                                 (axes[1], "mean_gap", "|running - input mean| / input std", 0.0)):
        sns.lineplot(data=d, x="epoch", y=col, hue="condition", hue_order=hue, palette=pal,
                     errorbar="sd", marker="o", ax=ax)
        ax.axhline(ref, color="k", ls=":", lw=1, label="exact")
        from matplotlib.ticker import MaxNLocator
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        label_axes(ax, xlabel="epoch", ylabel=ylabel, legend=dict(fontsize=7, title=None))
    axes[0].set_title("BN running variance (mean over layers and channels)", fontsize=10)
    axes[1].set_title("BN running mean error (mean over layers and channels)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_statistics_deviation(deviations: dict[str, dict]) -> Figure:
    """Box plots, one per batch condition, of the per-slice deviations returned by
    :func:`gnlib.diagnostics.batch_statistics_deviation` (mean gap and variance ratio) against
    the statistics of the layer's input over all the images passed to it."""
    labels = list(deviations)
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.5 * len(labels) + 2.2), sharey=True)
    for ax, key, xlabel, ref in ((axes[0], "mean_dev", "|slice mean - mean of all| / std of all", 0.0),
                                 (axes[1], "var_ratio", "slice variance / variance of all", 1.0)):
        ax.boxplot([deviations[k][key].numpy() for k in labels], vert=False, showfliers=False,
                   widths=0.6)
        ax.axvline(ref, color="k", ls=":", lw=1, label="statistics of all the images")
        label_axes(ax, xlabel=xlabel + " (mean over channels)", grid="x",
                   legend=dict(fontsize=8, loc="lower right"))
    axes[0].set_yticks(range(1, len(labels) + 1))
    axes[0].set_yticklabels(labels)
    axes[0].invert_yaxis()
    axes[0].set_title("means a BN layer normalizes with in training", fontsize=10)
    axes[1].set_title("variances a BN layer normalizes with in training", fontsize=10)
    fig.tight_layout()
    return fig


def plot_renorm(example: dict) -> Figure:
    """Batch Renorm on one small batch, from :func:`gnlib.widgets.renorm_example`: per channel
    the ratio :math:`\\sigma_B/\\sigma` and r inside :math:`[1/r_{\\max}, r_{\\max}]` (left),
    the shift :math:`(\\mu_B-\\mu)/\\sigma` and d inside :math:`[-d_{\\max}, d_{\\max}]`
    (middle), and the mean ± std of each channel's output with BN's batch statistics, with BR,
    and with the running statistics (the inference formula) (right)."""
    r_max, d_max = example["r_max"], example["d_max"]
    C = len(example["r"])
    ch = list(range(C))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    for ax, (raw, corr, name, lo, hi, ref, ylabel) in zip(axes[:2], (
            ("ratio", "r", "σ_B / σ", 1 / r_max, r_max, 1.0, "ratio (log scale)"),
            ("shift", "d", "(μ_B − μ) / σ", -d_max, d_max, 0.0, "shift (units of σ)"))):
        ax.axhspan(lo, hi, color=NORM_COLORS["br"], alpha=0.15,
                   label=f"allowed: [{lo:.2f}, {hi:.2f}]")
        ax.axhline(ref, color="k", lw=0.8, ls=":")
        ax.plot(ch, example[raw], "o", mfc="white", color="k", ms=8, label=f"{name} (batch)")
        ax.plot(ch, example[corr], "o", color=NORM_COLORS["br"], ms=6,
                label=f"{corr} (clipped, used)")
        if raw == "ratio":
            ax.set_yscale("log")
            ticks = [0.2, 0.3, 0.5, 1, 2, 3, 5]
            ax.set_yticks(ticks)
            ax.set_yticklabels([f"{t:g}" for t in ticks])
            ax.set_yticks([], minor=True)
            ax.set_ylim(0.18, 5.6)
        ax.set_xticks(ch)
        label_axes(ax, xlabel="channel", ylabel=ylabel,
                   title=f"{corr} = clip({name})", legend=dict(fontsize=8))
    ax = axes[2]
    series = (("y_bn", "BN: batch statistics", NORM_COLORS["bn"]),
              ("y_br", "BR: batch statistics, r, d", NORM_COLORS["br"]),
              ("y_inf", "running statistics (inference)", "k"))
    for k, (key, label, color) in enumerate(series):
        y = example[key]
        mean = y.mean(axis=(0, 2, 3))
        std = y.std(axis=(0, 2, 3))
        ax.errorbar([c + (k - 1) * 0.2 for c in ch], mean, yerr=std, fmt="o", capsize=3,
                    color=color, label=label)
    ax.set_xticks(ch)
    label_axes(ax, xlabel="channel", ylabel="output: mean ± std over the batch",
               title=f"outputs (r_max = {r_max:g}, d_max = {d_max:g})",
               legend=dict(fontsize=8))
    fig.tight_layout()
    return fig
