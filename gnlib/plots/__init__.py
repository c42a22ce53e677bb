"""Every gnlib figure, drawn from data passed in (never by training).

* :mod:`gnlib.plots.style`: colours, labels, saving;
"""
from .style import NORM_COLORS, NORM_LABELS, save_figure

__all__ = ["NORM_COLORS", "NORM_LABELS", "save_figure"]
