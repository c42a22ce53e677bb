r"""The paper's Figure 2 as 3D voxel cubes, and GN's group membership as coloured cells.

A feature map ``(N, C, H, W)`` is drawn as a cube with axes N (batch), C (channels) and
H·W (the spatial dims flattened), so a tensor of shape ``(N, C, HW)``. For a pixel ``i``,
every voxel gets a label (:data:`OTHER`, :data:`IN_SET`, :data:`PIXEL`) from
:func:`gnlib.sets.normalization_set`, and a colour from a small palette lookup.

Speed: ``Axes3D.voxels`` makes one artist per voxel, far too slow for a widget (0.6 s to
draw 8 x 16 x 8). Every :math:`S_i` is a box (one interval per axis), so the labels are
painted by three nested boxes (:func:`cube_boxes`): the whole cube, :math:`S_i`, the pixel.
Each box is one voxel with non-uniform corners (``voxels(x, y, z, filled)``), drawn back to
front, and the unit grid is added as one line collection: 3 artists instead of ~1000.

The numbers printed under the cube come from :func:`gnlib.sets.statistics_check`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap, to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from mpl_toolkits.mplot3d import Axes3D
from mpl_toolkits.mplot3d.art3d import Line3DCollection

from ..norms import valid_groups
from ..sets import SET_DEFINITIONS, SET_KINDS, normalization_set, set_ids
from .style import NORM_COLORS, NORM_LABELS

__all__ = [
    "IN_SET",
    "OTHER",
    "PIXEL",
    "PIXEL_COLOR",
    "clear_artists",
    "cube_boxes",
    "cube_facecolors",
    "cube_legend_handles",
    "cube_palette",
    "cube_title",
    "draw_cube",
    "draw_membership",
    "follow_view",
    "group_membership_figure",
    "sets_figure",
    "voxel_labels",
]

#: Voxel labels.
OTHER, IN_SET, PIXEL = 0, 1, 2
#: The chosen pixel i is drawn in this colour in every panel.
PIXEL_COLOR = "#ffb000"
OTHER_RGBA = (0.62, 0.62, 0.62, 0.07)
SET_ALPHA = 0.42
AXIS_LABELS = ("N (batch)", "C (channels)", "H·W (spatial)")
VIEW = (22.0, -58.0)  # elevation, azimuth in degrees


# --------------------------------------------------------------------------------------
# Labels and colours (full resolution: one entry per voxel)
# --------------------------------------------------------------------------------------
def voxel_labels(
    kind: str, shape: Sequence[int], index: Sequence[int], groups: int | None = None
) -> np.ndarray:
    """``int8`` array of ``shape = (N, C, HW)``: :data:`PIXEL` at ``index``, :data:`IN_SET`
    on the rest of :math:`S_i`, :data:`OTHER` elsewhere."""
    mask = normalization_set(kind, shape, index, groups).numpy()
    labels = mask.astype(np.int8)
    labels[tuple(int(i) for i in index)] = PIXEL
    return labels


def cube_palette(kind: str) -> np.ndarray:
    """RGBA rows for :data:`OTHER`, :data:`IN_SET`, :data:`PIXEL` (set in the norm's colour)."""
    return np.array([OTHER_RGBA, to_rgba(NORM_COLORS[kind], SET_ALPHA), to_rgba(PIXEL_COLOR, 1.0)])


def cube_facecolors(labels: np.ndarray, kind: str) -> np.ndarray:
    """Face colour of every voxel, ``labels.shape + (4,)`` (a palette lookup): what a
    per-voxel ``Axes3D.voxels`` call takes; :func:`draw_cube` paints the same colours box
    by box (:func:`cube_boxes`)."""
    return cube_palette(kind)[labels]


# --------------------------------------------------------------------------------------
# Three boxes paint the labels (what makes a redraw fast)
# --------------------------------------------------------------------------------------
Box = tuple[int, tuple[int, int, int], tuple[int, int, int]]  # label, low corner, high corner


def cube_boxes(labels: np.ndarray) -> list[Box]:
    """``[(label, lo, hi), ...]`` for OTHER, IN_SET, PIXEL: painting each box ``lo:hi`` with
    its label, in this order, reproduces ``labels`` (because :math:`S_i` is a box)."""
    boxes: list[Box] = [(OTHER, (0, 0, 0), tuple(int(s) for s in labels.shape))]
    for label, where in ((IN_SET, labels >= IN_SET), (PIXEL, labels == PIXEL)):
        cells = np.argwhere(where)
        boxes.append((label, tuple(int(v) for v in cells.min(0)),
                      tuple(int(v) for v in cells.max(0) + 1)))
    return boxes


# --------------------------------------------------------------------------------------
# Drawing one cube
# --------------------------------------------------------------------------------------
def _face_grid(lo: Sequence[int], hi: Sequence[int], axis: int, at: int) -> list:
    """Unit grid lines on the face ``coord[axis] == at`` of the box ``lo..hi``."""
    u, v = [a for a in range(3) if a != axis]
    segs = []
    for across, along in ((u, v), (v, u)):  # lines at each integer of one axis, along the other
        for t in range(lo[across], hi[across] + 1):
            p, q = [0, 0, 0], [0, 0, 0]
            p[axis] = q[axis] = at
            p[across] = q[across] = t
            p[along], q[along] = lo[along], hi[along]
            segs.append([tuple(p), tuple(q)])
    return segs


def _box_grid(lo: Sequence[int], hi: Sequence[int], view: tuple[float, float]) -> list:
    """Grid lines on the three faces of a box that face the camera at ``view``."""
    elev, azim = np.deg2rad(view)
    toward = (np.cos(azim) > 0, np.sin(azim) > 0, elev > 0)
    segs = []
    for axis in range(3):
        segs += _face_grid(lo, hi, axis, hi[axis] if toward[axis] else lo[axis])
    return segs


def _set_ticks(ax: Axes3D, shape: Sequence[int]) -> None:
    """Integer ticks at voxel centres (at most ~6 per axis)."""
    for axis, size in zip((ax.xaxis, ax.yaxis, ax.zaxis), shape):
        step = max(1, int(np.ceil(size / 6)))
        ticks = np.arange(0, size, step)
        axis.set_ticks(ticks + 0.5, [str(t) for t in ticks])


def follow_view(ax: Axes3D) -> None:
    """Move the unit grids of a cube drawn by :func:`draw_cube` to the faces that face the
    camera at the axes' current view (after it was turned with the mouse)."""
    for artist in ax.collections:
        box = getattr(artist, "gnlib_box", None)
        if box is not None:
            artist.set_segments(_box_grid(*box, (ax.elev, ax.azim)))


def clear_artists(ax: Axes) -> None:
    """Remove what the draw functions added, keeping the axes (re-creating 3D axes and their
    ticks costs more than drawing the cube)."""
    for artist in [*ax.collections, *ax.patches, *ax.images, *ax.texts, *ax.lines]:
        artist.remove()


def _box_aspect(shape: Sequence[int]) -> tuple[float, float, float]:
    """Cubic voxels where possible; no side thinner than a third of the longest, and a
    height of at most 0.6 of the base, so tall cubes stay inside a wide panel."""
    N, C, HW = (float(s) for s in shape)
    base = max(N, C)
    return max(N, base / 3), max(C, base / 3), max(min(HW, 0.6 * base), base / 3)


def draw_cube(
    ax: Axes3D,
    kind: str,
    shape: Sequence[int],
    index: Sequence[int],
    groups: int | None = None,
    *,
    title: bool = True,
    view: tuple[float, float] = VIEW,
    zoom: float = 0.88,
) -> np.ndarray:
    """Draw the cube ``shape = (N, C, HW)`` with :math:`S_i` of pixel ``index`` highlighted.

    Returns the full-resolution voxel labels that were drawn.
    """
    shape = tuple(int(s) for s in shape)
    labels = voxel_labels(kind, shape, index, groups)
    palette = cube_palette(kind)
    edges = {OTHER: (0, 0, 0, 0), IN_SET: to_rgba(NORM_COLORS[kind], 0.9), PIXEL: "black"}
    ax.computed_zorder = False  # nested boxes: draw outer to inner, the pixel always on top
    boxes = cube_boxes(labels)
    for z, (label, lo, hi) in enumerate(boxes):
        x, y, zz = np.meshgrid(*zip(lo, hi), indexing="ij")  # 2 corners per axis: one voxel
        ax.voxels(x, y, zz, np.ones((1, 1, 1), bool), facecolors=palette[label],
                  edgecolor=edges[label], linewidth=0.8, zorder=2 * z + 1)
    for (lo, hi), color, z in ((((0, 0, 0), shape), (0, 0, 0, 0.16), 2),
                               (boxes[1][1:], to_rgba(NORM_COLORS[kind], 0.7), 4)):
        grid = Line3DCollection(_box_grid(lo, hi, view), zorder=z, colors=[color],
                                linewidths=0.4 if z == 2 else 0.5)
        grid.gnlib_box = (lo, hi)  # for follow_view
        ax.add_collection3d(grid)
    ax.set_xlim(0, shape[0])
    ax.set_ylim(0, shape[1])
    ax.set_zlim(0, shape[2])
    ax.set_box_aspect(_box_aspect(shape), zoom=zoom)
    ax.view_init(*view)
    ax.grid(False)  # the unit grid above marks the voxels; tick grid lines would not
    _set_ticks(ax, shape)
    ax.tick_params(labelsize=7, pad=0)
    for set_label, text in zip((ax.set_xlabel, ax.set_ylabel, ax.set_zlabel), AXIS_LABELS):
        set_label(text, fontsize=8, labelpad=-2)
    if title:
        ax.set_title(cube_title(kind, shape[1], groups), fontsize=9, y=0.97)
    return labels


def cube_title(kind: str, C: int, groups: int | None = None) -> str:
    """``"Group Norm (G=2, C/G=4)"`` and the set definition on a second line."""
    name = NORM_LABELS[kind]
    if kind == "gn":
        name += f" (G={groups}, C/G={C // groups})"
    return f"{name}\n{SET_DEFINITIONS[kind]}"


def cube_legend_handles(kinds: Sequence[str] = SET_KINDS) -> list:
    """Proxy patches: the pixel, :math:`S_i` in each norm's colour, the other values."""
    handles = [Patch(facecolor=PIXEL_COLOR, edgecolor="black", label="pixel $i$")]
    for kind in kinds:
        handles.append(Patch(facecolor=to_rgba(NORM_COLORS[kind], SET_ALPHA),
                             edgecolor=NORM_COLORS[kind],
                             label=rf"$S_i$ of {kind.upper()} (share $\mu_i, \sigma_i$ with $i$)"))
    handles.append(Patch(facecolor=OTHER_RGBA[:3] + (0.25,), edgecolor=(0, 0, 0, 0.3),
                         label="other values (not in $S_i$)"))
    return handles


def sets_figure(
    shape: Sequence[int] = (4, 8, 6),
    index: Sequence[int] = (1, 2, 3),
    groups: int = 2,
    kinds: Sequence[str] = SET_KINDS,
    fig: Figure | None = None,
) -> Figure:
    """The paper's Figure 2: one cube per norm for the same pixel ``index``."""
    fig = fig if fig is not None else Figure(figsize=(max(3.4 * len(kinds), 8.8), 4.6))
    for k, kind in enumerate(kinds):
        ax = fig.add_subplot(1, len(kinds), k + 1, projection="3d")
        draw_cube(ax, kind, shape, index, groups if kind == "gn" else None)
    N, C, HW = shape
    fig.suptitle(f"The set $S_i$ each normalization averages over, for pixel "
                 f"$i=(i_N, i_C, i_{{HW}})={tuple(index)}$ of a feature map "
                 f"N={N}, C={C}, H·W={HW}", fontsize=11, y=0.99)
    fig.legend(handles=cube_legend_handles(kinds), loc="lower center", ncol=3, fontsize=8,
               frameon=False)
    fig.subplots_adjust(left=0.0, right=0.97, top=0.92, bottom=0.13, wspace=0.0)
    return fig


# --------------------------------------------------------------------------------------
# Which (n, c) cells share statistics: set_ids as colours
# --------------------------------------------------------------------------------------
_TAB20 = np.array(colormaps["tab20"].colors)
#: Qualitative colours ordered so that neighbouring ids never get a light/dark pair.
ID_COLORS = ListedColormap(np.concatenate([_TAB20[0::2], _TAB20[1::2]]), name="gnlib_ids")


def draw_membership(
    ax: Axes,
    kind: str,
    N: int,
    C: int,
    groups: int | None = None,
    index: Sequence[int] | None = None,
    annotate: bool | None = None,
) -> np.ndarray:
    """Colour each ``(n, c)`` cell by its set id (:func:`gnlib.sets.set_ids`).

    Cells of one colour share one :math:`\\mu, \\sigma` (over all H·W positions). With
    ``index = (i_N, i_C)`` the set of that cell is outlined and the cell marked.
    Returns the ids drawn.
    """
    ids = set_ids(kind, (N, C), groups).numpy()
    ax.imshow(ids % ID_COLORS.N, cmap=ID_COLORS, vmin=-0.5, vmax=ID_COLORS.N - 0.5,
              origin="upper", aspect="equal", interpolation="nearest")
    ax.hlines(np.arange(N + 1) - 0.5, -0.5, C - 0.5, colors="white", linewidth=1.0)
    ax.vlines(np.arange(C + 1) - 0.5, -0.5, N - 0.5, colors="white", linewidth=1.0)
    ax.set_xlim(-0.5, C - 0.5)
    ax.set_ylim(N - 0.5, -0.5)  # sample 0 on top; explicit, so reused axes shrink too
    step_c = max(1, int(np.ceil(C / 8)))
    ax.set_xticks(np.arange(0, C, step_c))
    ax.set_yticks(np.arange(N))
    ax.tick_params(labelsize=7)
    ax.set_xlabel("C (channel)", fontsize=8)
    ax.set_ylabel("N (sample)", fontsize=8)
    if annotate if annotate is not None else N * C <= 64:
        for (n, c), v in np.ndenumerate(ids):
            r, g, b, _ = ID_COLORS(v % ID_COLORS.N)
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.6          # luminance of the cell
            ax.text(c, n, str(v), ha="center", va="center", fontsize=6,
                    color="white" if dark else "black")
    if index is not None:
        in_set = np.argwhere(normalization_set(kind, (N, C), index[:2], groups).numpy())
        (n0, c0), (n1, c1) = in_set.min(0), in_set.max(0)  # S_i is a rectangle of cells
        ax.add_patch(Rectangle((c0 - 0.5, n0 - 0.5), c1 - c0 + 1, n1 - n0 + 1, fill=False,
                               edgecolor="black", linewidth=2.0))
        ax.plot(index[1], index[0], marker="*", markersize=10, color=PIXEL_COLOR,
                markeredgecolor="black", linestyle="none")
    return ids


def group_membership_figure(
    N: int = 4, C: int = 8, groups: Sequence[int] | None = None, fig: Figure | None = None
) -> Figure:
    """Small multiples of GN's set ids over ``(n, c)`` for each ``G`` (G=1 is LN, G=C is IN)."""
    groups = list(groups) if groups is not None else valid_groups(C)
    fig = fig if fig is not None else Figure(figsize=(2.6 * len(groups) + 0.4, 2.9))
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    for ax, g in zip(axes, groups):
        draw_membership(ax, "gn", N, C, g)
        same = " = LN" if g == 1 else " = IN" if g == C else ""
        ax.set_title(f"G={g}{same}\n{C // g} channel(s) per group", fontsize=9)
    for ax in axes[1:]:
        ax.set_ylabel("")
    fig.suptitle("Group Norm: cells with the same number share one "
                 r"$\mu_i, \sigma_i$ (set_ids), for each G dividing C", fontsize=10)
    handles = [Patch(facecolor=ID_COLORS(0), label=r"one number = one set $S_i$ (colours repeat after "
                                                   f"{ID_COLORS.N} sets)"),
               Patch(facecolor="0.85", edgecolor="white",
                     label="one cell = one channel of one sample (all its H·W values)")]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.05, right=0.99, top=0.72, bottom=0.22, wspace=0.25)
    return fig
