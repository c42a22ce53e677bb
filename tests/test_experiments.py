"""gnlib.experiments: grids, identities, atomic append, resume after kill -9."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch as _torch

_torch.set_num_threads(1)

from gnlib.experiments import (append_record, grid, identity, load_results, pending,
                               run_grid)
from gnlib.train import TrainConfig

TINY = dict(dataset="synthetic", train_size=64, test_size=32, epochs=1, widths=(8, 16),
            blocks=(1, 1), groups=4, eval_batch=32)


def test_grids():
    full = grid("batch-size", "full", seeds=3)
    assert len(full) == 60
    assert {(c.norm, c.batch_size) for c in full} == {
        (n, b) for n in ("bn", "ln", "in", "gn") for b in (32, 16, 8, 4, 2)}
    assert {c.norm for c in full[:30]} == {"bn", "gn"}        # the paper's comparison first
    assert [c.seed for c in full[:10]] == [0] * 10            # seed-major
    assert full[0].batch_size == 2                            # most expensive first
    assert {(c.norm, c.batch_size) for c in full[30:36]} <= {("ln", 32), ("in", 32)}
    curves = grid("curves", "full", seeds=3)
    assert {c.batch_size for c in curves} == {32} and len(curves) == 12
    assert all(c in full for c in curves)                     # shared with the batch-size grid
    groups = grid("groups", "quick", seeds=1)
    assert all(c.norm == "gn" for c in groups)
    with pytest.raises(ValueError, match="experiment"):
        grid("nope")


def test_identity_ignores_measurements():
    cfg = TrainConfig(norm="bn")
    assert identity("full", cfg) == identity("full", cfg.to_dict())
    assert identity("full", cfg) != identity("quick", cfg)
    assert identity("full", cfg) != identity("full", TrainConfig(norm="gn"))


def test_append_and_load(tmp_path):
    path = tmp_path / "r.jsonl"
    cfgs = [TrainConfig(norm=n, **TINY) for n in ("bn", "gn")]
    for c in cfgs:
        append_record(path, {"preset": "t", "config": c.to_dict(), "test_error": 1.0})
    with open(path, "ab") as f:                 # a write cut by a crash
        f.write(b'{"preset": "t", "conf')
    with pytest.warns(UserWarning, match="incomplete"):
        assert len(load_results(path)) == 2
    append_record(path, {"preset": "t", "config": cfgs[0].to_dict(), "test_error": 2.0})
    lines = path.read_text().splitlines()
    assert json.loads(lines[-1])["test_error"] == 2.0          # not glued to the cut line
    with pytest.warns(UserWarning):
        recs = load_results(path)
    assert len(recs) == 2 and sorted(r["test_error"] for r in recs) == [1.0, 2.0]
    with pytest.warns(UserWarning):
        assert pending(cfgs, "t", path, force=False) == []
        assert pending(cfgs, "t", path, force=True) == cfgs


RUNNER = """
import sys
from gnlib.experiments import run_grid
from gnlib.train import TrainConfig
if __name__ == "__main__":
    cfgs = [TrainConfig(norm=n, batch_size=b, seed=0, **{tiny}) for b in (4, 8) for n in ("bn", "gn", "ln")]
    run_grid("batch-size", "t", configs=cfgs, workers={workers}, results_dir=sys.argv[1],
             log=lambda m: None)
