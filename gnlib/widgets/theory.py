"""Notebook 01: an eps slider that renormalizes a near-constant set."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..plots.theory import plot_eps_on_group, x_hat_with_eps
from .common import figure_slider

__all__ = ["eps_explorer", "eps_readout"]


def eps_readout(values: Sequence[float], eps: float) -> str:
    """The x_hat of ``values`` at ``eps`` and at eps = 0, as preformatted HTML."""
    def row(e: float) -> str:
        x_hat = x_hat_with_eps(values, e)
        return " ".join(f"{v:+.3f}" for v in x_hat) + f"   (std {x_hat.std():.3f})"
    return (f"<pre style='font-size: 12px'>x_hat at eps = {eps:.0e}: {row(eps)}\n"
            f"x_hat at eps = 0:     {row(0.0)}</pre>")


def eps_explorer(values: Sequence[float], eps: float = 1e-5,
                 exponents: Sequence[int] = tuple(range(-8, 1))) -> Any:
    """A slider over eps = 10^e (``exponents``) that recomputes x_hat of the set ``values``:
    :func:`~gnlib.plots.theory.plot_eps_on_group` and :func:`eps_readout`."""
    options = [(f"1e{e:+03d}", 10.0 ** e) for e in exponents]
    value = min((v for _, v in options), key=lambda v: abs(math.log10(v / eps)))
    return figure_slider(lambda e: plot_eps_on_group(values, e), options, value, "ε (eps)",
                         text=lambda e: eps_readout(values, e))
