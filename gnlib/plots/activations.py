r"""The batch statistics of real activations (the picture behind the paper's Figure 1).

:func:`plot_batch_statistics` draws one :class:`gnlib.batch_stats.SliceView` (passed in; this
module computes nothing): the histograms of the slice means :math:`\mu_B` and slice variances
:math:`\sigma_B^2` of one channel over many slices, with the population's :math:`\mu,
\sigma^2` and BN's running averages as lines, and one image's channel normalized by BN with
its slice's statistics next to the same channel normalized by GN. It can redraw into the
figure it drew before (:class:`BatchStatisticsFigure`: a widget's redraw only moves the
artists).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .style import NORM_COLORS, label_axes

__all__ = ["BatchStatisticsFigure", "plot_batch_statistics"]

POPULATION = "k"
RUNNING = "#ff7f0e"


def _edges(values: np.ndarray, *marks: float, bins: int = 40) -> np.ndarray:
    lo = float(min(values.min(), *marks))
    hi = float(max(values.max(), *marks))
    pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi), 1e-3) * 0.05
    return np.linspace(lo - pad, hi + pad, bins + 1)


class BatchStatisticsFigure:
    """The figure, built once; :meth:`update` moves its artists to a new view (no axes are
    rebuilt, so a redraw only re-renders)."""

    def __init__(self, figsize: tuple[float, float] = (12, 3.8), dpi: int = 80,
                 fig: Figure | None = None):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        if fig is None:                 # a bare Figure: widget callbacks never touch pyplot
            fig = Figure(figsize=figsize, dpi=dpi)
            FigureCanvasAgg(fig)        # one canvas: its text caches stay warm across redraws
        self.fig = fig
        grid = self.fig.add_gridspec(1, 5, width_ratios=(1.3, 1.3, 0.75, 0.75, 0.05),
                                     wspace=0.35, left=0.05, right=0.96, top=0.76, bottom=0.26)
        self.axes = [self.fig.add_subplot(grid[i]) for i in range(5)]
        ax_m, ax_v, ax_bn, ax_gn, cax = self.axes
        color = NORM_COLORS["bn"]
        self.hist, self.lines = [], []
        for ax in (ax_m, ax_v):
            self.hist.append(ax.stairs(np.zeros(1), np.arange(2.0), fill=True, color=color,
                                       alpha=0.75, label="slices (count)"))
            self.lines.append([
                ax.axvline(0, color=POPULATION, lw=2, label="population (all test images)"),
                ax.axvline(0, color=RUNNING, lw=1.5, ls="--",
                           label="BN's running average (eval mode)"),
                ax.axvline(0, color=color, lw=1.2, ls=":", label="mean over the slices")])
        label_axes(ax_m, xlabel="slice mean $\\mu_B$ (activation units)", ylabel="slices",
                   grid="y")
        label_axes(ax_v, xlabel="slice variance $\\sigma_B^2$ (activation units²)",
                   ylabel="slices", grid="y")
        self.images = []
        for ax in (ax_bn, ax_gn):
            self.images.append(ax.imshow(np.zeros((2, 2)), cmap="RdBu_r", vmin=-1, vmax=1,
                                         interpolation="nearest"))
            ax.set_xticks([])
            ax.set_yticks([])
        self.fig.colorbar(self.images[0], cax=cax).set_label("normalized value", fontsize=8)
        self.fig.legend(*ax_m.get_legend_handles_labels(), loc="lower left", ncol=4,
                        fontsize=8, frameon=False, bbox_to_anchor=(0.04, 0.0))

    def update(self, view: Any) -> Figure:
        """Show ``view`` (a :class:`~gnlib.batch_stats.SliceView`); returns the figure."""
        s = view.slice_size
        images = f"{s} image{'s' * (s > 1)}"
        data = ((view.slice_means, view.population_mean, view.running_mean),
                (view.slice_vars, view.population_var, view.running_var))
        for ax, hist, lines, (values, pop, run) in zip(self.axes, self.hist, self.lines, data):
            edges = _edges(values, pop, run)
            counts, _ = np.histogram(values, edges)
            hist.set_data(counts, edges)
            for line, x in zip(lines, (pop, run, float(values.mean()))):
                line.set_xdata([x, x])
            ax.set_xlim(edges[0], edges[-1])
            ax.set_ylim(0, counts.max() * 1.1)
        self.axes[0].set_title(f"slice means, {images} per slice\nspread (sd) = "
                               f"{view.mean_spread:.3f} x the population's sd", fontsize=9)
        self.axes[1].set_title(f"slice variances, {images} per slice\non average "
                               f"{view.var_ratio:.3f} x the population's variance", fontsize=9)
        limit = float(max(np.abs(view.bn_example).max(), np.abs(view.gn_example).max(), 1e-6))
        for ax, im, img, title in zip(self.axes[2:4], self.images,
                                      (view.bn_example, view.gn_example),
                                      (f"BN with its slice's statistics\n({images})",
                                       f"GN (G = {view.groups}),\nthis image only")):
            im.set_data(img)
            im.set_extent((-0.5, img.shape[1] - 0.5, img.shape[0] - 0.5, -0.5))
            im.set_clim(-limit, limit)
            ax.set_title(title, fontsize=9)
        self.fig.suptitle(f"BN layer {view.layer}, channel {view.channel}: the statistics BN "
                          f"trains with over slices of {images} ({len(view.slice_means)} slices "
                          f"of {view.n_images} test images); example: test image "
                          f"{view.example_index}", fontsize=10)
        return self.fig


def plot_batch_statistics(view: Any) -> Figure:
    """A new (pyplot) figure of ``view`` (a :class:`~gnlib.batch_stats.SliceView`): the
    histograms of the slice means and variances with the population's and the running
    statistics as lines, and the example image's channel normalized by BN (its slice) and
    by GN. Notebooks: ``fig = plot_batch_statistics(view)``."""
    import matplotlib.pyplot as plt

    return BatchStatisticsFigure(fig=plt.figure(figsize=(12, 3.8), dpi=80)).update(view)
