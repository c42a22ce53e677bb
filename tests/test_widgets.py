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
