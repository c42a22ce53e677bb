"""Notebook 02: an interactive explorer of the sets S_i, and the cubes turning with the mouse.

Two layers, so the logic can be tested without a browser:

* :class:`SetsExplorer`: the callback logic. ``update(kind=..., C=..., G=...)`` validates the
  values, redraws the cube into a matplotlib ``Figure`` and refreshes the numbers.
* :func:`sets_explorer`: the ipywidgets box (sliders, toggles, a PNG image, an HTML table)
  whose observers call :meth:`SetsExplorer.update`.
* :func:`rotatable_sets`: the four cubes on an ipympl canvas (drag to turn them).

Nothing is computed here: the drawing is :mod:`gnlib.plots.cubes`, the numbers are
:func:`gnlib.sets.statistics_check` (mask, torch and gnlib.group_norm).
"""
from __future__ import annotations

from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.gridspec import GridSpec

from ..norms import valid_groups
from ..plots.cubes import (clear_artists, cube_legend_handles, draw_cube, draw_membership,
                           follow_view, sets_figure)
from ..sets import SET_KINDS, StatisticsCheck, example_feature_map, statistics_check
from .common import canvas_png

__all__ = ["KIND_OPTIONS", "SetsExplorer", "explorer_controls", "rotatable_figure",
           "rotatable_sets", "sets_explorer"]

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
        return canvas_png(self.fig)

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
