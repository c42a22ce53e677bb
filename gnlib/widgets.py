"""Interactive explorer of the sets S_i: ipywidgets controls wired to gnlib's plots and numbers.

Two layers, so the logic can be tested without a browser:

* :class:`SetsExplorer`: the callback logic. ``update(kind=..., C=..., G=...)`` validates the
  values, redraws the cube into a matplotlib ``Figure`` and refreshes the numbers.
* :func:`sets_explorer`: the ipywidgets box (sliders, toggles, a PNG image, an HTML table)
  whose observers call :meth:`SetsExplorer.update`.

Nothing is computed here: the drawing is :mod:`gnlib.plots.cubes`, the numbers are
:func:`gnlib.sets.statistics_check` (mask, torch and gnlib.group_norm).
"""
from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.gridspec import GridSpec

from .norms import valid_groups
from .plots.cubes import (
    clear_artists,
    cube_legend_handles,
    draw_cube,
    draw_membership,
    follow_view,
    sets_figure,
)
from .plots.theory import plot_eps_on_group, x_hat_with_eps
from .sets import SET_KINDS, StatisticsCheck, example_feature_map, statistics_check

__all__ = ["SetsExplorer", "eps_explorer", "eps_readout", "explorer_controls", "figure_png",
           "figure_slider", "rotatable_figure", "rotatable_sets", "sets_explorer"]

KIND_OPTIONS = [("BN", "bn"), ("LN", "ln"), ("IN", "in"), ("GN", "gn")]


def _snap_groups(groups: int, C: int) -> int:
    """The largest divisor of ``C`` not above ``groups`` (keeps G valid when C changes)."""
    return max(g for g in valid_groups(C) if g <= max(1, groups))


