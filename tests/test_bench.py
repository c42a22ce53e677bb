"""gnlib.bench (timing, saved memory, tables) and the speed bar chart."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from gnlib import bench  # noqa: E402
from gnlib.plots import plot_fwd_bwd_times  # noqa: E402

SHAPE, G = (2, 8, 5, 5), 4


def test_gnlib_saves_only_input_and_group_statistics():
    saved = bench.saved_memory(bench.IMPLEMENTATIONS["gnlib"], SHAPE, G)
    x_bytes, stats_bytes, weight_bytes = 2 * 8 * 25 * 4, 2 * SHAPE[0] * G * 4, 8 * 4
    assert saved.new == stats_bytes
    assert saved.total == x_bytes + stats_bytes + weight_bytes
    assert SHAPE in saved.shapes


def test_reference_saves_two_extra_full_size_tensors():
    saved = bench.saved_memory(bench.IMPLEMENTATIONS["reference"], SHAPE, G)
    assert saved.new >= 2 * 2 * 8 * 25 * 4


def test_native_and_gnlib_save_the_same_amount():
    native = bench.saved_memory(bench.IMPLEMENTATIONS["native"], SHAPE, G)
    ours = bench.saved_memory(bench.IMPLEMENTATIONS["gnlib"], SHAPE, G)
    assert native.total == ours.total


def test_time_fwd_bwd_interleaves_all_implementations():
    times = bench.time_fwd_bwd(bench.IMPLEMENTATIONS, SHAPE, G, repeats=3, warmup=1)
    assert set(times) == set(bench.IMPLEMENTATIONS)
    assert all(len(ts) == 3 and min(ts) > 0 for ts in times.values())
    medians = bench.median_times(times)
    assert medians["gnlib"] == sorted(times["gnlib"])[1]


def test_num_threads_restores_previous_count():
    before = torch.get_num_threads()
    with bench.num_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_tables_name_shapes_and_ratios():
    medians = {SHAPE: {"reference": 0.004, "gnlib": 0.001, "native": 0.0005}}
    table = bench.format_time_table(medians)
    assert "(2,8,5,5)" in table and "2.00x" in table and "4.00x" in table
    memory = {SHAPE: {k: bench.saved_memory(f, SHAPE, G) for k, f in bench.IMPLEMENTATIONS.items()}}
    assert "(2,8,5,5)" in bench.format_memory_table(memory, G)


def test_speed_plot_is_labelled():
    medians = {SHAPE: {"reference": 0.004, "gnlib": 0.001, "native": 0.0005},
               (4, 8, 3, 3): {"reference": 0.002, "gnlib": 0.001, "native": 0.0004}}
    fig = plot_fwd_bwd_times(medians, groups=G)
    ax_time, ax_ratio = fig.axes
    for ax in (ax_time, ax_ratio):
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert "ms" in ax_time.get_ylabel()
    assert len(fig.legends) == 1
    plt.close(fig)
