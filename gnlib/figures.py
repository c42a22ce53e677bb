"""Redraw ``figures/`` from ``results/`` (no training): ``python -m gnlib plot ...``.

Loads an experiment's records (:mod:`gnlib.experiments`: the grid's runs, including reused
ones), draws them with :mod:`gnlib.plots` and saves each figure as ``.png`` and ``.svg``.
``sets`` draws the README's picture of the four sets (notebook 02's first cube), from no data.
"""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt

from .experiments import load_experiment, load_results, results_path
from .paper import PAPER
from .plots.cubes import sets_figure
from .plots import (plot_batch_size, plot_bn_drift, plot_bn_train_test, plot_curves,
                    plot_figure1, plot_figure1_diagnostics, plot_groups, plot_non_iid,
                    plot_small_batch, save_figure)

__all__ = ["FIGURES_DIR", "PLOTTED", "draw", "plot_experiment"]

FIGURES_DIR = Path(__file__).resolve().parent.parent / "figures"
#: The experiments ``plot`` knows, in the order ``plot all`` draws them.
PLOTTED = ("figure1", "batch-size", "curves", "groups", "small-batch", "non-iid", "sets")


def draw(experiment: str, recs: list[dict]) -> dict:
    """``{figure name: Figure}`` of one experiment's records."""
    if experiment == "figure1":
        return {"figure1": plot_figure1(recs, paper=PAPER["batch_size"]),
                "figure1_diagnostics": plot_figure1_diagnostics(recs)}
    if experiment == "batch-size":
        return {"batch_size": plot_batch_size(recs, paper=PAPER["batch_size"]),
                "bn_train_test": plot_bn_train_test(recs)}
    if experiment == "curves":
        return {"curves_batch32": plot_curves(recs, 32)}
    if experiment == "small-batch":
        return {"small_batch": plot_small_batch(recs, paper=PAPER["batch4"])}
    if experiment == "non-iid":
        return {"non_iid": plot_non_iid(recs), "bn_drift": plot_bn_drift(recs)}
    if experiment == "groups":
        return {"groups": plot_groups(recs, paper=PAPER)}
    raise ValueError(f"unknown experiment {experiment!r}; choose one of {PLOTTED}")


def plot_experiment(experiment: str, preset: str = "full",
                    results_dir: str | os.PathLike | None = None,
                    figures_dir: str | os.PathLike | None = None) -> list[Path]:
    """Redraw the figures of ``experiment`` from its results file; returns written paths
    (``<name>.png`` / ``.svg``, with ``_<preset>`` unless the preset is ``full``)."""
    if experiment == "sets":      # notebook 02's (N, C, H*W) = (4, 8, 6) map, pixel (1, 2, 3), G = 2
        fig = sets_figure((4, 8, 6), (1, 2, 3), groups=2)
        written = save_figure(fig, Path(figures_dir or FIGURES_DIR) / "normalization_sets")
        plt.close(fig)
        return written
    if experiment in ("small-batch", "non-iid", "figure1"):
        recs = load_experiment(experiment, preset, results_dir=results_dir)
    else:
        recs = load_results(results_path(experiment, results_dir), preset)
    if not recs:
        raise FileNotFoundError(f"no {preset!r} records for {experiment!r} in "
                                f"{results_path(experiment, results_dir)}; run "
                                f"`python -m gnlib reproduce {experiment} --preset {preset}`")
    written: list[Path] = []
    suffix = "" if preset == "full" else f"_{preset}"
    for name, fig in draw(experiment, recs).items():
        written += save_figure(fig, Path(figures_dir or FIGURES_DIR) / f"{name}{suffix}",
                               formats=("png", "svg"))
        plt.close(fig)
    return written