class SetsExplorer:
    """State and redraw of the S_i explorer (no ipywidgets needed).

    State keys: ``kind, N, C, G, i_N, i_C, i_HW, unbiased``. ``HW`` is fixed; the numbers
    come from :func:`~gnlib.sets.example_feature_map` (seeded) of the current shape.
    """

    def __init__(
        self,
        kind: str = "gn",
        N: int = 4,
        C: int = 8,
        G: int = 2,
        HW: int = 6,
        index: tuple[int, int, int] = (1, 2, 3),
        unbiased: bool = False,
        max_N: int = 8,
        max_C: int = 16,
        seed: int = 0,
        figsize: tuple[float, float] = (9.0, 4.2),
        dpi: int = 90,
    ) -> None:
        if HW < 2:
            raise ValueError(f"HW must be at least 2 (unbiased std needs |S_i| >= 2), got {HW}")
        self.HW, self.max_N, self.max_C, self.dpi, self.seed = HW, max_N, max_C, dpi, seed
        self.fig = Figure(figsize=figsize, dpi=dpi)
        # One Agg canvas (hence one renderer) for all redraws: its text and mathtext caches
        # stay warm. A bare Figure would get a fresh canvas, and renderer, on every savefig.
        FigureCanvasAgg(self.fig)
        self.axes: tuple[Any, Any] | None = None
        self.redraws = 0
        self.state: dict[str, Any] = {}
        self.labels = None
        self.stats: StatisticsCheck | None = None
        self.update(kind=kind, N=N, C=C, G=G, i_N=index[0], i_C=index[1], i_HW=index[2],
                    unbiased=unbiased)

    # ---- state -------------------------------------------------------------------------
    @property
    def group_options(self) -> list[int]:
        """The valid G for the current C (what the G slider offers)."""
        return valid_groups(self.state["C"])

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.state["N"], self.state["C"], self.HW

    @property
    def x(self) -> Any:
        """The seeded feature map of the current shape (``example_feature_map``)."""
        return example_feature_map(*self.shape, seed=self.seed)

    @property
    def index(self) -> tuple[int, int, int]:
        return self.state["i_N"], self.state["i_C"], self.state["i_HW"]

    @property
    def groups(self) -> int | None:
        """G for GN, ``None`` for the other norms."""
        return self.state["G"] if self.state["kind"] == "gn" else None

    def _validated(self, values: dict[str, Any]) -> dict[str, Any]:
        unknown = set(values) - {"kind", "N", "C", "G", "i_N", "i_C", "i_HW", "unbiased"}
        if unknown:
            raise TypeError(f"unknown setting(s) {sorted(unknown)}")
        new = {**self.state, **values}
        if new["kind"] not in SET_KINDS:
            raise ValueError(f"kind must be one of {SET_KINDS}, got {new['kind']!r}")
        for name, hi in (("N", self.max_N), ("C", self.max_C)):
            if not 1 <= int(new[name]) <= hi:
                raise ValueError(f"{name} must be in 1..{hi}, got {new[name]}")
        C = int(new["C"])
        if "G" in values and int(values["G"]) not in valid_groups(C):
            raise ValueError(f"G={values['G']} does not divide C={C}; "
                             f"valid G: {valid_groups(C)}")
        new["G"] = _snap_groups(int(new["G"]), C)
        new["i_N"] = min(max(int(new["i_N"]), 0), int(new["N"]) - 1)  # follow N, C, HW
        new["i_C"] = min(max(int(new["i_C"]), 0), C - 1)
        new["i_HW"] = min(max(int(new["i_HW"]), 0), self.HW - 1)
        new["N"], new["C"], new["unbiased"] = int(new["N"]), C, bool(new["unbiased"])
        return new

    def update(self, **values: Any) -> dict[str, Any]:
        """Apply new control values, redraw if anything changed, return the new state."""
        new = self._validated(values)
        if new != self.state:
            self.state = new
            self.redraw()
        return dict(self.state)

    # ---- outputs -----------------------------------------------------------------------
    def redraw(self) -> None:
        """Draw the cube and the (N, C) map into :attr:`fig`, recompute the numbers."""
        s = self.state
        N, C, _ = self.shape
        ax3d, ax2d = self._reused_axes()
        self.labels = draw_cube(ax3d, s["kind"], self.shape, self.index, self.groups, zoom=1.0)
        draw_membership(ax2d, s["kind"], N, C, self.groups, self.index[:2],
                        annotate=N * C <= 32)
        ax2d.set_title("cells of one colour share $\\mu, \\sigma$;\n"
                       "outlined: $S_i$ of the pixel ★", fontsize=9)
        self.fig.legend(handles=cube_legend_handles([s["kind"]]), loc="lower center",
                        ncol=3, fontsize=8, frameon=False)
        self.stats = statistics_check(self.x, s["kind"], self.index, self.groups, s["unbiased"])
        self.redraws += 1

    def _reused_axes(self) -> tuple[Any, Any]:
        """The two axes, created once and emptied on every redraw."""
        if self.axes is None:
            grid = GridSpec(1, 2, figure=self.fig, width_ratios=(1.35, 1.0),
                            left=-0.04, right=0.98, top=0.86, bottom=0.17, wspace=0.1)
            self.axes = (self.fig.add_subplot(grid[0], projection="3d"),
                         self.fig.add_subplot(grid[1]))
        else:
            for ax in self.axes:
                clear_artists(ax)
            self.fig.legends.clear()
        return self.axes

    def png(self) -> bytes:
        """The current figure as PNG bytes (what the widget shows)."""
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", dpi="figure", pil_kwargs={"compress_level": 1})
        return buf.getvalue()

    @property
    def text(self) -> str:
        """The numbers under the cube, as plain text (rounded)."""
        st, s = self.stats, self.state
        est = "unbiased 1/(|S_i|-1)" if s["unbiased"] else "biased 1/|S_i|"
        torch_xhat = ("n/a (torch's layers use the biased estimator)"
                      if st.xhat_torch is None else f"{st.xhat_torch:.4f}")
        return "\n".join([
            f"|S_i| = {st.size} values (mask)   set_size: {st.size_formula}",
            f"std estimator: {est}",
            f"mask S_i (gnlib.sets):  mean = {st.mean_mask:.4f}   std = {st.std_mask:.4f}",
            f"torch reduction:        mean = {st.mean_torch:.4f}   std = {st.std_torch:.4f}",
            f"x_hat_i from the mask stats: {st.xhat_mask:.4f}",
            f"x_hat_i from gnlib.group_norm: {st.xhat_gnlib:.4f}",
            f"x_hat_i from torch.nn.functional: {torch_xhat}",
        ])

    @property
    def html(self) -> str:
        """:attr:`text` as preformatted HTML for an ``ipywidgets.HTML``."""
        return f"<pre style='font-size: 12px; line-height: 1.3'>{self.text}</pre>"


