"""Figures of notebook 01: the variance estimator, eps, and BN's dependence on the batch."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .style import NORM_COLORS, NORM_LABELS, label_axes

_MARKERS = ("o", "s", "D", "^")
_EPS_COLOR = "#e377c2"

__all__ = ["plot_batch_dependence", "plot_bn_deviation_laws", "plot_eps_effect",
           "plot_eps_on_group", "plot_unbiased_factor", "x_hat_with_eps"]


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


def x_hat_with_eps(values: Sequence[float], eps: float) -> np.ndarray:
    r""":math:`\hat x_k = (x_k-\mu)/\sqrt{\sigma^2+\epsilon}` of one set (biased variance)."""
    v = np.asarray(values, dtype=float)
    return (v - v.mean()) / np.sqrt(v.var() + eps)


def plot_eps_on_group(values: Sequence[float], eps: float,
                      eps_range: tuple[float, float] = (1e-8, 1.0)) -> Figure:
    r"""A near-constant set at ``eps``: its :math:`\hat x` next to eps = 0 (left), and the std
    of :math:`\hat x`, :math:`\sigma/\sqrt{\sigma^2+\epsilon}`, against eps (right)."""
    v = np.asarray(values, dtype=float)
    var, k = v.var(), np.arange(len(v))
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 3.6), width_ratios=(1.1, 1.0))
    unit = x_hat_with_eps(v, 0.0)
    left.bar(k - 0.2, unit, width=0.4, color="0.7", label=r"$\epsilon$ = 0 (unit variance)")
    left.bar(k + 0.2, x_hat_with_eps(v, eps), width=0.4, color=_EPS_COLOR,
             label=rf"$\epsilon$ = {eps:.0e}")
    left.axhline(0, color="black", lw=0.8)
    top = np.abs(unit).max()
    left.set_ylim(-1.2 * top, 1.9 * top)  # room for the legend above the bars
    label_axes(left, "value $k$ of the set $S_i$", r"$\hat{x}_k$ (units of std)",
               rf"$\hat x$ of a near-constant set ($\sigma_i^2$ = {var:.1e})", grid="y",
               legend=dict(loc="upper center", fontsize=8, ncol=2))
    e = np.geomspace(*eps_range, 300)
    right.plot(e, np.sqrt(var / (var + e)), color="black",
               label=r"$\sigma_i/\sqrt{\sigma_i^2+\epsilon}$")
    right.axvline(var, ls=":", color="0.4", label=r"$\epsilon = \sigma_i^2$")
    right.plot([eps], [np.sqrt(var / (var + eps))], "o", ms=9, color=_EPS_COLOR,
               label=rf"$\epsilon$ = {eps:.0e}: std {np.sqrt(var / (var + eps)):.2f}")
    right.set_xscale("log")
    label_axes(right, r"$\epsilon$ (log scale)", r"std of $\hat{x}$ (1 = fully normalized)",
               r"$\epsilon \gg \sigma_i^2$ shrinks $\hat x$ towards 0",
               legend=dict(loc="lower left", fontsize=8))
    fig.tight_layout()
    return fig


def plot_bn_deviation_laws(batch_sizes: Sequence[int], measured: Mapping[str, Sequence[float]],
                           laws: Mapping[str, Sequence[float]]) -> Figure:
    """BN's deviation (``measured[label]``) and candidate laws, each divided by its value at
    the smallest batch: which law does the measurement follow?"""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for j, (label, values) in enumerate(measured.items()):
        v = np.asarray(values, dtype=float)
        ax.plot(batch_sizes, v / v[0], _MARKERS[j % len(_MARKERS)], ms=9 - 2 * j,
                color=NORM_COLORS["bn"], alpha=1.0 - 0.45 * j, label=f"BN, measured ({label})")
    for (label, values), ls in zip(laws.items(), ("--", "-", ":")):
        v = np.asarray(values, dtype=float)
        ax.plot(batch_sizes, v / v[0], ls, color="black", lw=1.2, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(batch_sizes), [str(b) for b in batch_sizes])
    label_axes(ax, "batch size N (log scale)", f"deviation / deviation at N={batch_sizes[0]}",
               "BN's deviation: only the N-1 batch mates are redrawn",
               legend=dict(fontsize=8))
    fig.tight_layout()
    return fig
