r"""Data-parallel training with ``torch.distributed``: BN vs SyncBN vs GN at a small per-process batch.

Every process holds a full copy of the model and trains on its own slice of each global batch;
:class:`~torch.nn.parallel.DistributedDataParallel` (DDP) averages the gradients with an
all-reduce after each backward. The normalization decides what else has to travel:

========  ===============================================  ==========================================
norm      statistics over                                  extra communication per step
========  ===============================================  ==========================================
``bn``    the process's own ``b`` samples (the GN paper's   none for the statistics (DDP broadcasts the
          setting: BN statistics per GPU)                   running-stat buffers from rank 0 in forward)
``syncbn``the global batch ``b * W`` (``nn.SyncBatchNorm``) an all-gather of (mean, invstd, count) per
                                                           BN layer in forward, an all-reduce in backward
``gbn``   the global batch ``b * W``: this module's         one all-reduce of (count, sum, sum of squares)
          :class:`GlobalBatchNorm2d` (CPU-capable)          per BN layer in forward, one in backward
``gn``    each sample's own groups                          none: GN needs no communication at all
========  ===============================================  ==========================================

Run (one machine, 2 processes, CPU + gloo; ``torchrun`` sets RANK, WORLD_SIZE, LOCAL_RANK, ...)::

    torchrun --nproc_per_node=2 -m gnlib.distributed --norm gn --batch-per-process 2
    torchrun --nproc_per_node=2 -m gnlib.distributed --norm bn --data fashion-mnist --steps 500

Several machines (here 2 nodes x 4 GPUs): start the same command on every node, with the
address of one reachable host (node 0) as the rendezvous; the c10d rendezvous assigns the ranks
(``--node_rank`` is only used by the static rendezvous, ``--master_addr/--master_port``)::

    torchrun --nnodes=2 --nproc_per_node=4 \
        --rdzv_backend c10d --rdzv_endpoint node0.example.org:29400 --rdzv_id gn-ddp \
        -m gnlib.distributed --norm syncbn --batch-per-process 2      # on every node

(``--rdzv_endpoint`` must be reachable from every node; with several network interfaces set
``GLOO_SOCKET_IFNAME`` / ``NCCL_SOCKET_IFNAME``.) The backend is NCCL when CUDA is available
(each process uses ``cuda:LOCAL_RANK``), else gloo on the CPU.

**SyncBatchNorm needs CUDA.** In this PyTorch, ``nn.SyncBatchNorm``'s training forward with
more than one process raises ``ValueError: SyncBatchNorm expected input tensor to be on GPU``
for CPU tensors. ``--norm syncbn`` therefore checks this up front (with a real SyncBatchNorm
forward) and stops with a clear message on CPU. ``--norm gbn`` is the CPU alternative:
:class:`GlobalBatchNorm2d` computes the global-batch statistics with ``torch.distributed``'s
own ``all_reduce`` of per-channel sums (an autograd function whose backward all-reduces the
gradient), so its forward and backward equal single-process BN on the whole global batch
(tested to 1e-6). The summary records which one ran; they are never mixed up.

Output: rank 0 prints one JSON line (``--output`` also writes it to a file) with the setup,
the final loss and validation error, the median time per step, the time per step without
DDP's gradient all-reduce (``ddp.no_sync()``) and their difference (the all-reduce cost),
and a direct timing of one all-reduce of a tensor of the model's size. The process group
is destroyed in a ``finally`` block, so a failing rank shuts down cleanly and its peers get
an error instead of hanging.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from .norms import make_norm
from .sampling import shuffled_batches

__all__ = [
    "NORMS",
    "DistConfig",
    "GlobalBatchNorm2d",
    "SyncBNUnavailableError",
    "TinyCNN",
    "all_reduce_sum",
    "build_model",
    "check_syncbn_supported",
    "convert_to_global_bn",
    "global_batch_stats",
    "main",
    "reproduce",
    "run_identity",
    "run",
    "synthetic_data",
]

#: The normalizations the CLI understands.
NORMS = ("bn", "syncbn", "gbn", "gn")

STATS_COMMUNICATION = {
    "bn": "none (per-process statistics; DDP broadcasts BN buffers from rank 0 each forward)",
    "syncbn": "nn.SyncBatchNorm: all_gather of (mean, invstd, count) per BN layer in forward, "
              "all_reduce in backward",
    "gbn": "GlobalBatchNorm2d: all_reduce of (count, sum, sum of squares) per BN layer in "
           "forward, all_reduce of their gradients in backward",
    "gn": "none (statistics within each sample)",
}


class SyncBNUnavailableError(RuntimeError):
    """``nn.SyncBatchNorm`` cannot run on this device (CPU) in this PyTorch."""


# --------------------------------------------------------------------------------------
# Global-batch statistics through torch.distributed
# --------------------------------------------------------------------------------------
class _AllReduceSum(torch.autograd.Function):
    """``y = sum over processes of x``; backward: the gradient summed over processes too.

    Every process holds the same ``y`` and the total loss is the sum of the processes'
    losses, so ``dL/dx_r = sum_r' dL_r'/dy``: an all-reduce of the incoming gradients.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, group: Any) -> Tensor:  # type: ignore[override]
        ctx.group = group
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM, group=group)
        return y

    @staticmethod
    def backward(ctx: Any, dy: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        g = dy.contiguous().clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM, group=ctx.group)
        return g, None


