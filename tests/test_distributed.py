"""gnlib.distributed: 2 CPU processes with gloo (no GPU, no data files needed).

Starting processes is the slow part (each imports torch), so one 2-process session runs every
check and writes its results to JSON files; the tests below read them. A second test starts
the real CLI through ``torchrun``.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

WORLD = 2
ROWS = 4  # samples per process in the statistics checks


def _full_batch(dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(WORLD * ROWS, 3, 5, 5, generator=g, dtype=dtype) * 3 + 1.5
    dy = torch.randn(WORLD * ROWS, 3, 5, 5, generator=g, dtype=dtype)
    return x, dy


def _gather(t: torch.Tensor) -> list[torch.Tensor]:
    out = [torch.empty_like(t) for _ in range(WORLD)]
    dist.all_gather(out, t.contiguous())
    return out


def _session_worker(rank: int, tmp: str) -> None:
    """Every multi-process check; results go to ``tmp/rank{rank}.json``."""
    from gnlib import distributed as gd

    torch.set_num_threads(1)
    res: dict = {}
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD))
    dist.init_process_group("gloo", init_method=f"file://{tmp}/init-checks", rank=rank,
                            world_size=WORLD)
    try:
        x_full, dy_full = _full_batch()
        rows = slice(rank * ROWS, (rank + 1) * ROWS)
        # 1. global statistics from an all_reduce of (count, sum, sum of squares)
        mean, var, count = gd.global_batch_stats(x_full[rows])
        res["stats"] = {"mean": mean.tolist(), "var": var.tolist(), "count": count}

        # 2. GlobalBatchNorm2d: forward, backward and running stats of full-batch BN
        layer = gd.GlobalBatchNorm2d(3, momentum=0.3).double()
        with torch.no_grad():
            layer.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
            layer.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        x = x_full[rows].clone().requires_grad_()
        y = layer(x)
        dx, dw, db = torch.autograd.grad(y, (x, layer.weight, layer.bias), dy_full[rows])
        dist.all_reduce(dw)
        dist.all_reduce(db)
        res["gbn"] = {"y": y.tolist(), "dx": dx.tolist(), "dw": dw.tolist(), "db": db.tolist(),
                      "running_mean": layer.running_mean.tolist(),
                      "running_var": layer.running_var.tolist()}

        # 3. torch's SyncBatchNorm on CPU tensors
        try:
            gd.check_syncbn_supported(torch.device("cpu"))
            res["syncbn_cpu"] = "supported"
        except gd.SyncBNUnavailableError as err:
            res["syncbn_cpu"] = str(err)

        # 4. GN under DDP: weights stay identical, identical inputs give identical outputs
        torch.manual_seed(0)
        model = gd.build_model("gn", width=8, groups=4)
        ddp = nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        g = torch.Generator().manual_seed(100 + rank)  # different data on each rank
        for _ in range(3):
            xb = torch.randn(2, 1, 28, 28, generator=g)
            yb = torch.randint(0, 10, (2,), generator=g)
            opt.zero_grad()
            F.cross_entropy(ddp(xb), yb).backward()
            opt.step()
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        res["gn_params_equal"] = all(torch.equal(flat, t) for t in _gather(flat))
        same = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            out = model.train()(same)
            res["gn_outputs_equal"] = all(torch.equal(out, t) for t in _gather(out))
            # batch independence: the rank's half of the batch alone gives the same rows
            alone = model(same[rank * 2:(rank + 1) * 2])
            res["gn_batch_independent"] = torch.allclose(alone, out[rank * 2:(rank + 1) * 2],
                                                         atol=1e-6, rtol=0)
    finally:
        dist.destroy_process_group()

    # 5. the CLI's main() end to end (gbn: training with global statistics on CPU)
    out_file = Path(tmp) / "summary.json"
    res["main_rc"] = gd.main(["--norm", "gbn", "--steps", "6", "--warmup-steps", "2",
                              "--timing-steps", "2", "--train-size", "64", "--test-size", "32",
                              "--output", str(out_file), "--timeout-s", "30"],
                             init_method=f"file://{tmp}/init-main")
    res["initialized_after_main"] = dist.is_initialized()

    # 6. a failing rank: both ranks end with an error, neither hangs, the group is destroyed
    t0 = time.perf_counter()
    try:
        gd.main(["--norm", "bn", "--steps", "20", "--fail-at-step", "2", "--fail-rank", "1",
                 "--train-size", "64", "--test-size", "32", "--timeout-s", "15"],
                init_method=f"file://{tmp}/init-fail")
        res["fail_error"] = None
    except Exception as err:  # noqa: BLE001 - recorded for the test
        res["fail_error"] = f"{type(err).__name__}: {err}"
    res["fail_seconds"] = time.perf_counter() - t0
    res["initialized_after_failure"] = dist.is_initialized()
    (Path(tmp) / f"rank{rank}.json").write_text(json.dumps(res))


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("dist")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_session_worker, args=(r, str(tmp))) for r in range(WORLD)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 120
    for p in procs:
        p.join(max(1.0, deadline - time.monotonic()))
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, "a worker hung (killed after 120 s)"
    assert [p.exitcode for p in procs] == [0] * WORLD, [p.exitcode for p in procs]
    results = [json.loads((tmp / f"rank{r}.json").read_text()) for r in range(WORLD)]
    results[0]["summary"] = json.loads((tmp / "summary.json").read_text())
    return results


def test_global_statistics_equal_single_process_full_batch_bn(session):
    x_full, _ = _full_batch()
    bn = nn.BatchNorm2d(3, momentum=1.0).double().train()
    bn(x_full)  # momentum 1: running_mean = batch mean, running_var = unbiased batch var
    m = x_full.numel() // 3
    want_mean = x_full.mean(dim=(0, 2, 3))
    want_var = x_full.var(dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(bn.running_mean, want_mean)
    for r in session:
        got = r["stats"]
        assert got["count"] == m
        torch.testing.assert_close(torch.tensor(got["mean"], dtype=torch.float64), want_mean,
                                   atol=1e-6, rtol=0)
        torch.testing.assert_close(torch.tensor(got["var"], dtype=torch.float64), want_var,
                                   atol=1e-6, rtol=0)


def test_global_batch_norm_equals_full_batch_bn_forward_backward_running_stats(session):
    x_full, dy_full = _full_batch()
    bn = nn.BatchNorm2d(3, momentum=0.3).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    x = x_full.clone().requires_grad_()
    y = bn(x)
    dx, dw, db = torch.autograd.grad(y, (x, bn.weight, bn.bias), dy_full)
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    for rank, r in enumerate(session):
        rows = slice(rank * ROWS, (rank + 1) * ROWS)
        g = r["gbn"]
        torch.testing.assert_close(t(g["y"]), y[rows].detach(), atol=1e-6, rtol=0)
        torch.testing.assert_close(t(g["dx"]), dx[rows], atol=1e-6, rtol=0)
        torch.testing.assert_close(t(g["dw"]), dw, atol=1e-6, rtol=0)
        torch.testing.assert_close(t(g["db"]), db, atol=1e-6, rtol=0)
        torch.testing.assert_close(t(g["running_mean"]), bn.running_mean, atol=1e-6, rtol=0)
        torch.testing.assert_close(t(g["running_var"]), bn.running_var, atol=1e-6, rtol=0)


def test_syncbn_on_cpu_is_reported_clearly(session):
    msg = session[0]["syncbn_cpu"]
    if msg == "supported":  # a future PyTorch may run SyncBatchNorm on CPU
        pytest.skip("this PyTorch runs SyncBatchNorm on CPU")
    assert "--norm syncbn needs CUDA" in msg and "--norm gbn" in msg
    assert session[1]["syncbn_cpu"] == msg


def test_gn_identical_across_processes_and_batch_independent(session):
    for r in session:
        assert r["gn_params_equal"] is True
        assert r["gn_outputs_equal"] is True
        assert r["gn_batch_independent"] is True


def test_main_runs_and_rank0_writes_the_summary(session):
    assert [r["main_rc"] for r in session] == [0, 0]
    assert not any(r["initialized_after_main"] for r in session)
    s = session[0]["summary"]
    assert (s["norm"], s["world_size"], s["backend"], s["global_batch"]) == ("gbn", 2, "gloo", 4)
    assert s["bn_statistics_batch"] == 4
    for key in ("step_ms", "step_ms_no_grad_sync", "grad_allreduce_ms", "allreduce_bench_ms",
                "val_error", "final_loss"):
        assert isinstance(s[key], (int, float)), key
    assert 0 <= s["val_error"] <= 100


def test_failing_rank_shuts_down_cleanly(session):
    r0, r1 = session
    assert "injected failure on rank 1 at step 2" in r1["fail_error"]
    assert r0["fail_error"] is not None  # the peer got an error instead of hanging
    assert r0["fail_seconds"] < 15, "rank 0 waited for the collective timeout"
    assert not r0["initialized_after_failure"] and not r1["initialized_after_failure"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_cli_prints_json_summary():
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or \
        shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not found")
    cmd = [torchrun, "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "gnlib.distributed", "--norm", "gn",
           "--batch-per-process", "2", "--steps", "5", "--warmup-steps", "1",
           "--timing-steps", "2", "--train-size", "64", "--test-size", "32"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, proc.stdout  # rank 0 only
    s = json.loads(lines[0])
    assert (s["norm"], s["world_size"], s["batch_per_process"]) == ("gn", 2, 2)
    assert "none" in s["stats_communication"]


def test_cli_without_torchrun_says_how_to_start(capsys, monkeypatch):
    from gnlib import distributed as gd

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert gd.main(["--norm", "gn"]) == 2
    assert "torchrun --nproc_per_node=2 -m gnlib.distributed" in capsys.readouterr().err


def test_single_process_helpers_and_errors():
    from gnlib import distributed as gd

    x = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    mean, var, count = gd.global_batch_stats(x)  # no process group: local statistics
    torch.testing.assert_close(mean, x.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(var, x.var(dim=(0, 2, 3), unbiased=False))
    assert count == 16
    bn, gbn = nn.BatchNorm2d(3).double(), gd.convert_to_global_bn(nn.BatchNorm2d(3).double())
    assert isinstance(gbn, gd.GlobalBatchNorm2d)
    torch.testing.assert_close(gbn(x), bn(x))  # without a group it is plain BN
    model = gd.build_model("gbn")
    assert sum(isinstance(m, gd.GlobalBatchNorm2d) for m in model.modules()) == 2
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in gd.build_model("syncbn").modules()) == 2
    with pytest.raises(ValueError, match="unknown norm 'ln'"):
        gd.build_model("ln")
    with pytest.raises(SystemExit):
        gd.parse_args(["--norm", "ln"])
    with pytest.raises(ValueError, match="batch_per_process must be >= 1"):
        gd.parse_args(["--batch-per-process", "0"])


def test_reproduce_appends_records_with_provenance_and_skips_done_runs(tmp_path, monkeypatch):
    """``python -m gnlib reproduce distributed`` (through torchrun) on a tiny synthetic run."""
    from gnlib import distributed as gd

    monkeypatch.setitem(gd.REPRODUCE_PRESETS, "quick", dict(
        model="tiny", data="synthetic", train_size=64, test_size=32, batch_per_process=2,
        steps=4, warmup_steps=1, timing_steps=2))
    logs: list[str] = []
    path = gd.reproduce("quick", norms=("gn",), results_dir=tmp_path, log=logs.append)
    recs = gd.load_results_plain(path)
    assert len(recs) == 1
    rec = recs[0]
    assert rec["norm"] == "gn" and rec["world_size"] == 2 and rec["preset"] == "quick"
    for key in ("git_commit", "command", "date", "machine", "torch", "step_ms",
                "grad_allreduce_ms"):
        assert rec[key] is not None, key
    assert rec["command"].startswith("torchrun --standalone --nproc_per_node=2 -m gnlib.distributed --norm gn")
    gd.reproduce("quick", norms=("gn",), results_dir=tmp_path, log=logs.append)
    assert len(gd.load_results_plain(path)) == 1 and logs[-1].endswith("done, skipped")
    with pytest.raises(ValueError, match="preset"):
        gd.reproduce("huge", results_dir=tmp_path)