"""


def test_kill_and_resume(tmp_path):
    """kill -9 the whole grid (parent and workers) mid-run, then resume: no lost or
    duplicate lines, every config exactly once."""
    script = tmp_path / "runner.py"
    script.write_text(RUNNER.format(tiny=repr(TINY), workers=0))
    path = tmp_path / "batch-size.jsonl"
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], start_new_session=True)
    deadline = time.time() + 30
    while time.time() < deadline and (not path.exists() or path.read_text().count("\n") < 1):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = path.read_text().count("\n")
    assert 1 <= n_before < 6
    cfgs = [TrainConfig(norm=n, batch_size=b, seed=0, **TINY) for b in (4, 8)
            for n in ("bn", "gn", "ln")]
    assert len(pending(cfgs, "t", path, force=False)) == 6 - n_before
    run_grid("batch-size", "t", configs=cfgs, workers=0, results_dir=tmp_path, log=lambda m: None)
    lines = path.read_text().splitlines()
    assert len(lines) == 6
    ids = [identity("t", json.loads(line)["config"]) for line in lines]
    assert sorted(ids) == sorted(identity("t", c) for c in cfgs)
    rec = json.loads(lines[0])
    for key in ("git_commit", "machine", "torch", "date", "wall_s", "history", "command"):
        assert key in rec


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_kill_one_pool_worker_then_resume(tmp_path):
    """kill -9 one worker of the process pool: the parent stops with a clear error, the
    finished lines stay intact, and a rerun completes the grid without duplicates."""
    script = tmp_path / "runner.py"
    script.write_text(RUNNER.format(tiny=repr({**TINY, "epochs": 3}), workers=2))
    path = tmp_path / "batch-size.jsonl"
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and (not path.exists() or path.read_text().count("\n") < 1):
        time.sleep(0.02)
    workers = [p for p in _children(proc.pid)
               if "multiprocessing" in Path(f"/proc/{p}/cmdline").read_text(errors="ignore")
               and "resource_tracker" not in Path(f"/proc/{p}/cmdline").read_text(errors="ignore")]
    assert workers, "no pool worker found"
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    n_before = path.read_text().count("\n")
    if proc.returncode != 0:                      # usual case: the grid was cut short
        assert "resume" in err
    cfgs = [TrainConfig(norm=n, batch_size=b, seed=0, **{**TINY, "epochs": 3}) for b in (4, 8)
            for n in ("bn", "gn", "ln")]
    assert len(pending(cfgs, "t", path, force=False)) == 6 - n_before
    run_grid("batch-size", "t", configs=cfgs, workers=0, results_dir=tmp_path, log=lambda m: None)
    ids = [identity("t", json.loads(line)["config"]) for line in path.read_text().splitlines()]
    assert sorted(ids) == sorted(identity("t", c) for c in cfgs)


def test_beyond_the_paper_grids_reuse_the_batch_size_runs(tmp_path):
    from gnlib.analysis import non_iid_label
    from gnlib.experiments import load_experiment, results_path

    small = grid("small-batch", "full", seeds=3)
    assert {(c.norm, c.batch_size) for c in small} == {
        (n, b) for n in ("bn", "br", "gn", "gn+ws") for b in (4, 2)}
    assert len(small) == 24
    bs = grid("batch-size", "full", seeds=3)
    shared = [c for c in small if c in bs]
    assert {c.norm for c in shared} == {"bn", "gn"} and len(shared) == 12
    non_iid = grid("non-iid", "full", seeds=3)
    assert all(c.batch_size == 32 for c in non_iid)
    labels = {(c.norm, non_iid_label(c.to_dict())) for c in non_iid}
    assert ("gn", "16 devices x 2, i.i.d.") not in labels      # GN cannot tell: not run
    assert {l for n, l in labels if n == "syncbn"} == {"16 devices x 2, 1 class each"}
    assert ("bn", "16 devices x 2, 1 class each") in labels and "other" not in {l for _, l in labels}
    assert [c for c in non_iid if c in bs] == [c for c in non_iid if non_iid_label(c.to_dict()) == "shuffled"]
    assert {non_iid_label(c.to_dict()) for c in non_iid} == {
        "shuffled", "2 classes per batch", "16 devices x 2, i.i.d.", "32 devices x 1",
        "16 devices x 2, 1 class each"}

    # a reused run in batch-size.jsonl counts as done and is loaded with the experiment
    reused = next(c for c in grid("small-batch", "quick", seeds=1) if c.norm == "gn")
    append_record(results_path("batch-size", tmp_path),
                  {"preset": "quick", "config": reused.to_dict(), "test_error": 1.0})
    todo = pending(grid("small-batch", "quick", seeds=1), "quick",
                   results_path("small-batch", tmp_path), False,
                   [results_path("batch-size", tmp_path)])
    assert reused not in todo and len(todo) == 3
    recs = load_experiment("small-batch", "quick", seeds=1, results_dir=tmp_path)
    assert [r["config"]["norm"] for r in recs] == ["gn"]


def _record(norm, seed, err, batch_size=4, devices=1, batching="shuffled"):
    """A finished run's record as gnlib.train writes it (values made up, shape real)."""
    cfg = TrainConfig(norm=norm, batch_size=batch_size, devices=devices, batching=batching,
                      seed=seed, **TINY).to_dict()
    hist = {"epoch": [1, 2], "train_loss": [1.5, 1.0], "train_error": [40.0, err],
            "test_error": [40.0, err], "lr": [0.1, 0.0]}
    if norm == "bn":
        hist.update(bn_mean_gap=[0.2, 0.1], bn_var_ratio=[0.8, 0.9])
    return {"preset": "quick", "config": cfg, "test_error": err, "train_error": err,
            "test_error_train_mode": err + 1 if norm == "bn" else None, "diverged": False,
            "did_not_train": False, "history": hist, "wall_s": 1.0}


def test_beyond_the_paper_figures():
    import matplotlib

    matplotlib.use("Agg")
    from gnlib.plots import plot_bn_drift, plot_non_iid, plot_small_batch

    recs = [_record(n, s, 20.0 + i + s) for i, n in enumerate(("bn", "br", "gn", "gn+ws"))
            for s in (0, 1)]
    fig = plot_small_batch(recs, paper={"bn": 27.3, "br": 26.3, "gn": 24.2})
    ax = fig.axes[0]
    assert ax.get_ylabel() == "test error (%)"
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "Batch Norm", "Batch Renorm", "Group Norm", "GN + WS"]
    recs = [_record(n, 0, 30.0, 8, d, b) for n in ("bn", "gn")
            for b, d in (("shuffled", 1), ("non-iid-1", 4))]
    fig = plot_non_iid(recs)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [
        "shuffled", "4 devices x 2, 1 class each"]
    fig = plot_bn_drift(recs)
    assert fig.axes[0].get_ylabel() == "running var / var of eval-mode input"
    assert len(fig.axes[0].get_legend().get_texts()) >= 2


