r"""Bar charts of forward+backward timings of Group Norm implementations (notebook 03).

Input: ``shape -> {implementation: median seconds}`` as :func:`gnlib.bench.median_times`
returns per shape. Left panel: milliseconds (log axis, since shapes differ 100x); right panel:
each implementation's time divided by torch's native kernel, :math:`t / t_\text{native}`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

__all__ = ["IMPL_COLORS", "IMPL_LABELS", "plot_fwd_bwd_times"]

#: One color per implementation: gnlib's in the Group Norm red of every other figure, the
#: others outside :data:`gnlib.plots.NORM_COLORS` so that no bar reads as "Batch Norm" or
#: "no norm" (native black, reference light grey, compiled teal).
IMPL_COLORS = {"reference": "#c7c7c7", "gnlib": "#d62728", "native": "#000000",
               "compiled": "#17becf"}
IMPL_LABELS = {"reference": "reference (autograd)", "gnlib": "gnlib (hand-derived backward)",
               "native": "torch native kernel", "compiled": "torch.compile(reference)"}


def _grouped_bars(ax, labels: Sequence[str], values: Mapping[str, Sequence[float]],
                  fmt: str) -> None:
    """One group of bars per shape, one bar per implementation, value written on top."""
    names = list(values)
    width = 0.8 / len(names)
    xs = np.arange(len(labels))
    for j, name in enumerate(names):
        bars = ax.bar(xs + (j - (len(names) - 1) / 2) * width, values[name], width,
                      color=IMPL_COLORS.get(name), edgecolor="black", linewidth=0.5,
                      label=IMPL_LABELS.get(name, name))
        ax.bar_label(bars, labels=[fmt.format(v) for v in values[name]], fontsize=6, padding=1)
    ax.set_xticks(xs, labels, rotation=20, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_xlabel("input shape (N, C, H, W)")


def plot_fwd_bwd_times(
    medians: Mapping[tuple[int, ...], Mapping[str, float]],
    groups: int = 32,
    threads: int = 1,
    source: str | None = None,
) -> Figure:
    """Two panels: median fwd+bwd time in ms (log scale) and the ratio to torch native.

    ``source`` (e.g. the results file, its date and commit) is appended to the title.
    """
    labels = ["(" + ",".join(map(str, s)) + ")" for s in medians]
    names = list(next(iter(medians.values())))
    ms = {n: [1e3 * t[n] for t in medians.values()] for n in names}
    ratio = {n: [t[n] / t["native"] for t in medians.values()] for n in names}
    fig, (ax_t, ax_r) = plt.subplots(1, 2, figsize=(13, 4.8))
    _grouped_bars(ax_t, labels, ms, "{:.3g}")
    ax_t.set_yscale("log")
    ax_t.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax_t.yaxis.set_minor_formatter(NullFormatter())
    ax_t.margins(y=0.15)
    ax_t.set_ylabel("forward + backward time (ms, log scale)")
    ax_t.set_title("Median time per call")
    _grouped_bars(ax_r, labels, ratio, "{:.1f}x")
    ax_r.axhline(1.0, color="black", lw=0.8, ls="--")
    ax_r.set_ylabel("time / time of torch native (x)")
    ax_r.set_title("Relative to torch's native kernel")
    ax_r.set_ylim(0, max(max(v) for v in ratio.values()) * 1.15)
    handles, texts = ax_r.get_legend_handles_labels()
    fig.legend(handles, texts, loc="lower center", ncol=len(names), frameon=False)
    title = (f"Group Norm forward + backward, G={groups}, float32, CPU, "
             f"{threads} thread{'s' if threads > 1 else ''}")
    fig.suptitle(title + (f"\n{source}" if source else ""))
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig
