"""Figures of the training experiments, drawn from results records (never by training).

* :func:`plot_batch_size`: test error vs batch size per norm, mean +- std over seeds (Figure 1);
* :func:`plot_bn_train_test`: BN's eval-mode vs train-mode (batch statistics) test error;
* :func:`plot_curves`: train and test error vs epoch per norm at one batch size (Figure 4);
* :func:`plot_groups`: error vs G and vs channels per group (Table 3);
* :func:`plot_small_batch`: BN / Batch Renorm / GN / GN+WS at batch 4 and 2 (notebook 07);
* :func:`plot_non_iid`: BN vs GN when the batch or each device's slice is not i.i.d.;
* :func:`plot_bn_drift`: how far BN's running statistics are from the data's, per epoch;
* :func:`plot_statistics_deviation`: how far the batch statistics BN trains with are from them;
"""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from .style import NORM_COLORS, NORM_LABELS, label_axes

__all__ = ["plot_batch_size", "plot_bn_drift", "plot_bn_train_test", "plot_curves", "plot_groups",
           "plot_non_iid", "plot_small_batch", "plot_statistics_deviation"]
ORDER = ("bn", "ln", "in", "gn")


def _batch_axis(ax, batch_sizes) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(batch_sizes))
    ax.set_xticklabels([str(b) for b in sorted(batch_sizes)])
    ax.invert_xaxis()                       # the paper's orientation: 32 -> 2
    ax.set_xlabel("batch size (images per batch)")


def plot_batch_size(records: list[dict], norms=ORDER, paper: dict | None = None) -> Figure:
    """Test error (%) vs batch size, one line per norm, error bars = std over seeds.

    ``paper``: optionally ``{norm: {batch: error}}`` drawn dashed on a second panel.
    """
    from ..analysis import runs_frame

    df = runs_frame(records)
    df = df[df["usable"] & df["norm"].isin(norms)]
    ncols = 2 if paper else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 4), squeeze=False)
    ax = axes[0, 0]
    for norm in [n for n in norms if n in set(df["norm"])]:
        s = df[df["norm"] == norm].groupby("batch_size")["test_error"].agg(["mean", "std", "count"])
        ax.errorbar(s.index, s["mean"], yerr=s["std"].fillna(0), marker="o", capsize=3,
                    color=NORM_COLORS[norm], label=f"{NORM_LABELS[norm]}")
    _batch_axis(ax, df["batch_size"].unique())
    ax.set_ylabel("test error (%)")
    n_seeds = int(df.groupby(["norm", "batch_size"]).size().max()) if len(df) else 0
    ax.set_title(f"Fashion-MNIST (ours): mean ± std over up to {n_seeds} seeds")
    ax.legend()
    ax.grid(alpha=0.3)
    if paper:
        ax2 = axes[0, 1]
        for norm, vals in paper.items():
            bs = sorted(vals)
            ax2.plot(bs, [vals[b] for b in bs], "o--", color=NORM_COLORS[norm],
                     label=NORM_LABELS[norm])
        _batch_axis(ax2, list(next(iter(paper.values()))))
        ax2.set_ylabel("ImageNet val error (%)")
        ax2.set_title("paper (Wu & He 2018, ResNet-50), for reference")
        ax2.legend()
        ax2.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_bn_train_test(records: list[dict]) -> Figure:
    """BN test error with running statistics (eval mode) vs with the statistics of each test
    batch of the training batch size (train mode), per batch size; mean ± std over seeds."""
    from ..analysis import runs_frame

    df = runs_frame(records)
    df = df[(df["norm"] == "bn") & df["usable"]]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for col, label, style in (("test_error", "eval mode (running statistics)", "o-"),
                              ("test_error_train_mode", "train mode (batch statistics of B test images)", "s--")):
        s = df.groupby("batch_size")[col].agg(["mean", "std"])
        shift = 1.0 if col == "test_error" else 1.05          # keep the error bars apart
        ax.errorbar(s.index * shift, s["mean"], yerr=s["std"].fillna(0), fmt=style, capsize=3,
                    color=NORM_COLORS["bn"], alpha=1.0 if col == "test_error" else 0.6, label=label)
    _batch_axis(ax, df["batch_size"].unique())
    ax.set_ylabel("test error (%)")
    ax.set_title("Batch Norm: test error by how statistics are computed")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_curves(records: list[dict], batch_size: int = 32, norms=ORDER,
                condition: str | None = None) -> Figure:
    """Train and test error (%) vs epoch at ``batch_size``, one line per norm, band = ± std
    over seeds (seaborn). ``condition``: only runs of that batch condition
    (:func:`gnlib.experiments.non_iid_label`, e.g. ``"16 devices x 2, 1 class each"``)."""
    from ..analysis import history_frame

    df = history_frame(records)
    if len(df):
        df = df[(df["batch_size"] == batch_size) & df["norm"].isin(norms)]
        if condition is not None:
            df = df[df["condition"] == condition]
    if not len(df):
        raise FileNotFoundError(f"no finished runs at batch size {batch_size} for {tuple(norms)}"
                                + (f" in condition {condition!r}" if condition else ""))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False)
    hue_order = [n for n in norms if n in set(df["norm"])]
    from matplotlib.ticker import MaxNLocator

    names = {"train": "training error (training batches, train mode)",
             "test": "test error (eval mode)"}
    for ax, split in zip(axes, ("train", "test")):
        d = df[df["split"] == split].assign(norm=lambda t: t["norm"].map(NORM_LABELS))
        import seaborn as sns   # imported where used: `import gnlib.widgets` stays light

        sns.lineplot(data=d, x="epoch", y="error", hue="norm", errorbar="sd", ax=ax,
                     hue_order=[NORM_LABELS[n] for n in hue_order],
                     palette={NORM_LABELS[n]: NORM_COLORS[n] for n in hue_order}, marker="o")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"{'training' if split == 'train' else 'test'} error (%)")
        where = f"batch {batch_size}, {condition}" if condition else f"batch size {batch_size}"
        ax.set_title(f"{names[split]}, {where}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(title=None)
    fig.tight_layout()
    return fig


def plot_groups(records: list[dict], paper: dict | None = None) -> Figure:
    """GN test error vs number of groups G (left) and vs channels per group (right), mean ± std
    over seeds; the paper's Table 3 dashed on a twin axis if ``paper`` is given."""
    from ..analysis import runs_frame

    df = runs_frame(records)
    df = df[(df["norm"] == "gn") & df["usable"]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = (("groups", df[df["channels_per_group"].isna()], "number of groups G"),
              ("channels_per_group", df[df["channels_per_group"].notna()],
               "channels per group C/G"))
    for ax, (col, d, xlabel) in zip(axes, panels):
        s = d.groupby(col)["test_error"].agg(["mean", "std"])
        ax.errorbar(s.index, s["mean"], yerr=s["std"].fillna(0), fmt="o-", capsize=3,
                    color=NORM_COLORS["gn"], label="GN, Fashion-MNIST (ours)")
        ax.set_xscale("log", base=2)
        ticks = sorted(set(s.index) | set(paper.get(col, {}) if paper else ()))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test error (%)")
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if paper and col in paper:
            tw = ax.twinx()
            ks = sorted(paper[col])
            line, = tw.plot(ks, [paper[col][k] for k in ks], "k--", alpha=0.5,
                            label="paper, ImageNet (right axis)")
            tw.set_ylabel("paper: ImageNet val error (%)")
            handles.append(line)
            labels.append(line.get_label())
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(int(v)) for v in ticks])
        ax.set_xticks([], minor=True)
        ax.legend(handles, labels, fontsize=8)
        ax.set_title(f"GN vs {xlabel} (batch 32)")
    fig.tight_layout()
    return fig


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
    return df[df["usable"]], condition_order(records)


def plot_non_iid(records: list[dict]) -> Figure:
    """Test error (%) of BN and GN per batch condition at batch 32 (mean ± std over seeds);
    for BN also the error with train-mode statistics (hollow markers)."""
    df, order = _non_iid_frame(records)
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(order) + 2))
    y = {c: i for i, c in enumerate(order)}
    series = [("bn", "test_error", False), ("bn", "test_error_train_mode", True),
              ("syncbn", "test_error", False), ("gn", "test_error", False)]
    series = [s for s in series if s[0] in set(df["norm"])]
    for k, (norm, col, hollow) in enumerate(series):
        d = df[df["norm"] == norm].groupby("condition")[col].agg(["mean", "std"]).dropna(how="all")
        off = (k - (len(series) - 1) / 2) * 0.18
        ax.errorbar(d["mean"], [y[c] + off for c in d.index], xerr=d["std"].fillna(0), fmt="o",
                    color=NORM_COLORS[norm], mfc="white" if hollow else None, capsize=3,
                    label=NORM_LABELS[norm] + (" (train-mode statistics on test)" if hollow
                                               else " (eval mode)"))
        runs = df[(df["norm"] == norm) & df[col].notna()]
        ax.plot(runs[col], [y[c] + off for c in runs["condition"]], ".", color="k", alpha=0.4,
                ms=4, label="single seeds" if k == 0 else None)
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels(order)
    ax.invert_yaxis()
    label_axes(ax, xlabel="test error (%; guessing gives 90 %)",
               title="batch 32 (one SGD step on all 32): how its images are grouped", grid="x",
               legend=dict(fontsize=8, loc="best"))
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
