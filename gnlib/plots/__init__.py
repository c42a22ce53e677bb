"""Every gnlib figure, drawn from data passed in (never by training).

* :mod:`gnlib.plots.style`: colours, labels, saving;
* :mod:`gnlib.plots.speed`: bar charts of Group Norm fwd+bwd timings (notebook 03);
"""
from .speed import plot_fwd_bwd_times
from .style import NORM_COLORS, NORM_LABELS, save_figure

__all__ = ["NORM_COLORS", "NORM_LABELS", "plot_fwd_bwd_times", "save_figure"]
