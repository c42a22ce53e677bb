"""What every widget shares: a figure as PNG bytes, and a slider (or dropdown) that picks which
figure to show, rendered the same with or without a live frontend."""
from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

from matplotlib.figure import Figure

__all__ = ["canvas_png", "figure_png", "figure_slider"]


def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    """``fig`` as PNG bytes, then closed (so notebooks do not also display it)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def canvas_png(fig: Figure) -> bytes:
    """A figure that is kept and redrawn, as PNG bytes at its own dpi (fast compression: a
    widget redraws it on every change)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi="figure", pil_kwargs={"compress_level": 1})
    return buf.getvalue()


def figure_slider(
    draw: Callable[[Any], Figure], options: Sequence[Any], value: Any, description: str,
    control: str = "slider", text: Callable[[Any], str] | None = None,
) -> Any:
    """A ``SelectionSlider`` (or, with ``control="dropdown"``, a ``Dropdown`` for long
    labels) over ``options`` above an image of ``draw(option)`` and, if given, the HTML
    ``text(option)`` (e.g. the numbers the figure shows).

    ``options`` may be ``(label, value)`` pairs. The figure is redrawn when the slider is
    released (``continuous_update=False``) and shown as a PNG ``Image`` widget, which renders
    the same with or without a live frontend.
    """
    import ipywidgets as widgets

    image = widgets.Image(value=figure_png(draw(value)), format="png")
    numbers = widgets.HTML(value=text(value)) if text is not None else None
    if control == "dropdown":
        slider = widgets.Dropdown(options=list(options), value=value, description=description,
                                  layout=widgets.Layout(width="max-content"))
    elif control == "slider":
        slider = widgets.SelectionSlider(options=list(options), value=value,
                                         description=description, continuous_update=False)
    else:
        raise ValueError(f"control must be 'slider' or 'dropdown', got {control!r}")

    def redraw(change: dict[str, Any]) -> None:
        image.value = figure_png(draw(change["new"]))
        if numbers is not None:
            numbers.value = text(change["new"])

    slider.observe(redraw, names="value")
    return widgets.VBox([slider, image] + ([numbers] if numbers is not None else []))
