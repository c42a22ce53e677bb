"""gnlib.plots.cubes: the drawn cubes show exactly S_i, and the numbers agree."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from gnlib.plots.cubes import (  # noqa: E402
    IN_SET,
    OTHER,
    PIXEL,
    PIXEL_COLOR,
    clear_artists,
    cube_boxes,
    cube_facecolors,
    cube_palette,
    draw_cube,
    draw_membership,
    follow_view,
    group_membership_figure,
    sets_figure,
    voxel_labels,
)
from gnlib.plots.style import NORM_COLORS  # noqa: E402
from helpers import paint_boxes  # noqa: E402
from gnlib.sets import example_feature_map, statistics_check  # noqa: E402
from gnlib.sets import SET_KINDS, normalization_set, set_ids, set_size  # noqa: E402

SHAPE = (4, 8, 6)
CASES = [(kind, g) for kind in ("bn", "ln", "in") for g in (None,)] + [
    ("gn", g) for g in (1, 2, 4, 8)]
PIXELS = [(0, 0, 0), (1, 2, 3), (3, 7, 5), (2, 5, 0)]


@pytest.mark.parametrize("kind,groups", CASES)
@pytest.mark.parametrize("index", PIXELS)
def test_labels_are_the_set_and_the_pixel(kind: str, groups: int | None, index) -> None:
    labels = voxel_labels(kind, SHAPE, index, groups)
    mask = normalization_set(kind, SHAPE, index, groups).numpy()
    np.testing.assert_array_equal(labels > OTHER, mask)
    assert labels[index] == PIXEL
    assert (labels == PIXEL).sum() == 1
    assert (labels >= IN_SET).sum() == set_size(kind, SHAPE, groups)


@pytest.mark.parametrize("kind,groups", CASES)
def test_facecolors_follow_the_mask(kind: str, groups: int | None) -> None:
    index = (1, 2, 3)
    labels = voxel_labels(kind, SHAPE, index, groups)
    colors = cube_facecolors(labels, kind)
    assert colors.shape == SHAPE + (4,)
    mask = normalization_set(kind, SHAPE, index, groups).numpy()
    set_rgb = to_rgba(NORM_COLORS[kind])[:3]
    in_set_only = mask.copy()
    in_set_only[index] = False
    assert np.allclose(colors[in_set_only][:, :3], set_rgb)
    assert np.allclose(colors[index], to_rgba(PIXEL_COLOR))
    assert (colors[~mask][:, 3] < 0.2).all(), "voxels outside S_i must be translucent"
    assert (colors[mask][:, 3] > colors[~mask][:, 3].max()).all()


@pytest.mark.parametrize("kind,groups", CASES)
@pytest.mark.parametrize("index", PIXELS)
def test_three_boxes_paint_exactly_the_labels(kind: str, groups: int | None, index) -> None:
    labels = voxel_labels(kind, SHAPE, index, groups)
    boxes = cube_boxes(labels)
    assert [b[0] for b in boxes] == [OTHER, IN_SET, PIXEL]
    np.testing.assert_array_equal(paint_boxes(SHAPE, boxes), labels)


@pytest.mark.parametrize("kind,groups", CASES)
def test_draw_cube_draws_the_boxes_in_their_colours(kind: str, groups: int | None) -> None:
    fig = Figure()
    ax = fig.add_subplot(projection="3d")
    index = (2, 5, 1)
    labels = draw_cube(ax, kind, SHAPE, index, groups)
    np.testing.assert_array_equal(labels, voxel_labels(kind, SHAPE, index, groups))
    polys = [c for c in ax.collections if type(c).__name__ == "Poly3DCollection"]
    assert len(polys) == 3, "one merged voxel per box: whole cube, S_i, pixel"
    palette = cube_palette(kind)
    for poly, label in zip(polys, (OTHER, IN_SET, PIXEL)):
        face = poly.get_facecolor()[0]
        assert np.isclose(face[3], palette[label][3])  # alpha survives shading
    assert ax.get_xlabel().startswith("N") and ax.get_ylabel().startswith("C")
    assert ax.get_zlabel().startswith("H·W")
    assert "S_i" in ax.get_title()
    clear_artists(ax)
    assert not ax.collections


def test_sets_figure_has_four_cubes_titles_and_legend() -> None:
    fig = sets_figure((4, 8, 6), (1, 2, 3), groups=2)
    axes = fig.get_axes()
    assert len(axes) == 4
    for ax, name in zip(axes, ("Batch", "Layer", "Instance", "Group")):
        assert ax.get_title().startswith(name)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[0] == "pixel $i$" and len(labels) == 6


@pytest.mark.parametrize("kind,groups", CASES)
def test_membership_map_shows_set_ids(kind: str, groups: int | None) -> None:
    fig = Figure()
    ax = fig.add_subplot()
    ids = draw_membership(ax, kind, 4, 8, groups, index=(1, 2))
    np.testing.assert_array_equal(ids, set_ids(kind, (4, 8), groups).numpy())
    assert ax.images[0].get_array().shape == (4, 8)
    outline = ax.patches[0]  # the rectangle around S_i of cell (1, 2)
    mask = normalization_set(kind, (4, 8), (1, 2), groups).numpy()
    assert outline.get_width() * outline.get_height() == mask.sum()


def test_group_membership_small_multiples_go_from_ln_to_in() -> None:
    fig = group_membership_figure(N=4, C=8)
    titles = [ax.get_title() for ax in fig.get_axes()]
    assert [t.split("\n")[0] for t in titles] == ["G=1 = LN", "G=2", "G=4", "G=8 = IN"]


@pytest.mark.parametrize("kind,groups", CASES)
@pytest.mark.parametrize("unbiased", [False, True])
def test_statistics_agree_three_ways(kind: str, groups: int | None, unbiased: bool) -> None:
    x = example_feature_map(4, 8, 6, seed=0)
    index = (1, 2, 3)
    st = statistics_check(x, kind, index, groups, unbiased=unbiased)
    values = x[normalization_set(kind, x.shape, index, groups)]
    assert st.size == st.size_formula == values.numel()
    assert st.mean_mask == pytest.approx(float(values.mean()), abs=1e-12)
    assert st.std_mask == pytest.approx(float(values.std(correction=int(unbiased))), abs=1e-12)
    assert st.mean_torch == pytest.approx(st.mean_mask, abs=1e-12)
    assert st.std_torch == pytest.approx(st.std_mask, abs=1e-12)
    assert st.xhat_gnlib == pytest.approx(st.xhat_mask, abs=1e-9)
    if unbiased:
        assert st.xhat_torch is None
    else:
        assert st.xhat_torch == pytest.approx(st.xhat_mask, abs=1e-9)


def test_example_feature_map_is_seeded_and_differs_between_norms() -> None:
    a, b = example_feature_map(4, 8, 6, seed=0), example_feature_map(4, 8, 6, seed=0)
    assert torch.equal(a, b)
    means = {k: statistics_check(a, k, (1, 2, 3), 2 if k == "gn" else None).mean_mask
             for k in SET_KINDS}
    assert len({round(m, 6) for m in means.values()}) == 4
    big = example_feature_map(8, 16, 6, seed=0)
    assert torch.equal(big[:4, :8], a), "a smaller map is a corner of the largest one"
    assert not torch.equal(example_feature_map(4, 8, 6, seed=1), a)


def _lines_in_plane_x(segments: np.ndarray, x: float) -> int:
    return int(((segments[:, 0, 0] == x) & (segments[:, 1, 0] == x)).sum())


def test_follow_view_moves_the_grids_to_the_faces_facing_the_camera() -> None:
    from gnlib.plots.cubes import _box_grid

    fig = Figure()
    ax = fig.add_subplot(projection="3d")
    draw_cube(ax, "gn", SHAPE, (1, 2, 3), 2)
    grids = [c for c in ax.collections if getattr(c, "gnlib_box", None)]
    assert [g.gnlib_box for g in grids] == [((0, 0, 0), SHAPE), ((1, 0, 0), (2, 4, 6))]
    before = [np.asarray(g._segments3d, dtype=float) for g in grids]
    ax.view_init(30, 120)  # the camera now looks at the N = 0 face, not the N = 4 one
    follow_view(ax)
    for grid, old in zip(grids, before):
        new = np.asarray(grid._segments3d, dtype=float)
        np.testing.assert_array_equal(new, np.asarray(_box_grid(*grid.gnlib_box, (30, 120)),
                                                      dtype=float))
        assert not np.array_equal(new, old)
        (lo, _, _), (hi, _, _) = grid.gnlib_box  # the grid moved from the face N = hi to N = lo
        assert _lines_in_plane_x(new, lo) > _lines_in_plane_x(old, lo)
        assert _lines_in_plane_x(new, hi) < _lines_in_plane_x(old, hi)



def test_sets_figure_of_two_cubes_is_wide_enough_for_its_title() -> None:
    assert sets_figure(kinds=("bn", "gn")).get_figwidth() == 8.8
    assert sets_figure().get_figwidth() == pytest.approx(13.6)