def all_reduce_sum(x: Tensor, group: Any = None) -> Tensor:
    """Differentiable sum over processes (``dist.all_reduce`` in forward and backward)."""
    return _AllReduceSum.apply(x, group)


def _world(group: Any = None) -> int:
    return dist.get_world_size(group) if dist.is_available() and dist.is_initialized() else 1


def global_batch_stats(
    x: Tensor, group: Any = None, differentiable: bool = False
) -> tuple[Tensor, Tensor, int]:
    r"""Per-channel mean and biased variance of ``x`` ``(N, C, *)`` over the **global** batch.

    Each process contributes its local count :math:`m_r`, sums :math:`s_r = \sum x` and
    sums of squares :math:`q_r = \sum x^2` (in float64); one ``dist.all_reduce`` adds them:

    .. math::

        \mu = \frac{\sum_r s_r}{\sum_r m_r},\qquad
        \sigma^2 = \frac{\sum_r q_r}{\sum_r m_r} - \mu^2

    which is exactly the statistic of BN on the concatenated batch (what SyncBatchNorm
    computes). Without an initialized process group it is the local statistic. Returns
    ``(mean, var, count)`` in ``x``'s dtype; ``differentiable=True`` lets autograd through
    (the backward all-reduces the gradients of the sums).
    """
    if not isinstance(x, Tensor) or x.dim() < 2:
        raise ValueError("global_batch_stats expects a tensor of shape (N, C, *)")
    C = x.shape[1]
    dims = [0] + list(range(2, x.dim()))
    x64 = x.to(torch.float64)
    m_local = x.numel() // C
    local = torch.cat([
        torch.full((1,), float(m_local), dtype=torch.float64, device=x.device),
        x64.sum(dim=dims), (x64 * x64).sum(dim=dims),
    ])
    if _world(group) > 1:
        if differentiable:
            total = all_reduce_sum(local, group)
        else:
            total = local.detach().clone()
            dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
    else:
        total = local
    count = total[0]
    mean = total[1:C + 1] / count
    var = (total[C + 1:] / count - mean * mean).clamp_min(0.0)
    return mean.to(x.dtype), var.to(x.dtype), int(count.item())