def explorer_controls(explorer: SetsExplorer) -> tuple[Any, dict[str, Any]]:
    """Build the ipywidgets box around ``explorer``; returns ``(box, controls by name)``."""
    import ipywidgets as w

    s = explorer.state
    slider = dict(continuous_update=False, style={"description_width": "90px"},
                  layout=w.Layout(width="300px"))
    c = {
        "kind": w.ToggleButtons(options=KIND_OPTIONS, value=s["kind"], description="norm"),
        "N": w.IntSlider(value=s["N"], min=1, max=explorer.max_N, description="N (batch)",
                         **slider),
        "C": w.IntSlider(value=s["C"], min=1, max=explorer.max_C, description="C (channels)",
                         **slider),
        "G": w.SelectionSlider(options=explorer.group_options, value=s["G"],
                               description="G (divides C)", **slider),
        "i_N": w.IntSlider(value=s["i_N"], min=0, max=s["N"] - 1, description="i_N", **slider),
        "i_C": w.IntSlider(value=s["i_C"], min=0, max=s["C"] - 1, description="i_C", **slider),
        "i_HW": w.IntSlider(value=s["i_HW"], min=0, max=explorer.HW - 1, description="i_HW",
                            **slider),
        "unbiased": w.Checkbox(value=s["unbiased"], description="unbiased std (1/(|S_i|-1))"),
    }
    image = w.Image(value=explorer.png(), format="png")
    numbers = w.HTML(value=explorer.html)
    syncing = {"on": False}

    def sync_controls() -> None:
        """Make the controls show the explorer's (possibly clamped/snapped) state."""
        st = explorer.state
        c["G"].options = explorer.group_options
        c["G"].value = st["G"]
        c["G"].disabled = st["kind"] != "gn"
        c["i_N"].max, c["i_C"].max = st["N"] - 1, st["C"] - 1
        for name in ("i_N", "i_C", "i_HW", "N", "C", "kind", "unbiased"):
            c[name].value = st[name]

    def on_change(name: str, value: Any) -> None:
        if syncing["on"]:
            return
        before = explorer.redraws
        explorer.update(**{name: value})
        syncing["on"] = True
        try:
            sync_controls()
        finally:
            syncing["on"] = False
        if explorer.redraws != before:
            image.value = explorer.png()
            numbers.value = explorer.html

    for name, control in c.items():
        control.observe(lambda change, name=name: on_change(name, change["new"]), names="value")
    c["G"].disabled = s["kind"] != "gn"
    sliders = w.VBox([c["N"], c["C"], c["G"]])
    pixel = w.VBox([c["i_N"], c["i_C"], c["i_HW"]])
    box = w.VBox([c["kind"], w.HBox([sliders, pixel, c["unbiased"]]), image, numbers])
    return box, c


def sets_explorer(**kwargs: Any) -> Any:
    """The interactive S_i explorer as an ipywidgets ``VBox`` (keyword arguments go to
    :class:`SetsExplorer`). ``box.explorer`` and ``box.controls`` give access for tests."""
    explorer = SetsExplorer(**kwargs)
    box, controls = explorer_controls(explorer)
    box.explorer, box.controls = explorer, controls
    return box


