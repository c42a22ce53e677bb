"""ipywidgets controls wired to gnlib's plots and computations, one module per notebook.

* :mod:`~gnlib.widgets.common`: :func:`figure_png`, :func:`figure_slider` (notebooks 05-07);
* :mod:`~gnlib.widgets.theory`: the eps slider (notebook 01);
* :mod:`~gnlib.widgets.sets`: the S_i explorer and the rotatable cubes (notebook 02);
* :mod:`~gnlib.widgets.activations`: the batch statistics of real activations (notebook 05);
* :mod:`~gnlib.widgets.renorm`: Batch Renorm's r_max / d_max sliders (notebook 07).

The train-now panel of notebook 04 is :mod:`gnlib.live` (it trains). Widgets never import
training code; the logic behind each one is callable and tested without a browser.
"""
from .activations import BATCH_STAT_SLICES, batch_statistics_explorer
from .common import canvas_png, figure_png, figure_slider
from .renorm import RENORM_SCALES, renorm_example, renorm_explorer, renorm_readout
from .sets import (KIND_OPTIONS, SetsExplorer, explorer_controls, rotatable_figure,
                   rotatable_sets, sets_explorer)
from .theory import eps_explorer, eps_readout

__all__ = ["BATCH_STAT_SLICES", "KIND_OPTIONS", "RENORM_SCALES", "SetsExplorer",
           "batch_statistics_explorer", "canvas_png", "eps_explorer", "eps_readout", "explorer_controls",
           "figure_png", "figure_slider", "renorm_example", "renorm_explorer", "renorm_readout",
           "rotatable_figure", "rotatable_sets", "sets_explorer"]