def test_empty_results():
    from gnlib.analysis import describe_small_batch, method_summary, runs_frame, summary_table

    assert len(runs_frame([])) == 0 and "norm" in runs_frame([]).columns
    assert len(summary_table([])) == 0 and describe_small_batch([]) == []
    table = method_summary([], [])
    assert set(table.iloc[:, -1]) == {"not run"} and len(table) == 5


def test_distributed_results_keep_the_newest_line_per_run(tmp_path):
    from gnlib.distributed import run_identity
    from gnlib.results import load_results

    path = tmp_path / "distributed.jsonl"
    a = {"preset": "full", "world_size": 2, "config": {"norm": "gn"}, "test_error": 1.0}
    path.write_text(json.dumps(a) + "\n" + json.dumps({**a, "test_error": 2.0}) + "\n{\"cut")
    with pytest.warns(UserWarning, match="incomplete line"):
        assert [r["test_error"] for r in load_results(path, key=run_identity)] == [2.0]
    assert load_results(tmp_path / "missing.jsonl", key=run_identity) == []


def test_rerun_reused_runs_only_the_reused_configs_and_reproduces_them(tmp_path):
    c1 = TrainConfig(norm="bn", batch_size=8, **TINY)
    c2 = TrainConfig(norm="bn", batch_size=8, devices=4, **TINY)
    quiet = dict(workers=0, results_dir=tmp_path, log=lambda *a: None)
    run_grid("batch-size", "quick", configs=[c1], **quiet)
    run_grid("non-iid", "quick", configs=[c1, c2], rerun_reused=True, **quiet)
    own = load_results(tmp_path / "non-iid.jsonl")
    assert [r["config"]["devices"] for r in own] == [1]          # c2 is not reused: not run
    first = load_results(tmp_path / "batch-size.jsonl")[0]
    assert own[0]["test_error"] == first["test_error"]             # deterministic rerun
    assert own[0]["history"]["train_loss"] == first["history"]["train_loss"]
    run_grid("non-iid", "quick", configs=[c1, c2], rerun_reused=True, **quiet)
    assert len(load_results(tmp_path / "non-iid.jsonl")) == 1     # done: not rerun


def test_figure1_grid_the_long_and_the_gpu_preset():
    from gnlib.experiments import figure1_configs
    from gnlib.models import norm_layers
    from gnlib.train import prepare_model

    full = grid("figure1", "full", seeds=3)
    assert len(full) == 27 and {c.batch_size for c in full} == {32}
    assert sorted({32 // c.devices for c in full if c.norm == "bn"}) == [1, 2, 4, 8, 16, 32]
    assert {c.norm for c in full if c.devices == 1} == {"bn", "gn", "ln", "in"}
    assert all(c.train_size == 60000 and c.augment and c.median_last == 1 for c in full)
    assert [c.seed for c in full] == sorted(c.seed for c in full)        # seed-major
    long = grid("figure1", "long", seeds=3)      # the same runs, twice as long
    assert [dataclasses.replace(c, epochs=10) for c in long] == full
    assert {c.epochs for c in long} == {20}
    gpu = figure1_configs("gpu", 0)
    gn = next(c for c in gpu if c.norm == "gn")
    layers = norm_layers(prepare_model(gn, _torch.device("cpu")))
    assert len(layers) == 21 and min(m.num_channels // m.num_groups for m in layers) >= 2
    with pytest.raises(ValueError, match="figure1 experiment only"):
        grid("groups", "gpu")


def test_committed_presets_are_pinned_to_the_python_kernel_and_still_find_their_records():
    """Every committed grid ran GN on the Python kernel (records written before gn_backend
    existed read as "python"): their presets pin it, so resume and the notebooks find them."""
    from gnlib.experiments import load_experiment, results_path

    for exp in ("figure1", "groups", "small-batch", "non-iid", "batch-size"):
        assert {c.gn_backend for c in grid(exp, "full")} == {"python"}
    assert {c.gn_backend for c in grid("figure1", "long")} == {"python"}
    assert {c.gn_backend for c in grid("figure1", "quick")} == {"auto"}     # the fast route
    recs = load_experiment("figure1", "full")
    assert len(recs) == 27 and all(r["config"]["gn_backend"] == "python" for r in recs)
    assert not pending(grid("figure1", "full"), "full", results_path("figure1"), force=False)
