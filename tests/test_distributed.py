"""gnlib.distributed (and GlobalBatchNorm2d): 2 CPU processes with gloo (no GPU, no data files).

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

import math
from dataclasses import asdict, fields

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from gnlib.norms import GlobalBatchNorm2d, convert_to_global_bn
from gnlib.norms import per_device_bn
from gnlib.norms.per_device_bn import global_batch_stats

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
    from helpers import fail_at_step

    torch.set_num_threads(1)
    res: dict = {}
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD))
    dist.init_process_group("gloo", init_method=f"file://{tmp}/init-checks", rank=rank,
                            world_size=WORLD)
    try:
        x_full, dy_full = _full_batch()
        rows = slice(rank * ROWS, (rank + 1) * ROWS)
        # 1. global statistics from an all_reduce of (count, sum, sum of squares)
        mean, var, count = global_batch_stats(x_full[rows])
        res["stats"] = {"mean": mean.tolist(), "var": var.tolist(), "count": count}

        # 2. GlobalBatchNorm2d: forward, backward and running stats of full-batch BN
        layer = GlobalBatchNorm2d(3, momentum=0.3).double()
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
        model = gd.dist_model("gn", width=8, groups=4)
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
        with fail_at_step(2, rank=1):
            gd.main(["--norm", "bn", "--steps", "20", "--train-size", "64", "--test-size", "32",
                     "--timeout-s", "15"], init_method=f"file://{tmp}/init-fail")
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
    from gnlib.dist_config import STATS_COMMUNICATION, DistConfig
    from gnlib.dist_model import dist_model
    from gnlib.models import count_params

    assert [r["main_rc"] for r in session] == [0, 0]
    assert not any(r["initialized_after_main"] for r in session)
    s = session[0]["summary"]
    assert (s["norm"], s["world_size"], s["backend"], s["global_batch"]) == ("gbn", 2, "gloo", 4)
    assert s["bn_statistics_batch"] == 4 and s["steps"] == 6
    assert s["stats_communication"] == STATS_COMMUNICATION["gbn"]
    cfg = DistConfig(norm="gbn", steps=6, warmup_steps=2, timing_steps=2, train_size=64,
                     test_size=32, timeout_s=30)
    assert s["config"] == asdict(cfg)
    assert s["lr"] == pytest.approx(0.1 * 4 / 32)                     # base_lr * global batch / 32
    assert s["params"] == count_params(dist_model("gbn"))
    assert "val_error" not in s
    wrong = s["test_error"] * 32 / 100                                # 32 test images in all
    assert 0 <= wrong <= 32 and abs(wrong - round(wrong)) < 1e-3
    assert math.isfinite(s["final_loss"]) and s["final_loss"] > 0
    for key in ("step_ms", "step_ms_no_grad_sync", "allreduce_bench_ms"):
        assert s[key] > 0, key
    assert s["grad_allreduce_ms"] == pytest.approx(s["step_ms"] - s["step_ms_no_grad_sync"],
                                                   abs=2e-3)


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
    from gnlib.models import build_model, norm_layers

    assert gd.GlobalBatchNorm2d is GlobalBatchNorm2d            # its former home still works
    x = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    mean, var, count = global_batch_stats(x)  # no process group: local statistics
    torch.testing.assert_close(mean, x.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(var, x.var(dim=(0, 2, 3), unbiased=False))
    assert count == 16
    bn, gbn = nn.BatchNorm2d(3).double(), convert_to_global_bn(nn.BatchNorm2d(3).double())
    assert isinstance(gbn, GlobalBatchNorm2d)
    torch.testing.assert_close(gbn(x), bn(x))  # without a group it is plain BN
    n_bn = len(norm_layers(build_model("bn", widths=(8, 16))))
    model = gd.dist_model("gbn")
    assert sum(isinstance(m, GlobalBatchNorm2d) for m in model.modules()) == n_bn == 7
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in gd.dist_model("syncbn").modules()) == n_bn
    with pytest.raises(ValueError, match="unknown norm 'ln'"):
        gd.dist_model("ln")
    with pytest.raises(SystemExit):
        gd.parse_args(["--norm", "ln"])
    with pytest.raises(ValueError, match="batch_per_process must be >= 1"):
        gd.parse_args(["--batch-per-process", "0"])


def _old_running_stats_update(layer, mean, var, count):
    """GlobalBatchNorm2d's running-statistics update before it used update_running_stats."""
    layer.num_batches_tracked.add_(1)
    a = layer.momentum if layer.momentum is not None \
        else 1.0 / float(layer.num_batches_tracked.item())
    layer.running_mean.lerp_(mean.detach().to(layer.running_mean.dtype), a)
    unbiased = var.detach() * (count / (count - 1))
    layer.running_var.lerp_(unbiased.to(layer.running_var.dtype), a)


@pytest.mark.parametrize("momentum", [0.1, None, 0.3])
def test_global_bn_running_stats_equal_the_former_formula_bit_for_bit(momentum, monkeypatch):
    """The global path in one process (the all-reduce replaced by the identity): the shared
    update_running_stats gives exactly the numbers of the formula it replaced."""
    monkeypatch.setattr(per_device_bn, "world_size", lambda group=None: 2)
    monkeypatch.setattr(per_device_bn, "_sum_over_processes", lambda t, group, diff: t)
    layer, old = GlobalBatchNorm2d(3, momentum=momentum), GlobalBatchNorm2d(3, momentum=momentum)
    g = torch.Generator().manual_seed(3)
    for _ in range(4):
        x = torch.randn(5, 3, 4, 4, generator=g) * 2 + 1
        layer(x)
        mean, var, count = global_batch_stats(x)
        with torch.no_grad():
            _old_running_stats_update(old, mean, var, count)
    assert torch.equal(layer.running_mean, old.running_mean)
    assert torch.equal(layer.running_var, old.running_var)
    assert int(layer.num_batches_tracked) == 4


