"""Notebook 05: the batch statistics of real activations (what BN normalizes with)."""
from __future__ import annotations

from typing import Any

from .common import canvas_png

__all__ = ["BATCH_STAT_SLICES", "batch_statistics_explorer"]

#: The slice sizes the batch-statistics explorer offers (images per device, as in Figure 1).
BATCH_STAT_SLICES = (1, 2, 4, 8, 16, 32)


def batch_statistics_explorer(moments: Any = None, layer: int | None = None,
                              channel: int | None = None, slice_size: int = 2,
                              n_slices: int = 1024, groups: int = 32) -> Any:
    """Pick a BN layer of the trained BN network, a slice size and a channel: the histograms
    of the slice means and variances of that channel's input over ``n_slices`` slices of a
    fixed set of test images, against the population's statistics, and one image normalized
    by BN (its slice's statistics) and by GN (``groups``).

    ``moments``: a :class:`gnlib.batch_stats.ActivationMoments` (default: the committed BN
    model on the first 1024 test images; one forward pass, then every redraw is computed from
    the kept moments). ``layer`` / ``channel`` default to where the most variance lies between
    images (:meth:`~gnlib.batch_stats.ActivationMoments.most_between`). The slice slider is
    labelled ``"slice size"``. ``box.controls``, ``box.explorer`` (its ``view()`` and
    ``redraw()``) give access for tests."""
    import ipywidgets as widgets

    from ..batch_stats import ActivationMoments, load_trained_bn, test_images
    from ..plots.activations import BatchStatisticsFigure

    if moments is None:
        moments = ActivationMoments(load_trained_bn(), test_images())
    if layer is None or channel is None:
        best = moments.most_between()
        layer = best[0] if layer is None else layer
        channel = best[1] if channel is None else channel
    drawing = BatchStatisticsFigure()
    slices = [s for s in BATCH_STAT_SLICES if s <= moments.n_images]
    if slice_size not in slices:
        raise ValueError(f"slice_size must be one of {slices}, got {slice_size}")
    wide = dict(style={"description_width": "80px"}, layout=widgets.Layout(width="320px"))
    controls = {
        "layer": widgets.Dropdown(options=[(L.label, i) for i, L in enumerate(moments.layers)],
                                  value=layer, description="BN layer",
                                  layout=widgets.Layout(width="max-content")),
        "slice": widgets.SelectionSlider(options=slices, value=slice_size,
                                         description="slice size", continuous_update=False,
                                         **wide),
        "channel": widgets.IntSlider(value=channel, min=0,
                                     max=moments.layers[layer].shape[0] - 1,
                                     description="channel", continuous_update=False, **wide),
    }
    image = widgets.Image(format="png")
    numbers = widgets.HTML()

    class Explorer:
        redraws = 0
        last = None

        @staticmethod
        def view():
            return moments.view(controls["layer"].value, controls["channel"].value,
                                controls["slice"].value, n_slices=n_slices, groups=groups)

        @classmethod
        def redraw(cls, _: Any = None) -> None:
            cls.last = cls.view()
            drawing.update(cls.last)
            image.value = canvas_png(drawing.fig)
            numbers.value = f"<pre style='font-size: 12px; line-height: 1.3'>{cls.last.text}</pre>"
            cls.redraws += 1

    def on_layer(change: dict[str, Any]) -> None:
        before = Explorer.redraws
        controls["channel"].max = moments.layers[change["new"]].shape[0] - 1  # may clamp: redraw
        if Explorer.redraws == before:
            Explorer.redraw()

    controls["layer"].observe(on_layer, names="value")
    controls["slice"].observe(Explorer.redraw, names="value")
    controls["channel"].observe(Explorer.redraw, names="value")
    Explorer.redraw()
    box = widgets.VBox([controls["layer"], widgets.HBox([controls["slice"], controls["channel"]]),
                        image, numbers])
    box.controls, box.explorer, box.moments = controls, Explorer, moments
    return box