# --------------------------------------------------------------------------------------
# A slider that picks which figure to show (notebooks 05 and 06)
# --------------------------------------------------------------------------------------
def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    """``fig`` as PNG bytes, then closed (so notebooks do not also display it)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
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


# --------------------------------------------------------------------------------------
# Notebook 01: an eps slider that renormalizes a near-constant set
# --------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------
# Notebook 02: a figure that turns with the mouse (ipympl)
# --------------------------------------------------------------------------------------
def rotatable_figure(fig: Figure) -> Any:
    """``fig`` on its own ipympl canvas: a widget whose 3D axes turn with the mouse (in
    JupyterLab with a live kernel; without a frontend it shows a static PNG).

    Only this figure gets the interactive canvas: importing ipympl switches pyplot's backend,
    so the notebook's backend (``inline``) is restored and later figures stay static.
    """
    import matplotlib
    import matplotlib.pyplot as plt

    backend = matplotlib.rcParams._get("backend")  # without triggering backend resolution
    from ipympl.backend_nbagg import Canvas, FigureManager

    if matplotlib.rcParams._get("backend") != backend:
        plt.switch_backend(backend)
    canvas = Canvas(fig)
    FigureManager(canvas, 0)  # the toolbar, and canvas.manager for ipympl's callbacks
    canvas.header_visible = canvas.footer_visible = canvas.resizable = False
    canvas.toolbar_position = "right"
    return canvas


def rotatable_sets(**kwargs: Any) -> Any:
    """The S_i cubes of :func:`~gnlib.plots.cubes.sets_figure` (keyword arguments go there)
    on an ipympl canvas: dragging one cube turns all four, their unit grids follow the view.

    Returned inside a ``VBox``: displaying the bare canvas would also store a PNG copy in the
    notebook (``_data_url``), three copies of the figure in all."""
    import ipywidgets as widgets

    fig = sets_figure(fig=Figure(figsize=(11.0, 4.0), dpi=80), **kwargs)
    first, *others = fig.axes
    for ax in others:
        ax.shareview(first)
    canvas = rotatable_figure(fig)

    def regrid(event: Any) -> None:
        for ax in fig.axes:
            follow_view(ax)
        canvas.draw_idle()

    canvas.mpl_connect("button_release_event", regrid)
    box = widgets.VBox([canvas])
    box.canvas = canvas
    return box


# --------------------------------------------------------------------------------------
# Notebook 07: Batch Renorm's r_max / d_max sliders (recomputed with BatchRenorm2d)
# --------------------------------------------------------------------------------------
#: The example batch: 2 images x 4 channels x 5 x 5, channel c scaled by RENORM_SCALES[c] and
#: shifted by 1, against fresh running statistics (mean 0, variance 1).
RENORM_SCALES = (0.3, 1.0, 2.0, 4.0)


def renorm_example(r_max: float, d_max: float, seed: int = 0) -> dict[str, Any]:
    """One training forward of :class:`~gnlib.norms.BatchRenorm2d` with bounds ``(r_max,
    d_max)`` on the example batch: the batch's ratio and shift, r and d (``last_r``,
    ``last_d``), and the outputs of BR, of BN (batch statistics) and of the inference formula
    (running statistics), as numpy arrays."""
    import torch

    from .norms import BatchRenorm2d

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

    from .plots.results import plot_renorm

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


# --------------------------------------------------------------------------------------
# Notebook 05: the batch statistics of real activations (what BN normalizes with)
# --------------------------------------------------------------------------------------
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

    from .batch_stats import ActivationMoments, load_trained_bn, test_images
    from .plots.activations import BatchStatisticsFigure

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
            buf = io.BytesIO()
            drawing.fig.savefig(buf, format="png", dpi="figure",
                                pil_kwargs={"compress_level": 1})
            image.value = buf.getvalue()
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
