"""Shared look of every gnlib figure: one palette per norm, labelled axes, saving."""
from __future__ import annotations

from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from ..paper import NORM_LABELS

__all__ = ["NORM_COLORS", "NORM_LABELS", "label_axes", "save_figure"]

#: One colour per normalization, used by every plot so BN is always the same blue.
NORM_COLORS = {
    "bn": "#1f77b4",
    "ln": "#2ca02c",
    "in": "#9467bd",
    "gn": "#d62728",
    "br": "#ff7f0e",
    "gn+ws": "#8c564b",
    "syncbn": "#bcbd22",
    "gbn": "#393b79",
    "none": "#7f7f7f",
}



def label_axes(ax, xlabel: str | None = None, ylabel: str | None = None, title: str | None = None,
               grid: str = "both", legend: dict | None = None, title_size: float = 10) -> None:
    """The finishing touches every panel gets: axis labels, a title, a light grid on ``grid``
    (``"x"``, ``"y"`` or ``"both"``) and a legend with the keyword arguments ``legend``."""
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title, fontsize=title_size)
    ax.grid(alpha=0.3, axis=grid)
    if legend is not None:
        ax.legend(**legend)


def save_figure(fig: Figure, path: str | Path, formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """Save ``fig`` as ``path`` with each suffix in ``formats`` (metadata stripped, so re-saving
    the same figure gives the same bytes). Returns the written paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = path.with_suffix("." + fmt)
        meta = {"Software": None} if fmt == "png" else {"Date": None, "Creator": None}
        with matplotlib.rc_context({"svg.hashsalt": "gnlib"}):  # reproducible SVG ids
            fig.savefig(target, format=fmt, dpi=120, bbox_inches="tight", metadata=meta)
        written.append(target)
    return written