class GlobalBatchNorm2d(nn.BatchNorm2d):
    r"""BatchNorm2d whose training statistics are those of the global batch across processes.

    The CPU-capable counterpart of ``nn.SyncBatchNorm`` (which needs GPU tensors in this
    PyTorch): training mode normalizes with :func:`global_batch_stats` (differentiable), so
    forward and backward equal BN on the concatenation of every process's batch; the running
    statistics are updated with the global mean and unbiased variance
    :math:`\tfrac{M}{M-1}\sigma^2` (:math:`M` = global count). Without an initialized process
    group (or in eval mode) it is plain ``nn.BatchNorm2d``. Same parameters and buffers.
    """

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        if not (self.training and _world() > 1):
            return super().forward(x)
        mean, var, count = global_batch_stats(x, differentiable=True)
        if count < 2:
            raise ValueError(f"GlobalBatchNorm2d needs more than 1 value per channel, got {count}")
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                a = self.momentum if self.momentum is not None \
                    else 1.0 / float(self.num_batches_tracked.item())
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), a)
                unbiased = var.detach() * (count / (count - 1))
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), a)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_to_global_bn(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` by a :class:`GlobalBatchNorm2d` with the
    same configuration, parameters and buffers (like ``SyncBatchNorm.convert_sync_batchnorm``)."""
    if type(module) is nn.BatchNorm2d:
        ref = module.weight if module.affine else module.running_mean
        new = GlobalBatchNorm2d(module.num_features, module.eps, module.momentum,
                                module.affine, module.track_running_stats,
                                device=None if ref is None else ref.device,
                                dtype=None if ref is None else ref.dtype)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new
    for name, child in module.named_children():
        setattr(module, name, convert_to_global_bn(child))
    return module


def check_syncbn_supported(device: torch.device) -> None:
    """Run one real ``nn.SyncBatchNorm`` training forward on ``device``; raise
    :class:`SyncBNUnavailableError` with an explanation when PyTorch refuses it.

    Call it on every rank (with more than one process it is a collective when it works;
    when it fails, it fails on every rank before any communication).
    """
    layer = nn.SyncBatchNorm(1).to(device).train()
    probe = torch.arange(4.0, device=device).view(2, 1, 2, 1)
    try:
        layer(probe)
    except ValueError as err:
        raise SyncBNUnavailableError(
            f"--norm syncbn needs CUDA (NCCL backend): torch {torch.__version__}'s "
            f"nn.SyncBatchNorm only runs on GPU tensors in training (it said: {err}). "
            "On CPU use --norm gbn (global-batch BN from torch.distributed all_reduce, "
            "the same statistics and gradients), --norm bn or --norm gn."
        ) from err


# --------------------------------------------------------------------------------------
# Model and data (tiny, so a 2-process CPU run takes seconds)
# --------------------------------------------------------------------------------------
class TinyCNN(nn.Module):
    """conv3x3/2 - norm - ReLU - conv3x3/2 - norm - ReLU - global pool - linear (28x28 -> 7x7)."""

    def __init__(self, norm: str = "gn", width: int = 8, groups: int = 4,
                 in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        kind = "bn" if norm in ("syncbn", "gbn") else norm

        def nrm(c: int) -> nn.Module:
            return make_norm(kind, c, groups=min(groups, c))

        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False), nrm(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nrm(2 * width),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def build_model(norm: str, model: str = "tiny", width: int = 8,
                groups: int | None = None) -> nn.Module:
    """The model for ``norm`` in ``NORMS``; syncbn / gbn are converted from BN.

    ``groups`` (GN's G) defaults to 4 for the tiny model and 32 (the paper's) for ``resnet``.
    """
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")
    if model == "tiny":
        net: nn.Module = TinyCNN(norm, width=width, groups=groups or 4)
    elif model == "resnet":
        from .models import build_model as build_resnet  # the course's ResNetSmall

        net = build_resnet("bn" if norm in ("syncbn", "gbn") else norm, groups=groups or 32)
    else:
        raise ValueError(f"unknown model {model!r}; choose 'tiny' or 'resnet'")
    if norm == "syncbn":
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    elif norm == "gbn":
        net = convert_to_global_bn(net)
    return net


def synthetic_data(n_train: int = 1024, n_test: int = 512, seed: int = 0,
                   noise: float = 1.0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Ten classes of smooth 28x28 templates plus Gaussian noise: float ``(n, 1, 28, 28)``."""
    g = torch.Generator().manual_seed(seed)
    templates = F.interpolate(torch.randn(10, 1, 7, 7, generator=g), size=(28, 28),
                              mode="bilinear", align_corners=False)

    def draw(n: int) -> tuple[Tensor, Tensor]:
        y = torch.randint(0, 10, (n,), generator=g)
        return templates[y] + noise * torch.randn(n, 1, 28, 28, generator=g), y

    xtr, ytr = draw(n_train)
    xte, yte = draw(n_test)
    return xtr, ytr, xte, yte


def _load_data(cfg: "DistConfig") -> tuple[Tensor, Tensor, Tensor, Tensor]:
    if cfg.data == "synthetic":
        return synthetic_data(cfg.train_size, cfg.test_size, seed=cfg.seed)
    if cfg.data == "fashion-mnist":
        from .data import load_fashion_mnist, to_float

        xtr, ytr, xte, yte = load_fashion_mnist()
        idx = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(0))[:cfg.train_size]
        return to_float(xtr[idx]), ytr[idx], to_float(xte[:cfg.test_size]), yte[:cfg.test_size]
    raise ValueError(f"unknown data {cfg.data!r}; choose 'synthetic' or 'fashion-mnist'")


# --------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------
@dataclass
class DistConfig:
    """Everything one data-parallel run depends on (the CLI flags)."""

    norm: str = "gn"
    batch_per_process: int = 2
    steps: int = 50
    warmup_steps: int = 3
    timing_steps: int = 10
    base_lr: float = 0.1           # lr = base_lr * global_batch / 32
    momentum: float = 0.9
    weight_decay: float = 1e-4
    data: str = "synthetic"
    train_size: int = 1024
    test_size: int = 512
    model: str = "tiny"
    width: int = 8
    groups: int | None = None      # GN's G; None: 4 (tiny), 32 (resnet)
    seed: int = 0
    backend: str = "auto"
    threads: int = 1
    timeout_s: float = 300.0
    fail_at_step: int = -1         # testing: raise on rank fail_rank at this step
    fail_rank: int = 1

    def check(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"unknown norm {self.norm!r}; choose one of {NORMS}")
        for name in ("batch_per_process", "steps", "threads", "train_size", "test_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_steps < 0 or self.timing_steps < 0:
            raise ValueError("warmup_steps and timing_steps must be >= 0")
        if self.backend not in ("auto", "gloo", "nccl"):
            raise ValueError(f"backend must be auto, gloo or nccl, got {self.backend!r}")


def _device_and_backend(cfg: DistConfig) -> tuple[torch.device, str]:
    cuda = torch.cuda.is_available()
    backend = cfg.backend if cfg.backend != "auto" else ("nccl" if cuda else "gloo")
    if backend == "nccl" and not cuda:
        raise RuntimeError("--backend nccl needs CUDA, which is not available; use gloo")
    if cuda and backend == "nccl":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local), backend
    return torch.device("cpu"), backend


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(times: Sequence[float]) -> float | None:
    return round(statistics.median(times) * 1e3, 3) if times else None


def _time_all_reduce(numel: int, device: torch.device, repeats: int = 5) -> float:
    """Median wall time (ms) of one ``dist.all_reduce`` of ``numel`` float32 values."""
    buf = torch.zeros(numel, device=device)
    dist.all_reduce(buf)  # warm-up
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        dist.all_reduce(buf)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return _median_ms(times) or 0.0


def _max_over_ranks(value: float | None, device: torch.device) -> float | None:
    if value is None:
        return None
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return round(float(t.item()), 3)


def run(cfg: DistConfig) -> dict[str, Any]:
    """Train on this process's share of every global batch; return the summary (all ranks).

    Needs an initialized process group (see :func:`main`).
    """
    from torch.nn.parallel import DistributedDataParallel as DDP

    cfg.check()
    rank, world = dist.get_rank(), dist.get_world_size()
    device, backend = _device_and_backend(cfg)
    if cfg.norm == "syncbn":
        check_syncbn_supported(device)
    t_start = time.perf_counter()
    xtr, ytr, xte, yte = _load_data(cfg)
    b, global_batch = cfg.batch_per_process, cfg.batch_per_process * world
    if global_batch > len(xtr):
        raise ValueError(f"global batch {global_batch} exceeds the training set ({len(xtr)})")
    torch.manual_seed(cfg.seed)                      # the same initial weights on every rank
    model = build_model(cfg.norm, cfg.model, cfg.width, cfg.groups).to(device)
    ddp = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    lr = cfg.base_lr * global_batch / 32
    opt = torch.optim.SGD(ddp.parameters(), lr=lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)    # the same batch order on every rank

    def batches():
        while True:
            for idx in shuffled_batches(len(xtr), global_batch, gen, drop_last=True):
                yield idx[rank * b:(rank + 1) * b]  # this rank's slice of the global batch

    stream = batches()

    def step(sync_grads: bool) -> tuple[float, float]:
        idx = next(stream)
        xb, yb = xtr[idx].to(device), ytr[idx].to(device)
        _sync(device)
        t0 = time.perf_counter()
        with nullcontext() if sync_grads else ddp.no_sync():
            loss = F.cross_entropy(ddp(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
        opt.step()
        _sync(device)
        return time.perf_counter() - t0, loss.item()

    ddp.train()
    losses, times = [], []
    for s in range(cfg.steps):
        if s == cfg.fail_at_step and rank == cfg.fail_rank:
            raise RuntimeError(f"injected failure on rank {rank} at step {s} (--fail-at-step)")
        dt, loss = step(sync_grads=True)
        if not math.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss} at step {s} on rank {rank}")
        losses.append(loss)
        if s >= cfg.warmup_steps:
            times.append(dt)

    # evaluation (eval mode, every rank on its shard of the test set, rank 0's BN buffers)
    for buf in model.buffers():
        dist.broadcast(buf, src=0)
    model.eval()
    with torch.no_grad():
        xs, ys = xte[rank::world], yte[rank::world]
        wrong = torch.zeros((), dtype=torch.float64, device=device)
        for i in range(0, len(xs), 500):
            pred = model(xs[i:i + 500].to(device)).argmax(1)
            wrong += (pred != ys[i:i + 500].to(device)).sum()
    counts = torch.stack([wrong, torch.tensor(float(len(xs)), dtype=torch.float64,
                                              device=device)])
    dist.all_reduce(counts)
    val_error = 100.0 * counts[0].item() / counts[1].item()
    last = torch.tensor(losses[-min(10, len(losses)):], dtype=torch.float64, device=device)
    final_loss = last.mean().view(1)
    dist.all_reduce(final_loss)
    final_loss = final_loss.item() / world

    # timing without the gradient all-reduce (after evaluation: ranks' weights may now drift)
    model.train()
    no_sync = [step(sync_grads=False)[0] for _ in range(cfg.timing_steps)]
    numel = sum(p.numel() for p in model.parameters())
    step_ms = _max_over_ranks(_median_ms(times), device)
    step_ms_no_sync = _max_over_ranks(_median_ms(no_sync), device)
    allreduce_ms = _time_all_reduce(numel, device)
    return {
        "norm": cfg.norm,
        "stats_communication": STATS_COMMUNICATION[cfg.norm],
        "world_size": world,
        "backend": backend,
        "device": device.type,
        "batch_per_process": b,
        "global_batch": global_batch,
        "bn_statistics_batch": {"bn": b, "syncbn": global_batch, "gbn": global_batch}.get(cfg.norm),
        "steps": cfg.steps,
        "lr": lr,
        "data": cfg.data,
        "model": cfg.model,
        "params": numel,
        "final_loss": round(final_loss, 5),
        "val_error": round(val_error, 3),
        "step_ms": step_ms,
        "step_ms_no_grad_sync": step_ms_no_sync,
        "grad_allreduce_ms": (round(step_ms - step_ms_no_sync, 3)
                              if step_ms is not None and step_ms_no_sync is not None else None),
        "allreduce_bench_ms": allreduce_ms,
        "wall_s": round(time.perf_counter() - t_start, 3),
        "config": asdict(cfg),
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------------------
# The committed experiment: torchrun runs appended to results/distributed.jsonl
# --------------------------------------------------------------------------------------
#: ``python -m gnlib reproduce distributed``: per-process batch 2 on 2 CPU processes. syncbn
#: is left out on CPU (it needs CUDA); gbn computes the same global-batch statistics.
REPRODUCE_PRESETS: dict[str, dict[str, Any]] = {
    "full": dict(model="resnet", data="fashion-mnist", train_size=6000, test_size=10000,
                 batch_per_process=2, steps=4500, timing_steps=50, base_lr=0.2),
    "quick": dict(model="tiny", data="fashion-mnist", train_size=1000, test_size=1000,
                  batch_per_process=2, steps=150, timing_steps=10, base_lr=0.2),
}


def reproduce(preset: str = "full", norms: Sequence[str] | None = None, nproc: int = 2,
              seeds: int = 1, results_dir: str | os.PathLike | None = None, force: bool = False,
              log=print) -> "os.PathLike":
    """Run ``torchrun --nproc_per_node=nproc -m gnlib.distributed`` for every norm (default:
    bn, gbn, gn; syncbn too when CUDA is available) and seed, appending each rank-0 summary,
    with the command, git commit, date and machine, to ``results/distributed.jsonl``.
    Finished (preset, config) pairs are skipped unless ``force``."""
    import subprocess
    import tempfile
    from pathlib import Path

    from .experiments import RESULTS_DIR, append_record, git_commit, machine_info

    if preset not in REPRODUCE_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {tuple(REPRODUCE_PRESETS)}")
    if norms is None:
        norms = ("bn", "syncbn", "gbn", "gn") if torch.cuda.is_available() else ("bn", "gbn", "gn")
    path = Path(results_dir or RESULTS_DIR) / "distributed.jsonl"
    done = {run_identity(r) for r in load_results_plain(path)}
    meta = {"git_commit": git_commit(), **machine_info()}
    for seed in range(seeds):
        for norm in norms:
            cfg = DistConfig(norm=norm, seed=seed, **REPRODUCE_PRESETS[preset])
            key = run_identity({"preset": preset, "world_size": nproc, "config": asdict(cfg)})
            if key in done and not force:
                log(f"{norm} seed={seed}: done, skipped")
                continue
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "summary.json"
                args = ["--norm", norm, "--seed", str(seed), "--output", str(out)]
                for k, v in REPRODUCE_PRESETS[preset].items():
                    args += [f"--{k.replace('_', '-')}", str(v)]
                cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                       f"--nproc_per_node={nproc}", "-m", "gnlib.distributed", *args]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise RuntimeError(f"torchrun failed for --norm {norm} (exit "
                                       f"{proc.returncode}):\n{proc.stderr[-2000:]}")
                summary = json.loads(out.read_text())
            rec = {**summary, **meta, "preset": preset, "experiment": "distributed",
                   "command": "torchrun --standalone --nproc_per_node=%d -m gnlib.distributed %s"
                              % (nproc, " ".join(args[:4] + args[6:]))}
            append_record(path, rec)
            log(f"{norm} seed={seed}: val {rec['val_error']:.2f}%, {rec['step_ms']:.1f} ms/step "
                f"({rec['grad_allreduce_ms']:.2f} ms gradient all-reduce)")
    return path


def run_identity(record: dict) -> str:
    """A distributed run's identity: its preset, number of processes and :class:`DistConfig`."""
    return json.dumps([record.get("preset"), record.get("world_size"), record.get("config")],
                      sort_keys=True)


def load_results_plain(path: "os.PathLike") -> list[dict]:
    """The records of ``results/distributed.jsonl``: the newest line per :func:`run_identity`;
    a line cut by a crash is skipped (:func:`gnlib.experiments.load_results`)."""
    import warnings

    from .experiments import load_results

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_results(path, key=run_identity)


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> tuple[DistConfig, str | None]:
    d = DistConfig()
    p = argparse.ArgumentParser(
        prog="torchrun --nproc_per_node=2 -m gnlib.distributed",
        description="Data-parallel training (DDP) with BN, SyncBN, global-batch BN or GN; "
                    "rank 0 prints a JSON summary. See the module docstring for multi-node runs.",
    )
    p.add_argument("--norm", choices=NORMS, default=d.norm,
                   help="syncbn needs CUDA/NCCL; gbn is the CPU-capable global-batch BN")
    p.add_argument("--batch-per-process", type=int, default=d.batch_per_process)
    p.add_argument("--steps", type=int, default=d.steps, help="training steps (timed)")
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps,
                   help="first steps left out of the timing")
    p.add_argument("--timing-steps", type=int, default=d.timing_steps,
                   help="extra steps without the gradient all-reduce, to measure its cost")
    p.add_argument("--base-lr", type=float, default=d.base_lr, help="lr at global batch 32")
    p.add_argument("--data", choices=("synthetic", "fashion-mnist"), default=d.data)
    p.add_argument("--train-size", type=int, default=d.train_size)
    p.add_argument("--test-size", type=int, default=d.test_size)
    p.add_argument("--model", choices=("tiny", "resnet"), default=d.model,
                   help="tiny: 2-conv CNN; resnet: gnlib.models' ResNetSmall")
    p.add_argument("--width", type=int, default=d.width, help="tiny model width")
    p.add_argument("--groups", type=int, default=d.groups,
                   help="GN groups (default 4 for tiny, 32 for resnet)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--backend", choices=("auto", "gloo", "nccl"), default=d.backend,
                   help="auto: nccl with CUDA, else gloo")
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads per process")
    p.add_argument("--timeout-s", type=float, default=d.timeout_s,
                   help="collective timeout: a rank waiting for a dead peer gives up after it")
    p.add_argument("--output", default=None, help="also write the JSON summary here (rank 0)")
    p.add_argument("--fail-at-step", type=int, default=d.fail_at_step, help=argparse.SUPPRESS)
    p.add_argument("--fail-rank", type=int, default=d.fail_rank, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    cfg = DistConfig(
        norm=a.norm, batch_per_process=a.batch_per_process, steps=a.steps,
        warmup_steps=a.warmup_steps, timing_steps=a.timing_steps, base_lr=a.base_lr,
        data=a.data, train_size=a.train_size, test_size=a.test_size, model=a.model,
        width=a.width, groups=a.groups, seed=a.seed, backend=a.backend, threads=a.threads,
        timeout_s=a.timeout_s, fail_at_step=a.fail_at_step, fail_rank=a.fail_rank,
    )
    cfg.check()
    return cfg, a.output


def main(argv: Sequence[str] | None = None, init_method: str | None = None) -> int:
    """Entry point: init the process group from torchrun's environment (or ``init_method``
    with RANK / WORLD_SIZE set), run, print the summary from rank 0, always destroy the group.
    """
    cfg, output = parse_args(argv)
    if "WORLD_SIZE" not in os.environ and init_method is None:
        print("gnlib.distributed: WORLD_SIZE is not set; start it with torchrun, e.g.\n"
              "  torchrun --nproc_per_node=2 -m gnlib.distributed --norm gn", file=sys.stderr)
        return 2
    torch.set_num_threads(cfg.threads)
    rank = int(os.environ.get("RANK", "0"))
    try:
        _, backend = _device_and_backend(cfg)
        kwargs: dict[str, Any] = {"timeout": datetime.timedelta(seconds=cfg.timeout_s)}
        if init_method is not None:
            kwargs.update(init_method=init_method, rank=rank,
                          world_size=int(os.environ["WORLD_SIZE"]))
        dist.init_process_group(backend, **kwargs)
        summary = run(cfg)
        if dist.get_rank() == 0:
            line = json.dumps(summary)
            print(line, flush=True)
            if output:
                with open(output, "w") as fh:
                    fh.write(line + "\n")
        dist.barrier()  # every rank is done before any tears its connections down
        return 0
    except Exception as err:
        print(f"gnlib.distributed: rank {rank} failed: {type(err).__name__}: {err}",
              file=sys.stderr, flush=True)
        raise
    finally:
        if dist.is_available() and dist.is_initialized():
            gc.collect()  # free DDP's reducer (kept alive by reference cycles) before the group
            dist.destroy_process_group()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SyncBNUnavailableError:
        sys.exit(3)  # the message is already on stderr; no traceback for a known limitation
