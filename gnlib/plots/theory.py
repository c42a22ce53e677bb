"""Figures of notebook 01: the variance estimator, eps, and BN's dependence on the batch."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .style import NORM_COLORS, NORM_LABELS

_MARKERS = ("o", "s", "D", "^")

__all__ = ["plot_batch_dependence", "plot_eps_effect", "plot_unbiased_factor"]


def plot_unbiased_factor(set_sizes: Mapping[str, int], max_size: int = 64) -> Figure:
    r"""Ratio :math:`\hat x_\text{unbiased} / \hat x_\text{biased} = \sqrt{(m-1)/m}` (eps = 0)
    against :math:`m = |S_i|`, with each norm's set size marked."""
    m = np.geomspace(2, max_size, 200)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(m, np.sqrt((m - 1) / m), color="black", lw=1.5, label=r"$\sqrt{(m-1)/m}$")
    for j, (kind, size) in enumerate(set_sizes.items()):  # shrinking markers: overlaps stay visible
        ax.plot([size], [np.sqrt((size - 1) / size)], _MARKERS[j % len(_MARKERS)],
                ms=13 - 2.5 * j, color=NORM_COLORS[kind], label=f"{NORM_LABELS[kind]}: $|S_i|$ = {size}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel(r"set size $m = |S_i|$ (number of values, log scale)")
    ax.set_ylabel(r"$\hat{x}$ unbiased / $\hat{x}$ biased")
    ax.set_title("Dividing by m-1 instead of m matters only for small sets")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_eps_effect(eps_values: Sequence[float] = (1e-5, 1e-3, 1e-1)) -> Figure:
    r"""Standard deviation of :math:`\hat x` against the input's :math:`\sigma`:
    :math:`\sigma/\sqrt{\sigma^2+\epsilon}`. Sets with :math:`\sigma^2 \lesssim \epsilon` are
    not blown up to unit variance."""
    sigma = np.logspace(-4, 1, 300)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for eps, color in zip(eps_values, plt.cm.viridis(np.linspace(0, 0.85, len(eps_values)))):
        ax.plot(sigma, sigma / np.sqrt(sigma**2 + eps), color=color, label=rf"$\epsilon$ = {eps:g}")
        ax.axvline(np.sqrt(eps), color=color, ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel(r"standard deviation $\sigma_i$ of the values in $S_i$ (log scale)")
    ax.set_ylabel(r"std of $\hat{x}$ after normalizing")
    ax.set_title(r"$\epsilon$ keeps near-constant sets from being amplified (dotted: $\sigma=\sqrt{\epsilon}$)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def plot_batch_dependence(batch_sizes: Sequence[int], change: Mapping[str, Sequence[float]]) -> Figure:
    """How much one sample's normalized output changes when its batch mates change,
    per norm and batch size (``change[kind][j]`` for ``batch_sizes[j]``)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for j, (kind, values) in enumerate(change.items()):  # shrinking markers: overlaps stay visible
        ax.plot(batch_sizes, values, _MARKERS[j % len(_MARKERS)] + "-", ms=11 - 2 * j,
                color=NORM_COLORS[kind], label=NORM_LABELS[kind])
    flat = [NORM_LABELS[k] for k, v in change.items() if max(v) == 0]
    if flat:  # lines on top of each other at 0: say so
        ax.annotate(", ".join(flat) + ": exactly 0", (0.02, 0.06), xycoords="axes fraction")
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(batch_sizes), [str(b) for b in batch_sizes])
    ax.set_xlabel("batch size N (log scale)")
    ax.set_ylabel("mean |change| of sample 0's $\\hat{x}$\n(units of std)")
    ax.set_title("Only BN's output depends on the other samples in the batch")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig
