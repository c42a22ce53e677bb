r"""One data-parallel run, step by step: what every rank of ``torchrun -m gnlib.distributed``
executes between joining the process group and leaving it.

1. :func:`init_process_group`: join the group (``torchrun``'s environment, or an
   ``init_method`` with ``RANK`` / ``WORLD_SIZE`` set); :func:`shutdown` leaves it;
2. :func:`setup`: the data (:mod:`gnlib.train`'s), this rank's slice of every global batch,
   the DDP model (:mod:`gnlib.dist_model`) and SGD with :math:`\eta = \eta_0 \cdot bW/32`;
3. :func:`train_loop`: ``steps`` timed SGD steps (:func:`train_step`);
4. :func:`evaluate`: the test error in eval mode, every rank on its shard of the test set;
5. :func:`time_without_grad_sync` and :func:`timings`: the same step under ``ddp.no_sync()``,
   so that the difference is the cost of DDP's gradient all-reduce;
6. :func:`summary`: the JSON-ready record rank 0 prints.

:func:`run` chains steps 2-6.
"""
from __future__ import annotations

import datetime
import gc
import math
import os
import platform
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from .dist_config import STATS_COMMUNICATION, DistConfig
from .dist_model import build_ddp_model, check_syncbn_supported
from .dist_timing import max_over_ranks, median_ms, sync, time_all_reduce
from .sampling import shuffled_batches

__all__ = ["RunState", "device_and_backend", "evaluate", "init_process_group", "load_data",
           "mean_final_loss", "rank_batches", "run", "setup", "shutdown", "summary",
           "time_without_grad_sync", "timings", "train_loop", "train_step"]


@dataclass
class RunState:
    """What the steps of one run share (made by :func:`setup`)."""

    cfg: DistConfig
    rank: int
    world: int
    device: torch.device
    backend: str
    ddp: nn.Module
    model: nn.Module
    opt: torch.optim.Optimizer
    data: tuple[Tensor, Tensor, Tensor, Tensor]      # xtr, ytr, xte, yte (float images)
    batches: Iterator[Tensor]                        # this rank's indices, step after step

    @property
    def global_batch(self) -> int:
        return self.cfg.batch_per_process * self.world

    @property
    def lr(self) -> float:
        """Linear scaling: ``base_lr * global_batch / 32``."""
        return self.cfg.base_lr * self.global_batch / 32


def device_and_backend(cfg: DistConfig) -> tuple[torch.device, str]:
    """NCCL on ``cuda:LOCAL_RANK`` when CUDA is there (``backend="auto"``), else gloo on CPU."""
    cuda = torch.cuda.is_available()
    backend = cfg.backend if cfg.backend != "auto" else ("nccl" if cuda else "gloo")
    if backend == "nccl" and not cuda:
        raise RuntimeError("--backend nccl needs CUDA, which is not available; use gloo")
    if cuda and backend == "nccl":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local), backend
    return torch.device("cpu"), backend


def init_process_group(cfg: DistConfig, init_method: str | None = None) -> None:
    """Join the process group; a collective waits at most ``cfg.timeout_s`` for a peer."""
    _, backend = device_and_backend(cfg)
    kwargs: dict[str, Any] = {"timeout": datetime.timedelta(seconds=cfg.timeout_s)}
    if init_method is not None:
        kwargs.update(init_method=init_method, rank=int(os.environ.get("RANK", "0")),
                      world_size=int(os.environ["WORLD_SIZE"]))
    dist.init_process_group(backend, **kwargs)


def shutdown() -> None:
    """Leave the process group, if joined (DDP's reducer, kept alive by reference cycles,
    is collected first)."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def load_data(cfg: DistConfig) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Float ``(xtr, ytr, xte, yte)``: Fashion-MNIST as :func:`gnlib.train.get_data` loads
    it, or ``train_size`` / ``test_size`` images of :func:`gnlib.train.synthetic_data`."""
    from .data import to_float
    from .train import TrainConfig, get_data, synthetic_data

    if cfg.data == "fashion-mnist":
        return get_data(TrainConfig(dataset="fashion-mnist", train_size=cfg.train_size,
                                    test_size=cfg.test_size))
    xtr, ytr, xte, yte = synthetic_data(cfg.train_size, cfg.test_size, seed=cfg.seed)
    return to_float(xtr), ytr, to_float(xte), yte


def rank_batches(n: int, cfg: DistConfig, rank: int, world: int) -> Iterator[Tensor]:
    """Rank ``rank``'s slice of every global batch of ``batch_per_process * world`` images,
    epoch after epoch: the same seeded order on every rank, so the slices never overlap."""
    b = cfg.batch_per_process
    gen = torch.Generator().manual_seed(cfg.seed)
    while True:
        for idx in shuffled_batches(n, b * world, gen, drop_last=True):
            yield idx[rank * b:(rank + 1) * b]


