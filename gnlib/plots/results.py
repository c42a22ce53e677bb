"""Figures of the training experiments, drawn from results records (never by training).

* :func:`plot_batch_size`: test error vs batch size per norm, mean +- std over seeds (Figure 1);
* :func:`plot_bn_train_test`: BN's eval-mode vs train-mode (batch statistics) test error;
* :func:`plot_curves`: train and test error vs epoch per norm at one batch size (Figure 4);
* :func:`plot_groups`: error vs G and vs channels per group as the change from the best
  setting, ours next to the paper (Table 3); :func:`group_sweep` is its table;
* :func:`plot_group_costs`: the two costs behind GN's extremes (notebook 06);
* :func:`plot_small_batch`: BN / Batch Renorm / GN / GN+WS at batch 4 and 2 (notebook 07);
* :func:`plot_non_iid`: BN vs GN when the batch or each device's slice is not i.i.d.;
* :func:`plot_bn_drift`: how far BN's running statistics are from the data's, per epoch;
* :func:`plot_statistics_deviation`: how far the batch statistics BN trains with are from them;
"""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from .style import NORM_COLORS, NORM_LABELS, label_axes

__all__ = ["group_sweep", "plot_batch_size", "plot_bn_drift", "plot_bn_train_test", "plot_curves",
           "plot_group_costs", "plot_groups", "plot_non_iid", "plot_renorm", "plot_small_batch",
           "plot_statistics_deviation"]
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


GROUP_ROWS = (("groups", "number of groups G", "G"),
              ("channels_per_group", "channels per group C/G", "C/G"))


def group_sweep(records: list[dict], column: str):
    """One row of Table 3 measured: per setting of ``column`` (``"groups"`` or
    ``"channels_per_group"``) the mean test error over usable seeds and the seed-paired
    difference from the row's best setting (:class:`gnlib.analysis.Paired`; ``None`` for the
    best itself). A DataFrame indexed by the setting, largest first."""
    import pandas as pd

    from ..analysis import mean_se, paired_difference, runs_frame

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
    out.index.name = column
    return out


def plot_groups(records: list[dict], paper: dict | None = None,
                noise_floor: float | None = None) -> Figure:
    """GN's test error vs the number of groups G (left) and vs channels per group C/G (right),
    as the **change from the best setting of the row**, in points, on one shared axis: ours
    (Fashion-MNIST: seed-paired difference from our best setting, mean ± SE) next to the
    paper's Table 3 (``paper["groups"]`` / ``paper["channels_per_group"]`` minus the best of
    its row). ``noise_floor`` (points) shades the band within which runs of the same model
    from different commits already differ."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, (col, xlabel, short) in zip(axes, GROUP_ROWS):
        sweep = group_sweep(records, col)
        ticks = set(sweep.index)
        if noise_floor:
            ax.axhspan(0, noise_floor, color="0.85", zorder=0,
                       label=f"noise floor between commits ({noise_floor:.2f})")
        if len(sweep):
            best = int(sweep["mean"].idxmin())
            diff = [0.0 if p is None else p.mean for p in sweep["vs_best"]]
            err = [0.0 if p is None or p.se != p.se else p.se for p in sweep["vs_best"]]
            ax.errorbar(sweep.index, diff, yerr=err, fmt="o-", capsize=3, color=NORM_COLORS["gn"],
                        label=f"ours, Fashion-MNIST: minus {short} = {best} "
                              f"({sweep.loc[best, 'mean']:.2f} %), mean ± SE over seeds")
        if paper and col in paper:
            row = paper[col]
            ks = sorted(row)
            best_k = min(row, key=row.get)
            ax.plot(ks, [row[k] - row[best_k] for k in ks], "s--", color="k", alpha=0.6,
                    label=f"paper, ImageNet: minus {short} = {best_k} ({row[best_k]:.1f} %)")
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
                   legend=dict(fontsize=8, loc="upper center"))
    low, high = axes[0].get_ylim()
    axes[0].set_ylim(min(low, -0.3), high + 0.45 * (high - min(low, -0.3)))  # room for legends
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
