"""Every gnlib figure, drawn from data passed in (never by training).

* :mod:`gnlib.plots.style`: colours, labels, saving;
* :mod:`gnlib.plots.theory`: the variance estimator, eps, BN's batch dependence (notebook 01);
* :mod:`gnlib.plots.cubes`: the sets S_i as voxel cubes, GN's group membership (notebook 02);
* :mod:`gnlib.plots.speed`: bar charts of Group Norm fwd+bwd timings (notebook 03);
* :mod:`gnlib.plots.figure1`: the paper's Figure 1 at the end of a full schedule (notebook 05, README);
* :mod:`gnlib.plots.activations`: the slice statistics of real activations, BN vs GN on one
  image (notebook 05's batch-statistics widget);
* :mod:`gnlib.plots.results`: the short-budget batch-size grid, training curves (notebooks 04, 05);
* :mod:`gnlib.plots.groups`: the group ablation (notebook 06);
* :mod:`gnlib.plots.beyond`: small batches, non-i.i.d. batches, BN drift, Batch Renorm (notebook 07).

Plots read records through :mod:`gnlib.analysis`; they never import training code.
:mod:`gnlib.figures` loads the results files and writes ``figures/``.
"""
from .activations import BatchStatisticsFigure, plot_batch_statistics
from .beyond import (plot_bn_drift, plot_non_iid, plot_renorm, plot_small_batch,
                     plot_statistics_deviation)
from .cubes import draw_cube, draw_membership, group_membership_figure, sets_figure
from .figure1 import plot_figure1, plot_figure1_curves, plot_figure1_diagnostics, plot_schedules
from .groups import group_sweep, plot_group_costs, plot_groups
from .results import plot_batch_size, plot_bn_train_test, plot_curves
from .speed import plot_fwd_bwd_times
from .style import NORM_COLORS, NORM_LABELS, save_figure

__all__ = [
    "BatchStatisticsFigure",
    "NORM_COLORS",
    "NORM_LABELS",
    "draw_cube",
    "draw_membership",
    "group_membership_figure",
    "plot_batch_size",
    "plot_batch_statistics",
    "plot_bn_drift",
    "plot_bn_train_test",
    "plot_curves",
    "plot_figure1",
    "plot_figure1_curves",
    "plot_figure1_diagnostics",
    "plot_schedules",
    "plot_fwd_bwd_times",
    "group_sweep",
    "plot_group_costs",
    "plot_groups",
    "plot_renorm",
    "plot_non_iid",
    "plot_small_batch",
    "plot_statistics_deviation",
    "save_figure",
    "sets_figure",
]
