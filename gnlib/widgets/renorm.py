"""Notebook 07: Batch Renorm's r_max / d_max sliders, recomputed with BatchRenorm2d."""
from __future__ import annotations

from typing import Any

from .common import figure_png

__all__ = ["RENORM_SCALES", "renorm_example", "renorm_explorer", "renorm_readout"]

#: The example batch: 2 images x 4 channels x 5 x 5, channel c scaled by RENORM_SCALES[c] and
#: shifted by 1, against fresh running statistics (mean 0, variance 1).
RENORM_SCALES = (0.3, 1.0, 2.0, 4.0)


def renorm_example(r_max: float, d_max: float, seed: int = 0) -> dict[str, Any]:
    """One training forward of :class:`~gnlib.norms.BatchRenorm2d` with bounds ``(r_max,
    d_max)`` on the example batch: the batch's ratio and shift, r and d (``last_r``,
    ``last_d``), and the outputs of BR, of BN (batch statistics) and of the inference formula
    (running statistics), as numpy arrays."""
    import torch

    from ..norms import BatchRenorm2d

    gen = torch.Generator().manual_seed(seed)
    scales = torch.tensor(RENORM_SCALES).view(1, -1, 1, 1)
    x = torch.randn(2, len(RENORM_SCALES), 5, 5, generator=gen) * scales + 1.0
    br = BatchRenorm2d(len(RENORM_SCALES), affine=False, r_max=float(r_max), d_max=float(d_max))
    sigma, mu = (br.running_var + br.eps).sqrt(), br.running_mean.clone()  # before the update
    with torch.no_grad():
        y_br = br(x)
    dims = (0, 2, 3)
    mean_b = x.mean(dim=dims)
    std_b = (x.var(dim=dims, unbiased=False) + br.eps).sqrt()
    view = (1, -1, 1, 1)
    return {"r_max": float(r_max), "d_max": float(d_max),
            "ratio": (std_b / sigma).numpy(), "shift": ((mean_b - mu) / sigma).numpy(),
            "r": br.last_r.numpy(), "d": br.last_d.numpy(), "y_br": y_br.numpy(),
            "y_bn": ((x - mean_b.view(view)) / std_b.view(view)).numpy(),
            "y_inf": ((x - mu.view(view)) / sigma.view(view)).numpy()}


def renorm_readout(example: dict[str, Any]) -> str:
    """The numbers of :func:`renorm_example` as text: one row per channel, and how far BR's
    output is from BN's and from the inference formula's."""
    import numpy as np

    lines = [f"r_max = {example['r_max']:.2f}, d_max = {example['d_max']:.2f}",
             "channel  sigma_B/sigma      r  (mu_B-mu)/sigma      d   BR out mean   std"]
    y = example["y_br"]
    for c in range(len(example["r"])):
        lines.append(f"{c:7d}  {example['ratio'][c]:13.2f}  {example['r'][c]:5.2f}  "
                     f"{example['shift'][c]:15.2f}  {example['d'][c]:5.2f}  "
                     f"{round(float(y[:, c].mean()), 2) + 0.0:12.2f}  {y[:, c].std():4.2f}")
    to_bn = float(np.abs(y - example["y_bn"]).max())
    to_inf = float(np.abs(y - example["y_inf"]).max())
    lines.append(f"max |BR - BN| = {to_bn:.2f}; max |BR - inference formula| = {to_inf:.2f}")
    return "\n".join(lines)


def renorm_explorer(r_max: float = 1.5, d_max: float = 0.5) -> Any:
    """Two sliders, ``r_max`` (1..5) and ``d_max`` (0..5), that recompute
    :func:`renorm_example` and redraw :func:`~gnlib.plots.results.plot_renorm` and the
    numbers of :func:`renorm_readout`. ``box.state`` holds the current example (for tests)."""
    import ipywidgets as widgets

    from ..plots.beyond import plot_renorm

    style = dict(continuous_update=False, step=0.25, readout_format=".2f",
                 style={"description_width": "50px"}, layout=widgets.Layout(width="320px"))
    sliders = {"r_max": widgets.FloatSlider(value=r_max, min=1.0, max=5.0,
                                            description="r_max", **style),
               "d_max": widgets.FloatSlider(value=d_max, min=0.0, max=5.0,
                                            description="d_max", **style)}
    state = {"example": renorm_example(r_max, d_max)}
    image = widgets.Image(value=figure_png(plot_renorm(state["example"])), format="png")
    numbers = widgets.HTML(value=f"<pre style='font-size: 12px'>"
                                 f"{renorm_readout(state['example'])}</pre>")

    def redraw(_change: dict[str, Any]) -> None:
        state["example"] = renorm_example(sliders["r_max"].value, sliders["d_max"].value)
        image.value = figure_png(plot_renorm(state["example"]))
        numbers.value = f"<pre style='font-size: 12px'>{renorm_readout(state['example'])}</pre>"

    for s in sliders.values():
        s.observe(redraw, names="value")
    box = widgets.VBox([widgets.HBox(list(sliders.values())), image, numbers])
    box.state, box.sliders = state, sliders
    return box