def setup(cfg: DistConfig) -> RunState:
    """Everything a run needs on this rank (needs an initialized process group)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    device, backend = device_and_backend(cfg)
    if cfg.norm == "syncbn":
        check_syncbn_supported(device)
    data = load_data(cfg)
    global_batch = cfg.batch_per_process * world
    if global_batch > len(data[0]):
        raise ValueError(f"global batch {global_batch} exceeds the training set ({len(data[0])})")
    ddp, model = build_ddp_model(cfg, device)
    lr = cfg.base_lr * global_batch / 32
    opt = torch.optim.SGD(ddp.parameters(), lr=lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    return RunState(cfg, rank, world, device, backend, ddp, model, opt, data,
                    rank_batches(len(data[0]), cfg, rank, world))


def train_step(s: RunState, sync_grads: bool = True) -> tuple[float, float]:
    """One SGD step on this rank's next batch: ``(seconds, loss)``. ``sync_grads=False``
    skips DDP's gradient all-reduce (``ddp.no_sync()``): the ranks' weights drift apart."""
    idx = next(s.batches)
    xb, yb = s.data[0][idx].to(s.device), s.data[1][idx].to(s.device)
    sync(s.device)
    t0 = time.perf_counter()
    with nullcontext() if sync_grads else s.ddp.no_sync():
        loss = F.cross_entropy(s.ddp(xb), yb)
        s.opt.zero_grad(set_to_none=True)
        loss.backward()
    s.opt.step()
    sync(s.device)
    return time.perf_counter() - t0, loss.item()


def train_loop(s: RunState) -> tuple[list[float], list[float]]:
    """``steps`` synchronized steps: ``(losses, times)``, the times without the first
    ``warmup_steps``. A non-finite loss stops the run."""
    s.ddp.train()
    losses, times = [], []
    for step in range(s.cfg.steps):
        dt, loss = train_step(s)
        if not math.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss} at step {step} on rank {s.rank}")
        losses.append(loss)
        if step >= s.cfg.warmup_steps:
            times.append(dt)
    return losses, times


def evaluate(s: RunState, chunk: int = 500) -> float:
    """Test error (%) in eval mode with rank 0's BN buffers: rank ``r`` classifies test
    images ``r, r + W, ...``; one all-reduce adds the counts of wrong and seen images."""
    for buf in s.model.buffers():
        dist.broadcast(buf, src=0)
    s.model.eval()
    xte, yte = s.data[2][s.rank::s.world], s.data[3][s.rank::s.world]
    wrong = torch.zeros((), dtype=torch.float64, device=s.device)
    with torch.no_grad():
        for i in range(0, len(xte), chunk):
            pred = s.model(xte[i:i + chunk].to(s.device)).argmax(1)
            wrong += (pred != yte[i:i + chunk].to(s.device)).sum()
    seen = torch.tensor(float(len(xte)), dtype=torch.float64, device=s.device)
    counts = torch.stack([wrong, seen])
    dist.all_reduce(counts)
    return 100.0 * counts[0].item() / counts[1].item()


def mean_final_loss(s: RunState, losses: list[float], last: int = 10) -> float:
    """Training loss averaged over the last ``last`` steps and over the ranks."""
    t = torch.tensor(losses[-min(last, len(losses)):], dtype=torch.float64, device=s.device)
    t = t.mean().view(1)
    dist.all_reduce(t)
    return t.item() / s.world


def time_without_grad_sync(s: RunState) -> list[float]:
    """Seconds of ``timing_steps`` steps under ``ddp.no_sync()`` (run after evaluation,
    since the ranks' weights drift apart)."""
    s.model.train()
    return [train_step(s, sync_grads=False)[0] for _ in range(s.cfg.timing_steps)]


def timings(s: RunState, times: list[float], no_sync: list[float]) -> dict[str, Any]:
    """Median ms per step (slowest rank), the same without DDP's gradient all-reduce, their
    difference (the all-reduce's cost in a step), and one all-reduce of the model's size."""
    step = max_over_ranks(median_ms(times), s.device)
    step_no_sync = max_over_ranks(median_ms(no_sync), s.device)
    numel = sum(p.numel() for p in s.model.parameters())
    return {"step_ms": step, "step_ms_no_grad_sync": step_no_sync,
            "grad_allreduce_ms": (round(step - step_no_sync, 3)
                                  if step is not None and step_no_sync is not None else None),
            "allreduce_bench_ms": time_all_reduce(numel, s.device)}


def summary(s: RunState, final_loss: float, test_error: float, timing: dict[str, Any],
            wall_s: float) -> dict[str, Any]:
    """The run's record: set-up, results (``test_error`` in %: the test set), timings."""
    cfg, global_batch = s.cfg, s.global_batch
    return {
        "norm": cfg.norm, "stats_communication": STATS_COMMUNICATION[cfg.norm],
        "world_size": s.world, "backend": s.backend, "device": s.device.type,
        "batch_per_process": cfg.batch_per_process, "global_batch": global_batch,
        "bn_statistics_batch": {"bn": cfg.batch_per_process, "syncbn": global_batch,
                                "gbn": global_batch}.get(cfg.norm),
        "steps": cfg.steps, "lr": s.lr, "data": cfg.data, "model": cfg.model,
        "params": sum(p.numel() for p in s.model.parameters()),
        "final_loss": round(final_loss, 5), "test_error": round(test_error, 3),
        **timing, "wall_s": round(wall_s, 3), "config": asdict(cfg), "torch": torch.__version__,
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def run(cfg: DistConfig) -> dict[str, Any]:
    """Train on this rank's share of every global batch; return the summary (every rank).
    Needs an initialized process group (:func:`init_process_group`)."""
    t_start = time.perf_counter()
    s = setup(cfg)
    losses, times = train_loop(s)
    test_error = evaluate(s)
    final_loss = mean_final_loss(s, losses)
    no_sync = time_without_grad_sync(s)
    return summary(s, final_loss, test_error, timings(s, times, no_sync),
                   time.perf_counter() - t_start)
