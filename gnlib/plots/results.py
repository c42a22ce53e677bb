"""Figures of the short-budget batch-size grid and of training curves, drawn from results
records (never by training).

* :func:`plot_batch_size`: test error vs batch size per norm, mean +- std over seeds (Figure 1);
* :func:`plot_bn_train_test`: BN's eval-mode vs train-mode (batch statistics) test error;
* :func:`plot_curves`: train and test error vs epoch per norm at one batch size (Figure 4);

The group ablation's figures are in :mod:`gnlib.plots.groups`, those beyond the paper in
:mod:`gnlib.plots.beyond`.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from .style import NORM_COLORS, NORM_LABELS

__all__ = ["ORDER", "plot_batch_size", "plot_bn_train_test", "plot_curves"]
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
    budgets = {(r["config"]["train_size"], r["config"]["epochs"]) for r in records}
    budget = "{:,} images x {} epochs, ".format(*budgets.pop()) if len(budgets) == 1 else ""
    ax.set_title(f"Fashion-MNIST (ours): {budget}mean ± std over up to {n_seeds} seeds")
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
