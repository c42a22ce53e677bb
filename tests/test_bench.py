"""gnlib.bench (timing, saved memory, tables) and the speed bar chart."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import time  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from gnlib import bench  # noqa: E402
from gnlib.bench_file import RESULTS_FILE, load_bench  # noqa: E402
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


def _recording(name, calls, pause=0.0):
    """A GN implementation that logs its name on every call (and sleeps ``pause`` s)."""
    def fn(x, groups, w, b):
        calls.append(name)
        time.sleep(pause)
        return torch.nn.functional.group_norm(x, groups, w, b)
    return fn


def test_time_fwd_bwd_interleaves_the_repeats_in_rotating_order():
    calls: list[str] = []
    fns = {"A": _recording("A", calls), "B": _recording("B", calls),
           "C": _recording("C", calls, pause=0.01)}
    times = bench.time_fwd_bwd(fns, SHAPE, G, repeats=3, warmup=2)
    warmup, rounds = calls[:6], calls[6:]
    assert warmup == list("AABBCC")
    assert rounds == list("ABC" "BCA" "CAB")       # every round runs each once, order rotated
    assert set(times) == set(fns) and all(len(ts) == 3 for ts in times.values())
    assert min(times["C"]) >= 0.01                 # each time is booked to its own function


def test_median_times():
    assert bench.median_times({"a": [3.0, 1.0, 2.0], "b": [4.0, 1.0]}) == {"a": 2.0, "b": 2.5}


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


def test_fwd_and_grads_matches_autograd_and_leaves_inputs_alone():
    x, w, b, dy = (t.detach().double() for t in bench.fwd_bwd_inputs(SHAPE))
    y, dx, dw, db = bench.fwd_and_grads(torch.nn.functional.group_norm, x, G, w, b, dy, eps=1e-3)
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    expected_y = torch.nn.functional.group_norm(leaves[0], G, leaves[1], leaves[2], eps=1e-3)
    expected = torch.autograd.grad(expected_y, leaves, dy)
    torch.testing.assert_close(y, expected_y.detach())
    for got, want in zip((dx, dw, db), expected):
        torch.testing.assert_close(got, want)
    assert x.grad is None and not x.requires_grad and not y.requires_grad


def test_gnlib_and_reference_grads_agree():
    x, w, b, dy = (t.detach().double() for t in bench.fwd_bwd_inputs(SHAPE))
    ours = bench.fwd_and_grads(bench.IMPLEMENTATIONS["gnlib"], x, G, w, b, dy)
    ref = bench.fwd_and_grads(bench.IMPLEMENTATIONS["reference"], x, G, w, b, dy)
    for a, c in zip(ours, ref):
        torch.testing.assert_close(a, c)


def _bench_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "bench_group_norm.py"
    spec = importlib.util.spec_from_file_location("bench_group_norm", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_load_bench_reads_what_the_bench_script_writes(tmp_path):
    script = _bench_script()
    medians = {(2, 8, 5, 5): {"reference": 0.00412, "gnlib": 0.00101, "native": 0.00050},
               (4, 8, 3, 3): {"reference": 0.12345, "gnlib": 0.04321, "native": 0.01}}
    cl_medians = {s: {k: 2 * v for k, v in t.items()} for s, t in medians.items()}
    text = "\n".join([
        script.header(),
        "# G=4, float32, 3 interleaved repeats per implementation, medians\n",
        "## forward + backward, 1 thread", bench.format_time_table(medians),
        *script.target_lines(medians, " (1 thr)"), "",
        "## forward + backward, 1 thread, channels_last", bench.format_time_table(cl_medians),
        *script.target_lines(cl_medians, " (1 thr, channels_last)"), "",
        "## torch.compile(group_norm_reference), 1 thread, cold compile (caches disabled)",
        "  (2, 8, 5, 5)       first call (compile)    4.5 s   compiled     0.33 ms   "
        "native     0.14 ms   compiled/native  2.26x",
        "saved to x.txt"])
    path = tmp_path / "results.txt"
    path.write_text(text + "\n")
    results = load_bench(path)
    assert results.commit and results.machine and "UTC" in results.date
    assert results.settings.startswith("G=4") and results.groups == 4 and results.path == path
    assert set(results.times) == {1}
    for shape, t in medians.items():
        for name, seconds in t.items():
            assert abs(results.times[1][shape][name] - seconds) <= 5e-6
    assert results.time_table(1) == bench.format_time_table(medians)
    assert results.time_table(1, channels_last=True) == bench.format_time_table(cl_medians)
    assert set(results.times_channels_last) == {1}
    for shape, t in cl_medians.items():
        for name, seconds in t.items():
            assert abs(results.times_channels_last[1][shape][name] - seconds) <= 5e-6
    assert results.compiled[(2, 8, 5, 5)] == pytest.approx(
        {"compile_s": 4.5, "compiled": 0.00033, "native": 0.00014})
    assert "first call" in results.section("torch.compile")
    prov = results.provenance
    assert results.commit in prov and results.date in prov and results.machine in prov


def _table_rows(results, channels_last: bool):
    """``(shape, {column name: printed text})`` per row of a 1-thread time table, the names
    read from its header line."""
    lines = results.time_table(1, channels_last).splitlines()
    names = lines[0].split("(ms")[0].split()[1:]                # after "shape"
    for line in lines[1:]:
        cols = line.split()
        yield tuple(int(v) for v in cols[0].strip("()").split(",")), dict(zip(names, cols[1:]))


def test_committed_results_file_has_provenance_and_the_bench_shapes():
    results = load_bench()
    assert results.path == RESULTS_FILE
    assert results.commit != "unknown" and "cores" in results.machine
    shapes = [tuple(s) for s in _bench_script().SHAPES]
    assert list(results.times[1]) == shapes and list(results.times_channels_last[1]) == shapes
    for cl in (False, True):
        for _, row in _table_rows(results, cl):                 # printed ratios = ms ratios
            pairs = [("gnlib", "gnlib/native")] + [("gnlib-cpp", "cpp/native")] * ("cpp/native" in row)
            for name, ratio in pairs:
                printed = float(row[ratio].rstrip("x"))
                assert abs(float(row[name]) / float(row["native"]) - printed) < 0.1 * printed


def test_load_bench_reads_the_printed_ratio_columns(tmp_path):
    """The ratios as printed (from the unrounded medians), not recomputed from rounded ms."""
    script = _bench_script()
    medians = {(2, 8, 5, 5): {"reference": 0.000794, "gnlib": 0.000616, "native": 0.000217}}
    text = "\n".join([
        script.header("two training processes at nice 19"),
        "# G=4, float32, 3 interleaved repeats per implementation, medians\n",
        "## forward + backward, 2 threads", bench.format_time_table(medians),
        *script.target_lines(medians, " (2 thr)"), "",
        "## forward + backward, 2 threads, channels_last", bench.format_time_table(medians), "",
        "## torch.compile(group_norm_reference), 1 thread, cold compile (caches disabled)",
        "  (2, 8, 5, 5)       first call (compile)    4.5 s   compiled     0.29 ms   "
        "native     0.14 ms   compiled/native  2.15x"])
    path = tmp_path / "results.txt"
    path.write_text(text + "\n")
    results = load_bench(path)
    t = medians[(2, 8, 5, 5)]
    expected = {"gnlib/native": round(t["gnlib"] / t["native"], 2),
                "ref/gnlib": round(t["reference"] / t["gnlib"], 2)}
    assert results.ratios[2][(2, 8, 5, 5)] == pytest.approx(expected)
    assert results.ratios_channels_last[2][(2, 8, 5, 5)] == pytest.approx(expected)
    rounded = results.times[2][(2, 8, 5, 5)]
    assert round(rounded["gnlib"] / rounded["native"], 2) != expected["gnlib/native"]
    assert results.compiled_ratios == {(2, 8, 5, 5): 2.15}
    assert results.note == "two training processes at nice 19"
    assert "note: two training processes at nice 19" in results.provenance


def test_committed_results_file_ratios_are_the_printed_columns():
    results = load_bench()
    for threads, table in results.ratios.items():
        assert list(table) == list(results.times[threads])
    for cl in (False, True):
        ratios = (results.ratios_channels_last if cl else results.ratios)[1]
        for shape, row in _table_rows(results, cl):
            assert ratios[shape] == {k: float(v.rstrip("x")) for k, v in row.items() if "/" in k}
    assert set(results.compiled_ratios) == set(results.compiled)


def test_load_bench_rejects_a_file_without_provenance(tmp_path):
    path = tmp_path / "results.txt"
    path.write_text("## forward + backward, 1 thread\n")
    with pytest.raises(ValueError, match="provenance"):
        load_bench(path)


def test_speed_colors_do_not_reuse_other_norms_colors():
    from gnlib.plots import NORM_COLORS
    from gnlib.plots.speed import IMPL_COLORS

    others = {v for k, v in NORM_COLORS.items() if k != "gn"}
    assert not others & set(IMPL_COLORS.values())
    assert IMPL_COLORS["gnlib"] == NORM_COLORS["gn"]


def test_speed_plot_source_in_title():
    medians = {SHAPE: {"reference": 0.004, "gnlib": 0.001, "native": 0.0005}}
    fig = plot_fwd_bwd_times(medians, groups=G, source="results.txt, git abc123")
    assert "git abc123" in fig._suptitle.get_text()
    plt.close(fig)


def test_profile_mode_writes_operator_counts_of_gnlib_and_native(tmp_path, monkeypatch):
    """``--profile FILE`` skips the timing and writes one profiler table per implementation and
    shape; gnlib's forward + backward is many more ATen calls than the native kernel's."""
    import re

    script = _bench_script()
    monkeypatch.setattr(script, "PROFILE_SHAPES", [(2, 8, 3, 3)])
    out = tmp_path / "profile.txt"
    script.main(["--groups", "4", "--profile", str(out)])
    text = out.read_text()
    assert text.startswith("# bench_group_norm.py") and "git " in text
    counts = dict(re.findall(r"^## (\w+), \(2, 8, 3, 3\): (\d+) aten operator calls", text, re.M))
    assert set(counts) == {"gnlib", "native"}
    assert int(counts["gnlib"]) > 3 * int(counts["native"]) > 0
    assert "## forward + backward" not in text                    # no timing tables


def test_time_table_with_the_cpp_kernel_reads_back_by_column_name(tmp_path):
    """A ``gnlib-cpp`` entry adds its ms column and a ``cpp/native`` ratio (with its own target
    line); :func:`load_bench` reads every column by the header's names."""
    script = _bench_script()
    medians = {(2, 8, 5, 5): {"reference": 0.00412, "gnlib": 0.00101, "native": 0.00050,
                              "gnlib-cpp": 0.00060},
               (4, 8, 3, 3): {"reference": 0.012, "gnlib": 0.004, "native": 0.001,
                              "gnlib-cpp": 0.0016}}
    table = bench.format_time_table(medians)
    assert table.splitlines()[0].split()[:9] == [
        "shape", "reference", "gnlib", "native", "gnlib-cpp", "gnlib/native", "ref/gnlib",
        "cpp/native", "(ms,"]
    targets = script.target_lines(medians, " (1 thr)")
    assert any("cpp/native  1.20x (target <= 1.5 stretch met)  OK (1 thr)" in ln for ln in targets)
    assert any("cpp/native  1.60x (target <= 1.5)  MISSED (1 thr)" in ln for ln in targets)
    text = "\n".join([script.header(), "# G=4, float32, 3 interleaved repeats per implementation,"
                      " medians\n", "## forward + backward, 1 thread", table, *targets, ""])
    path = tmp_path / "results.txt"
    path.write_text(text + "\n")
    results = load_bench(path)
    for shape, t in medians.items():
        assert results.times[1][shape] == pytest.approx(t, abs=5e-6)
        assert results.ratios[1][shape] == pytest.approx(
            {"gnlib/native": t["gnlib"] / t["native"], "ref/gnlib": t["reference"] / t["gnlib"],
             "cpp/native": t["gnlib-cpp"] / t["native"]}, abs=0.005)
    assert results.time_table(1) == table
    assert bench.format_time_table({s: {k: v for k, v in t.items() if k != "gnlib-cpp"}
                                    for s, t in medians.items()}).count("cpp") == 0
