"""gnlib.widgets: the explorer follows its controls, offers only valid G, shows gnlib's numbers."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from gnlib.norms import valid_groups  # noqa: E402
from gnlib.plots.cubes import (  # noqa: E402
    PIXEL,
    voxel_labels,
)
from gnlib.sets import example_feature_map, statistics_check  # noqa: E402
from gnlib.widgets import SetsExplorer, sets_explorer  # noqa: E402


@pytest.fixture(scope="module")
def box():
    return sets_explorer(N=4, C=8, G=2, HW=6, index=(1, 2, 3))


@pytest.fixture()
def explorer() -> SetsExplorer:
    return SetsExplorer(N=4, C=8, G=2, HW=6, index=(1, 2, 3), dpi=40)


def _cube_labels(ex: SetsExplorer) -> np.ndarray:
    return voxel_labels(ex.state["kind"], ex.shape, ex.index, ex.groups)


def test_update_redraws_only_on_change(explorer: SetsExplorer) -> None:
    n = explorer.redraws
    explorer.update(kind="gn")
    assert explorer.redraws == n
    explorer.update(kind="bn")
    assert explorer.redraws == n + 1
    np.testing.assert_array_equal(explorer.labels, _cube_labels(explorer))
    assert explorer.fig.axes[0].get_title().startswith("Batch Norm")


def test_changing_g_kind_and_pixel_changes_the_drawing(explorer: SetsExplorer) -> None:
    before = explorer.labels.copy()
    explorer.update(G=4)
    assert (explorer.labels > 0).sum() == (before > 0).sum() // 2  # C/G halves
    after_g = explorer.labels.copy()
    explorer.update(kind="in")
    assert (explorer.labels > 0).sum() == 6
    explorer.update(i_HW=0)
    assert explorer.labels[1, 2, 0] == PIXEL and explorer.labels[1, 2, 3] != PIXEL
    assert not np.array_equal(after_g, explorer.labels)
    png = explorer.png()
    assert png.startswith(b"\x89PNG")


def test_g_snaps_to_a_divisor_and_invalid_g_is_refused(explorer: SetsExplorer) -> None:
    explorer.update(G=4)
    explorer.update(C=6)
    assert explorer.group_options == valid_groups(6) == [1, 2, 3, 6]
    assert explorer.state["G"] == 3
    with pytest.raises(ValueError, match="does not divide"):
        explorer.update(G=4)
    explorer.update(C=5, G=5)
    assert explorer.state["G"] == 5


def test_pixel_follows_n_and_c(explorer: SetsExplorer) -> None:
    explorer.update(i_N=3, i_C=7)
    explorer.update(N=2, C=4)
    assert explorer.index[:2] == (1, 3)
    np.testing.assert_array_equal(explorer.labels, _cube_labels(explorer))


def test_numbers_are_gnlibs(explorer: SetsExplorer) -> None:
    for values in ({"kind": "gn", "G": 4}, {"kind": "ln"}, {"unbiased": True}, {"kind": "bn"}):
        explorer.update(**values)
        s = explorer.state
        x = example_feature_map(s["N"], s["C"], explorer.HW, seed=0)
        expected = statistics_check(x, s["kind"], explorer.index, explorer.groups,
                                    s["unbiased"])
        assert explorer.stats == expected
        assert f"|S_i| = {expected.size} values" in explorer.text
        assert f"mean = {expected.mean_mask:.4f}" in explorer.text
        assert f"std = {expected.std_mask:.4f}" in explorer.text
        assert f"group_norm: {expected.xhat_gnlib:.4f}" in explorer.text
    assert "biased estimator" in explorer.text  # torch's layers: biased only


def test_widget_g_options_are_divisors_and_follow_c(box) -> None:
    c = box.controls
    assert list(c["G"].options) == valid_groups(8)
    c["C"].value = 12
    assert list(c["G"].options) == valid_groups(12) == [1, 2, 3, 4, 6, 12]
    assert c["G"].value in c["G"].options
    assert c["i_C"].max == 11
    c["C"].value = 8
    assert list(c["G"].options) == [1, 2, 4, 8]


def test_widget_controls_drive_the_explorer(box) -> None:
    c, ex = box.controls, box.explorer
    image = box.children[2]
    old_png, n = image.value, ex.redraws
    c["kind"].value = "gn"
    c["G"].value = 4
    assert ex.state["G"] == 4 and ex.redraws == n + 1
    assert image.value != old_png
    c["i_C"].value = 7
    c["N"].value = 1
    assert ex.index[0] == 0 and c["i_N"].value == 0 and c["i_N"].max == 0
    c["kind"].value = "bn"
    assert c["G"].disabled and ex.groups is None
    c["unbiased"].value = True
    assert "unbiased" in box.children[3].value
    assert f"{ex.stats.std_mask:.4f}" in box.children[3].value


def test_gn_numbers_do_not_depend_on_the_batch_but_bn_numbers_do(explorer: SetsExplorer) -> None:
    explorer.update(kind="gn", N=2)
    gn_small = explorer.stats
    explorer.update(N=8)
    assert explorer.stats.mean_mask == gn_small.mean_mask  # same sample, more batch mates
    explorer.update(kind="bn", N=2)
    bn_small = explorer.stats.mean_mask
    explorer.update(N=8)
    assert explorer.stats.mean_mask != bn_small


def test_figure_slider_redraws_the_image_for_the_chosen_option() -> None:
    from matplotlib.figure import Figure

    from gnlib.widgets import figure_slider

    def draw(k: int) -> Figure:
        fig = Figure(figsize=(2, 2))
        fig.add_subplot().plot([0, 1], [0, k])
        return fig

    box = figure_slider(draw, [1, 2, 3], 1, "k")
    slider, image = box.children
    before = image.value
    assert list(slider.options) == [1, 2, 3] and slider.description == "k"
    slider.value = 3
    assert image.value != before and image.value[:4] == b"\x89PNG"


def test_figure_slider_as_dropdown_for_long_labels() -> None:
    import ipywidgets as widgets
    from matplotlib.figure import Figure

    from gnlib.widgets import figure_slider

    def draw(label: str) -> Figure:
        fig = Figure(figsize=(2, 2))
        fig.add_subplot().set_title(label)
        return fig

    box = figure_slider(draw, ["shuffled", "16 devices x 2, 1 class each"], "shuffled", "batch",
                        control="dropdown")
    menu, image = box.children
    assert isinstance(menu, widgets.Dropdown)
    before = image.value
    menu.value = "16 devices x 2, 1 class each"
    assert image.value != before
    with pytest.raises(ValueError, match="control"):
        figure_slider(draw, ["a"], "a", "x", control="knob")


# --------------------------------------------------------------------------------------
# Notebook 01: the eps slider
# --------------------------------------------------------------------------------------
GROUP = [3.012, 2.991, 3.004, 2.983, 3.019, 2.995]


def _gnlib_x_hat(eps: float) -> np.ndarray:
    import torch

    from gnlib import group_norm
    x = torch.tensor(GROUP, dtype=torch.float64).view(1, 1, -1)
    return group_norm(x, 1, eps=eps).flatten().numpy()


def test_x_hat_with_eps_is_gnlibs_and_eps_shrinks_it() -> None:
    from gnlib.plots.theory import x_hat_with_eps

    var = np.var(GROUP)
    for eps in (0.0, 1e-5, 1e-3):
        np.testing.assert_allclose(x_hat_with_eps(GROUP, eps), _gnlib_x_hat(eps), rtol=1e-10)
        assert x_hat_with_eps(GROUP, eps).std() == pytest.approx(np.sqrt(var / (var + eps)))


def test_eps_figure_marks_the_current_eps() -> None:
    import matplotlib.pyplot as plt

    from gnlib.plots.theory import plot_eps_on_group

    fig = plot_eps_on_group(GROUP, 1e-3)
    left, right = fig.axes
    heights = [p.get_height() for p in left.patches]
    np.testing.assert_allclose(heights[len(GROUP):], _gnlib_x_hat(1e-3))  # eps bars
    np.testing.assert_allclose(heights[:len(GROUP)], _gnlib_x_hat(0.0), rtol=1e-9)
    marker = right.lines[-1]
    assert marker.get_xdata()[0] == 1e-3
    assert marker.get_ydata()[0] == pytest.approx(np.std(_gnlib_x_hat(1e-3)))
    assert all(ax.get_xlabel() and ax.get_ylabel() and ax.get_title() for ax in fig.axes)
    plt.close(fig)


def test_eps_slider_recomputes_the_numbers_and_the_figure() -> None:
    from gnlib.widgets import eps_explorer

    box = eps_explorer(GROUP, eps=1e-5)
    slider, image, numbers = box.children
    labels = [label for label, _ in slider.options]
    assert slider.label == "1e-05" and labels[0] == "1e-08" and labels[-1] == "1e+00"
    first = f"{_gnlib_x_hat(1e-5)[0]:+.3f}"
    assert f"x_hat at eps = 1e-05: {first}" in numbers.value
    before_png, before_text = image.value, numbers.value
    slider.value = 1e-3
    assert image.value != before_png and image.value[:4] == b"\x89PNG"
    assert numbers.value != before_text
    assert f"x_hat at eps = 1e-03: {_gnlib_x_hat(1e-3)[0]:+.3f}" in numbers.value
    assert f"x_hat at eps = 0:     {_gnlib_x_hat(0.0)[0]:+.3f}" in numbers.value


def test_figure_slider_text_follows_the_option() -> None:
    from matplotlib.figure import Figure

    from gnlib.widgets import figure_slider

    def draw(k: int) -> Figure:
        fig = Figure(figsize=(2, 2))
        fig.add_subplot().plot([0, 1], [0, k])
        return fig

    box = figure_slider(draw, [("one", 1), ("two", 2)], 1, "k", text=lambda k: f"<b>{k}</b>")
    slider, _, numbers = box.children
    assert numbers.value == "<b>1</b>"
    slider.value = 2
    assert numbers.value == "<b>2</b>" and slider.label == "two"


# --------------------------------------------------------------------------------------
# Notebook 02: cubes that turn with the mouse (ipympl)
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rotatable():
    from gnlib.widgets import rotatable_sets

    backend = matplotlib.get_backend()
    box = rotatable_sets(shape=(4, 8, 6), index=(1, 2, 3), groups=2)
    assert matplotlib.get_backend() == backend, "ipympl must not switch pyplot's backend"
    return box


def _mouse(canvas, name: str, xy) -> None:
    from matplotlib.backend_bases import MouseButton, MouseEvent

    canvas.callbacks.process(name, MouseEvent(name, canvas, *xy, button=MouseButton.LEFT))


def test_rotatable_sets_is_an_ipympl_canvas_of_four_shared_cubes(rotatable) -> None:
    from ipympl.backend_nbagg import Canvas

    canvas = rotatable.canvas
    assert isinstance(canvas, Canvas) and rotatable.children == (canvas,)
    assert len(canvas.figure.axes) == 4
    assert [ax.get_title().split("\n")[0] for ax in canvas.figure.axes][0] == "Batch Norm"
    assert not canvas.header_visible and canvas.manager is not None


def test_dragging_one_cube_turns_all_and_the_grid_follows(rotatable) -> None:
    from gnlib.plots.cubes import _box_grid

    canvas = rotatable.canvas
    fig = canvas.figure
    canvas.draw()  # axes positions as displayed
    first = fig.axes[0]
    grid = next(c for c in first.collections if getattr(c, "gnlib_box", None))
    before_view = (first.elev, first.azim)
    before_grid = [np.asarray(s).copy() for s in grid._segments3d]
    x0, y0 = first.bbox.x0 + first.bbox.width / 2, first.bbox.y0 + first.bbox.height / 2
    _mouse(canvas, "button_press_event", (x0, y0))
    for dx in (20, 60, 120):
        _mouse(canvas, "motion_notify_event", (x0 + dx, y0 + dx / 3))
    _mouse(canvas, "button_release_event", (x0 + 120, y0 + 40))
    assert (first.elev, first.azim) != before_view
    assert all((ax.elev, ax.azim) == (first.elev, first.azim) for ax in fig.axes)
    after_grid = [np.asarray(s) for s in grid._segments3d]
    expected = _box_grid(*grid.gnlib_box, (first.elev, first.azim))
    np.testing.assert_allclose(np.asarray(after_grid), np.asarray(expected))
    assert not np.array_equal(np.asarray(after_grid), np.asarray(before_grid))