def test_global_bn_momentum_none_is_the_cumulative_average(monkeypatch):
    monkeypatch.setattr(per_device_bn, "world_size", lambda group=None: 2)
    monkeypatch.setattr(per_device_bn, "_sum_over_processes", lambda t, group, diff: t)
    layer = GlobalBatchNorm2d(2, momentum=None).double()
    xs = [torch.randn(4, 2, 3, 3, dtype=torch.float64) * (k + 1) for k in range(3)]
    for x in xs:
        layer(x)
    torch.testing.assert_close(layer.running_mean,
                               torch.stack([x.mean(dim=(0, 2, 3)) for x in xs]).mean(0))
    torch.testing.assert_close(layer.running_var,
                               torch.stack([x.var(dim=(0, 2, 3)) for x in xs]).mean(0))


def test_cli_is_generated_from_the_config_fields():
    from gnlib import distributed as gd
    from gnlib.dist_config import DistConfig

    assert gd.parse_args([]) == (DistConfig(), None)
    changed = dict(norm="bn", batch_per_process=3, steps=7, warmup_steps=1, timing_steps=2,
                   base_lr=0.3, momentum=0.5, weight_decay=0.0, data="fashion-mnist",
                   train_size=99, test_size=98, model="resnet", width=4, groups=2, seed=5,
                   backend="gloo", threads=2, timeout_s=9.5)
    assert set(changed) == {f.name for f in fields(DistConfig)}    # every field is a flag
    argv = [a for k, v in changed.items() for a in (f"--{k.replace('_', '-')}", str(v))]
    cfg, out = gd.parse_args(argv + ["--output", "s.json"])
    assert asdict(cfg) == changed and out == "s.json"
    assert isinstance(cfg.groups, int) and isinstance(cfg.timeout_s, float)


@pytest.mark.parametrize("bad, match", [
    (dict(norm="ln"), "unknown norm"), (dict(data="mnist"), "unknown data"),
    (dict(model="vgg"), "unknown model"), (dict(backend="mpi"), "unknown backend"),
    (dict(steps=0), "steps must be >= 1"), (dict(warmup_steps=-1), "warmup_steps"),
    (dict(groups=0), "groups must be >= 1"), (dict(timeout_s=0), "timeout_s must be positive"),
])
def test_config_checks_its_arguments_on_creation(bad, match):
    from gnlib.dist_config import DistConfig

    with pytest.raises(ValueError, match=match):
        DistConfig(**bad)


def test_reproduce_appends_records_with_provenance_and_skips_done_runs(tmp_path, monkeypatch):
    """``python -m gnlib reproduce distributed`` (through torchrun) on a tiny synthetic run."""
    from gnlib import distributed as gd
    from gnlib.results import load_results

    monkeypatch.setitem(gd.REPRODUCE_PRESETS, "quick", dict(
        model="tiny", data="synthetic", train_size=64, test_size=32, batch_per_process=2,
        steps=4, warmup_steps=1, timing_steps=2))
    logs: list[str] = []
    path = gd.reproduce("quick", norms=("gn",), results_dir=tmp_path, log=logs.append)
    recs = load_results(path, key=gd.run_identity)
    assert len(recs) == 1
    rec = recs[0]
    assert rec["norm"] == "gn" and rec["world_size"] == 2 and rec["preset"] == "quick"
    for key in ("git_commit", "command", "date", "machine", "torch", "step_ms",
                "grad_allreduce_ms", "test_error"):
        assert rec[key] is not None, key
    assert "val_error" not in json.loads(path.read_text())
    assert rec["command"] == ("torchrun --standalone --nproc_per_node=2 -m gnlib.distributed "
                              "--norm gn --seed 0 --model tiny --data synthetic --train-size 64 "
                              "--test-size 32 --batch-per-process 2 --steps 4 --warmup-steps 1 "
                              "--timing-steps 2")
    gd.reproduce("quick", norms=("gn",), results_dir=tmp_path, log=logs.append)
    assert len(load_results(path, key=gd.run_identity)) == 1
    assert logs[-2].endswith("done, skipped") and logs[-1].startswith("1 runs; command: torchrun")
    with pytest.raises(ValueError, match="preset"):
        gd.reproduce("huge", results_dir=tmp_path)


def test_older_records_read_as_test_error_and_keep_their_identity(tmp_path, monkeypatch):
    """A record written before the split (``val_error``; a config with the test-only
    ``fail_at_step`` / ``fail_rank``) reads with ``test_error`` and counts as done."""
    from gnlib import dist_reproduce
    from gnlib.dist_config import DistConfig
    from gnlib.results import load_results

    cfg = {**asdict(DistConfig(norm="gn", seed=0, **dist_reproduce.REPRODUCE_PRESETS["full"])),
           "fail_at_step": -1, "fail_rank": 1}
    old = {"preset": "full", "world_size": 2, "config": cfg, "val_error": 17.5, "norm": "gn",
           "date": "2024-01-01T00:00:00+00:00"}
    path = tmp_path / "distributed.jsonl"
    path.write_text(json.dumps(old) + "\n")
    (rec,) = load_results(path, key=dist_reproduce.run_identity)
    assert rec["test_error"] == 17.5 and "val_error" not in rec

    def no_torchrun(*a, **k):
        raise AssertionError("a finished run was started again")

    monkeypatch.setattr(dist_reproduce, "torchrun_summary", no_torchrun)
    logs: list[str] = []
    dist_reproduce.reproduce("full", norms=("gn",), results_dir=tmp_path, log=logs.append)
    assert logs[0] == "gn seed=0: done, skipped"
