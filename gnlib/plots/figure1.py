"""Figure 1 of the paper on Fashion-MNIST: test error against the images per device whose
statistics BN normalizes with, drawn from ``results/figure1.jsonl`` records.

* :func:`plot_figure1`: BN per slice size (mean ± SE, seeds as dots), GN / LN / IN as flat
  bands (their forward ignores the split), and the paper's curve on its own axis;
* :func:`plot_figure1_diagnostics`: where BN's gap comes from: its test error with running
  averages, with PreciseBN and with train-mode statistics, and per layer how the slice
  variance and the running variance compare with the population's;
* :func:`plot_figure1_curves`: training and test error per epoch, BN at one slice size vs GN;
* :func:`plot_schedules`: the same seeds trained for two budgets (10 and 20 epochs): the test
  error of each condition at both, and how much each budget's last epoch still changed it.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from ..analysis import LAST_EPOCH_CRITERION, mean_se, runs_frame, schedule_pairs
from .style import NORM_COLORS, NORM_LABELS, label_axes

__all__ = ["plot_figure1", "plot_figure1_curves", "plot_figure1_diagnostics", "plot_schedules"]


def _slice_axis(ax, slices, label: str = "images per device (BN statistics over them; log scale)") -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(slices))
    ax.set_xticklabels([str(s) for s in sorted(slices)])
    ax.set_xlim(max(slices) * 1.4, min(slices) / 1.4)      # the paper's orientation: 32 -> 1
    ax.set_xlabel(label)


def _zoom(ax, values, high: float) -> float:
    """Y limits that keep the trained runs readable; returns the top. Values above
    ``max(high, 1.6 x the lowest)`` are drawn at the top edge with an arrow and their number."""
    lo = min(values)
    top = min(max(values), max(high, 1.6 * lo))
    ax.set_ylim(lo - 0.15 * (top - lo + 0.5), top + 0.25 * (top - lo + 0.5))
    return ax.get_ylim()[1]


def _off_scale(ax, x: float, y: float, top: float, color: str) -> None:
    """Mark a value above the axis at its top edge: an arrow up, and the value beside it."""
    span = top - ax.get_ylim()[0]
    ax.annotate("", xy=(x, top), xytext=(x, top - 0.12 * span),
                arrowprops=dict(arrowstyle="->", color=color))
    ax.text(x * 1.12, top - 0.06 * span, f"{y:.1f} %\n(off scale)", ha="right", va="center",
            fontsize=8, color=color)


def plot_figure1(records: list[dict], paper: dict | None = None, zoom_above: float = 15.0) -> Figure:
    """Test error (%) vs images per device: BN with seed dots and mean ± SE; GN, LN, IN as
    bands (mean ± SE) over the whole axis; runs that did not train as grey crosses (left out
    of the means). Points above ``zoom_above`` % are marked at the top edge with their value.
    ``paper``: ``{norm: {batch: error}}`` (typed from the paper) on a second panel."""
    df = runs_frame(records)
    ncols = 2 if paper else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.2 * ncols, 4.4), squeeze=False)
    ax = axes[0, 0]
    slices = sorted(df["slice"].unique())
    ok = df[df["usable"]]
    top = _zoom(ax, df["test_error"].dropna().tolist() or [0.0], zoom_above)
    for norm, ls, z in (("ln", "--", 1.5), ("in", ":", 1.6), ("gn", "-", 1.7)):  # GN on top
        m, se, n = mean_se(ok[ok["norm"] == norm]["test_error"])
        if n:
            ax.axhspan(m - (se if se == se else 0), m + (se if se == se else 0),
                       color=NORM_COLORS[norm], alpha=0.2, zorder=z - 0.5)
            spread = f"mean ± SE, {n} seeds" if n > 1 else "1 seed"
            ax.axhline(m, color=NORM_COLORS[norm], lw=2 if norm == "gn" else 1.5, ls=ls, zorder=z,
                       label=f"{NORM_LABELS[norm]} ({spread})")
    bn = ok[ok["norm"] == "bn"]
    stats = [(s, *mean_se(bn[bn["slice"] == s]["test_error"])) for s in slices]
    stats = [t for t in stats if t[3]]
    xs, ms, ses = [t[0] for t in stats], [t[1] for t in stats], [t[2] for t in stats]
    ax.errorbar(xs, np.minimum(ms, top), yerr=[0 if e != e or m > top else e
                                               for m, e in zip(ms, ses)], fmt="o-",
                capsize=3, color=NORM_COLORS["bn"], label="Batch Norm (mean ± SE)", zorder=3)
    for s, m in zip(xs, ms):
        if m > top:
            _off_scale(ax, s, m, top, NORM_COLORS["bn"])
    dots = bn[bn["test_error"] <= top]
    ax.scatter(dots["slice"] * (1 + 0.06 * (dots["seed"] - 1)), dots["test_error"], s=12,
               color=NORM_COLORS["bn"], alpha=0.5, label="BN, one seed each", zorder=2)
    bad = df[~df["usable"]]
    if len(bad):
        ax.scatter(bad["slice"], np.minimum(bad["test_error"].fillna(top), top), marker="x",
                   color="grey", label="did not train (left out)", zorder=4)
    _slice_axis(ax, slices)
    n_seeds = int(ok.groupby(["norm", "slice"]).size().max()) if len(ok) else 0
    label_axes(ax, ylabel="test error (%)", title=f"Fashion-MNIST (ours), total batch 32, up to "
               f"{n_seeds} seeds", legend=dict(fontsize=8, loc="upper left"))
    if paper:
        _paper_panel(axes[0, 1], paper)
    fig.tight_layout()
    return fig


def _paper_panel(ax, paper: dict) -> None:
    for norm, vals in paper.items():
        bs = sorted(vals)
        ax.plot(bs, [vals[b] for b in bs], "o--", color=NORM_COLORS[norm], label=NORM_LABELS[norm])
    _slice_axis(ax, list(next(iter(paper.values()))), "images per GPU (batch size per worker)")
    label_axes(ax, ylabel="ImageNet val error (%)",
               title="paper (typed from Wu & He 2018, ResNet-50)", legend=dict(fontsize=8))


def plot_figure1_diagnostics(records: list[dict], layer_slices=(32, 2, 1)) -> Figure:
    """Left: BN's test error per slice size evaluated three ways (running averages, PreciseBN:
    the plain average of training slices' statistics, train-mode statistics of test slices of
    the same size), mean over
    usable seeds, log scale. Right: per BN layer, the slice variance and the running variance
    as fractions of the population variance of the layer's eval-mode input, for
    ``layer_slices`` (seed 0 or the first usable seed)."""
    df = runs_frame(records)
    bn = df[(df["norm"] == "bn") & df["usable"]]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.4))
    slices = sorted(bn["slice"].unique())
    for col, label, mk in (("test_error", "running averages (EMA, eval mode)", "o-"),
                           ("test_error_precise_bn", "PreciseBN (plain average of training slices' statistics)",
                            "s--"),
                           ("test_error_train_mode", "train-mode statistics of test slices", "^:")):
        ys = [mean_se(bn[bn["slice"] == s][col])[0] for s in slices]
        ax.plot(slices, ys, mk, color=NORM_COLORS["bn"], alpha=1 if mk == "o-" else 0.7, label=label)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    _slice_axis(ax, slices)
    label_axes(ax, ylabel="test error (%, log scale)", title="Batch Norm: one network, three "
               "ways to normalize at test time", legend=dict(fontsize=8))
    _layer_panel(ax2, [r for r in records if r["config"]["norm"] == "bn"], layer_slices)
    fig.tight_layout()
    return fig


def _layer_panel(ax, records: list[dict], layer_slices) -> None:
    cmap = plt.get_cmap("viridis")
    for i, s in enumerate(layer_slices):
        recs = sorted((r for r in records if "bn_layers" in r and not r.get("did_not_train")
                       and r["config"]["batch_size"] // r["config"]["devices"] == s),
                      key=lambda r: r["config"]["seed"])
        if not recs:
            continue
        rep, color = recs[0]["bn_layers"], cmap(i / max(len(layer_slices) - 1, 1))
        layers = np.arange(1, len(rep["slice_var_ratio"]) + 1)
        ax.plot(layers, rep["slice_var_ratio"], "o-", color=color,
                label=f"{s} image{'s' * (s > 1)}: slice variance (training)")
        ax.plot(layers, rep["running_var_ratio"], "s--", color=color, alpha=0.7,
                label=f"{s} image{'s' * (s > 1)}: running variance (inference)")
    ax.axhline(1.0, color="grey", lw=1)
    label_axes(ax, xlabel="BN layer (input to output)", ylabel="variance / population variance",
               title="per layer: what BN normalized with, vs the data", legend=dict(fontsize=7))


def plot_figure1_curves(records: list[dict], slice_size: int = 1,
                        references=("gn",)) -> Figure:
    """Training error (train mode: the slices' statistics) and test error (eval mode: running
    averages) per epoch of BN with statistics over ``slice_size`` images, against the
    ``references`` (mean over usable seeds; the band spans the seeds: min to max)."""
    from ..analysis import history_frame

    h = history_frame(records)
    h = h[h["usable"]].assign(slice=lambda d: d["batch_size"] // d["devices"])
    sel = ((h["norm"] == "bn") & (h["slice"] == slice_size)) | h["norm"].isin(references)
    h = h[sel]
    if not len(h):
        raise FileNotFoundError(f"no usable runs of BN over {slice_size} images per device")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, split, what in ((axes[0], "train", "training error (train mode, slice statistics)"),
                            (axes[1], "test", "test error (eval mode, running averages)")):
        for norm in ("bn", *references):
            d = h[(h["split"] == split) & (h["norm"] == norm)].groupby("epoch")["error"]
            if not len(d):
                continue
            m, lo, hi = d.mean(), d.min(), d.max()
            name = f"BN over {slice_size} image{'s' * (slice_size > 1)}" if norm == "bn" else NORM_LABELS[norm]
            ax.plot(m.index, m.values, "o-", ms=3, color=NORM_COLORS[norm], label=name)
            ax.fill_between(m.index, lo.values, hi.values, color=NORM_COLORS[norm], alpha=0.15)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(ScalarFormatter())
        label_axes(ax, xlabel="epoch", ylabel="error (%, log scale)",
                   title=f"{what}\nmean of the seeds; band: min to max", legend=dict(fontsize=8))
    fig.tight_layout()
    return fig


def _condition_name(norm: str, s: int) -> str:
    return f"BN {s}" if norm == "bn" else norm.upper()


def plot_schedules(shorter: list[dict], longer: list[dict], zoom_above: float = 15.0) -> Figure:
    r"""The same seeds at two training budgets, per Figure-1 condition (BN per slice size, GN,
    LN, IN); only seeds usable at both budgets. Left: test error, one line per seed from the
    shorter budget to the longer (conditions above ``zoom_above`` % written at the top edge).
    Right: the last epoch's change of the test error, mean over the seeds (bars) and each seed
    (dots), with the band :math:`\pm` :data:`~gnlib.analysis.LAST_EPOCH_CRITERION` (values
    beyond the axis written at its edge)."""
    both, conds, budgets = schedule_pairs(shorter, longer)
    names = [f"BN {s}" if n == "bn" else n.upper() for n, s in conds]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.4))
    low = both[[c for c in ("final_a", "final_b")]].stack()
    low = low[low <= zoom_above]
    lo, hi = (low.min(), low.max()) if len(low) else (0.0, zoom_above)
    ax.set_ylim(lo - 0.1 * (hi - lo + 0.5), hi + 0.3 * (hi - lo + 0.5))
    for i, (norm, s) in enumerate(conds):
        d = both[(both["norm"] == norm) & (both["slice"] == s)]
        if len(d) and max(d["final_a"].max(), d["final_b"].max()) > zoom_above:
            ax.text(i, ax.get_ylim()[1], f"{d['final_a'].mean():.0f} -> {d['final_b'].mean():.0f} %"
                    "\n(off scale)", ha="center", va="top", fontsize=7, color=NORM_COLORS[norm])
            continue
        for _, r in d.iterrows():
            ax.plot([i - 0.18, i + 0.18], [r["final_a"], r["final_b"]], "-", color=NORM_COLORS[norm],
                    alpha=0.5, lw=1)
            ax.plot([i - 0.18], [r["final_a"]], "o", mfc="white", color=NORM_COLORS[norm], ms=5)
            ax.plot([i + 0.18], [r["final_b"]], "o", color=NORM_COLORS[norm], ms=5)
    ax.plot([], [], "o", mfc="white", color="grey", label=budgets[0])
    ax.plot([], [], "o", color="grey", label=budgets[1])
    ax.set_xticks(range(len(names)), names)
    label_axes(ax, ylabel="test error (%)", grid="y", legend=dict(fontsize=8, loc="upper right"),
               title=f"the same seeds at {budgets[0]} and at {budgets[1]} (one line per seed)")
    _last_epoch_panel(ax2, both, conds, names, budgets)
    fig.tight_layout()
    return fig


def _last_epoch_panel(ax, both, conds, names, budgets, limit: float = 1.0) -> None:
    for off, budget, side, alpha in ((-0.2, budgets[0], "_a", 0.45), (0.2, budgets[1], "_b", 0.9)):
        for i, (norm, s) in enumerate(conds):
            d = both[(both["norm"] == norm) & (both["slice"] == s)]["last_epoch_change" + side]
            if not len(d):
                continue
            ax.bar(i + off, np.clip(d.mean(), -limit, limit), width=0.38, color=NORM_COLORS[norm],
                   alpha=alpha, label=f"{budget} (mean)" if i == 0 else None)
            ax.plot([i + off] * len(d), np.clip(d, -limit, limit), ".", color="black", ms=4)
            if abs(d.mean()) > limit:
                ax.text(i + off, np.sign(d.mean()) * limit * 1.02, f"{d.mean():+.1f}", ha="center",
                        fontsize=7, va="bottom" if d.mean() > 0 else "top")
    ax.axhspan(-LAST_EPOCH_CRITERION, LAST_EPOCH_CRITERION, color="grey", alpha=0.2,
               label=f"criterion |change| < {LAST_EPOCH_CRITERION}")
    ax.axhline(0, color="grey", lw=1)
    ax.set_ylim(-limit * 1.2, limit * 1.2)
    ax.set_xticks(range(len(names)), names)
    label_axes(ax, ylabel="last epoch's change of the test error (points)", grid="y",
               title="did the last epoch still move it? (bars: mean; dots: seeds)",
               legend=dict(fontsize=8, loc="lower left"))
