r"""One training run on in-memory tensors: config, batches, SGD step, schedule, evaluation, history.

The recipe follows Wu & He (2018), shrunk to a CPU:

* batches are slices of a shuffled index permutation drawn from a seeded
  :class:`torch.Generator` (no DataLoader, no per-sample Python); the last partial batch of
  an epoch is dropped, so every step sees exactly ``B`` images;
* ``augment``: a random crop (2 pixels of padding) and a horizontal flip per image and epoch
  (:class:`~gnlib.augment.Augmentation`), the same for every run of a seed;
* SGD, momentum 0.9, weight decay on all parameters, linear lr scaling
  :math:`\eta = \eta_0 \cdot B / 32` (the paper's ``0.1 N/32``);
* schedule per iteration ``t`` of ``T``: ``"cosine"``
  :math:`\eta_t = \eta\,\tfrac12(1+\cos(\pi t/T))` (ends at 0) or ``"step"``, the paper's
  :math:`\eta/10` at 30 %, 60 % and 90 % of training;
* test error in **eval mode** every epoch (BN uses its running statistics: that is where its
  small-batch weakness shows); the reported error is the median of the last ``median_last``
  epochs (``1``: the final epoch);
* ``devices = d > 1`` simulates data-parallel training on ``d`` devices with ``B / d`` images
  each: one SGD step on the whole batch, BN statistics per device
  (:class:`~gnlib.norms.GhostBatchNorm2d`); ``norm="syncbn"`` is BN over all ``d`` devices;
* ``batching``: ``"shuffled"`` (i.i.d.), or ``"non-iid-1"`` / ``"non-iid-2"``: every device's
  slice comes from one class / one random pair of classes (:mod:`gnlib.sampling`);
* the fast route (``memory_format="channels_last"``, the default) keeps the model and every
  batch in channels-last memory, and ``gn_backend="auto"`` (the default) runs gnlib's GN, LN
  and IN layers, and BN over per-device slices, on the fused C++ Group Norm kernel where it can
  be built (``"python"`` turns it off; :data:`gnlib.norms.BACKENDS`); ``device`` is ``"cpu"``, ``"cuda"`` or ``"auto"``;
* for BN-family norms, :mod:`gnlib.diagnostics` records the running-statistics gap each epoch
  and, at the end, PreciseBN and train-mode test errors and per-layer statistics;
* a non-finite loss stops the run (``diverged``); a run whose loss never falls below
  0.9 ln 10 is flagged ``did_not_train`` (:func:`gnlib.results.did_not_train`).

:func:`train` returns a plain dict (JSON-ready); it never writes files. :func:`train_step` is
the step it runs, for benchmarks and tests.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .augment import Augmentation
from .data import get_data, synthetic_data, to_float
from .diagnostics import bn_final_report, bn_statistics_gap, evaluate
from .models import MODEL_NORMS, build_model
from .norms import BACKENDS, RenormSchedule, use_backend
from .results import did_not_train

BATCHINGS = ("shuffled", "non-iid-1", "non-iid-2")
MEMORY_FORMATS = ("channels_last", "contiguous")
DEVICES = ("cpu", "cuda", "auto")
SCHEDULES = ("cosine", "step")
RENORMS = ("fixed", "warmup")
#: Norms whose training forward uses batch statistics (they get the BN diagnostics).
BATCH_STAT_NORMS = ("bn", "br", "syncbn")
BASE_BATCH = 32

__all__ = ["BATCHINGS", "BATCH_STAT_NORMS", "DEVICES", "MEMORY_FORMATS", "TrainConfig",
           "epoch_batches", "evaluate", "get_data", "lr_at", "make_optimizer", "prepare_model",
           "resolve_device", "scaled_lr", "synthetic_data", "to_route", "train", "train_step"]


@dataclass
class TrainConfig:
    """Everything that defines a run (its identity in the results files); checked on creation."""

    norm: str = "gn"
    groups: int = 32
    channels_per_group: int | None = None
    batch_size: int = 32
    epochs: int = 6
    base_lr: float = 0.1            # lr at batch 32; scaled linearly with the batch size
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"        # "cosine" or "step" (paper: /10 at 30/60/90 %)
    seed: int = 0
    dataset: str = "fashion-mnist"  # or "synthetic" (tests)
    train_size: int = 10000         # a fixed random subset (data seed 0) of the 60k
    test_size: int = 10000          # the first test_size of the 10k test images
    widths: tuple[int, ...] = (64, 128)
    blocks: tuple[int, ...] = (1, 1)
    stem_stride: int = 2
    strides: tuple[int, ...] = (2, 2)
    median_last: int = 3
    eval_batch: int = 1000
    batching: str = "shuffled"      # or "non-iid-1" / "non-iid-2": 1 or 2 classes per device slice
    devices: int = 1                # simulated data-parallel devices (BN statistics per device)
    augment: bool = False           # random crop (pad 2) + horizontal flip
    memory_format: str = "channels_last"   # the fast route; "contiguous" turns it off
    device: str = "cpu"             # "cpu", "cuda" or "auto" (cuda when available)
    renorm: str = "fixed"           # BR: "fixed" r_max 1.5, d_max 0.5 (GN paper); "warmup" (BR paper)
    gn_backend: str = "auto"        # GN/LN/IN, per-device BN: "auto" (C++ kernel where built), "python", "cpp"

    def __post_init__(self) -> None:
        self.widths, self.blocks, self.strides = (tuple(self.widths), tuple(self.blocks),
                                                  tuple(self.strides))
        for name in ("batch_size", "epochs", "train_size", "test_size", "devices", "median_last",
                     "eval_batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        for name, v, ok in (("norm", self.norm, MODEL_NORMS + ("syncbn",)),
                            ("batching", self.batching, BATCHINGS),
                            ("schedule", self.schedule, SCHEDULES),
                            ("memory_format", self.memory_format, MEMORY_FORMATS),
                            ("device", self.device, DEVICES),
                            ("renorm", self.renorm, RENORMS),
                            ("gn_backend", self.gn_backend, BACKENDS)):
            if v not in ok:
                raise ValueError(f"unknown {name} {v!r}; choose one of {ok}")
        if self.batch_size % self.devices:
            raise ValueError(f"devices must be a positive divisor of batch_size {self.batch_size}, "
                             f"got {self.devices}")
        if self.norm == "syncbn" and self.devices == 1:
            raise ValueError("norm 'syncbn' synchronizes BN over simulated devices: set devices > 1")
        if self.devices > 1 and self.norm == "br":
            raise ValueError("devices > 1 (per-device statistics) is implemented for 'bn' only")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("widths", "blocks", "strides"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}")
        return cls(**d)

    @property
    def lr(self) -> float:
        return scaled_lr(self.base_lr, self.batch_size)


def scaled_lr(base_lr: float, batch_size: int, base_batch: int = BASE_BATCH) -> float:
    r"""Linear scaling rule :math:`\eta = \eta_0 \cdot B / 32`."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return base_lr * batch_size / base_batch


def lr_at(lr: float, step: int, total: int, schedule: str) -> float:
    """Learning rate at iteration ``step`` of ``total`` for ``"cosine"`` or ``"step"``."""
    frac = min(step, total) / max(total, 1)
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * frac))
    if schedule == "step":
        return lr * 0.1 ** sum(frac >= m for m in (0.3, 0.6, 0.9))
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")


def epoch_batches(cfg: TrainConfig, labels: Tensor, gen: torch.Generator) -> Tensor:
    """One epoch's training batches as a ``(steps, B)`` index tensor.

    ``"shuffled"``: slices of one random permutation (the last partial batch dropped).
    Non-i.i.d.: :func:`gnlib.sampling.non_iid_batches` draws slices of ``B / devices`` images
    from one class (or pair), and ``devices`` consecutive slices form a step.
    """
    from .sampling import non_iid_batches

    B, d = cfg.batch_size, cfg.devices
    if cfg.batching == "shuffled":
        steps = len(labels) // B
        return torch.randperm(len(labels), generator=gen)[: steps * B].view(steps, B)
    slices = non_iid_batches(labels, B // d, int(cfg.batching[-1]), gen, drop_last=True)
    steps = len(slices) // d
    return torch.stack(slices[: steps * d]).view(steps, B)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` is CUDA when available, else the CPU; ``"cuda"`` without a GPU is an error."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device='cuda' but torch.cuda.is_available() is False; use "
                               "device='cpu' or 'auto'")
        torch.backends.cudnn.deterministic = True      # same numbers run to run on one GPU
        torch.backends.cudnn.benchmark = False
    return torch.device(device)


def to_route(t: Tensor | nn.Module, cfg: TrainConfig, device: torch.device):
    """A model or a batch on ``device`` and in ``cfg.memory_format``."""
    fmt = torch.channels_last if cfg.memory_format == "channels_last" else torch.contiguous_format
    if isinstance(t, nn.Module):
        return t.to(device=device, memory_format=fmt)
    return t.to(device).contiguous(memory_format=fmt) if t.dim() == 4 else t.to(device)


def prepare_model(cfg: TrainConfig, device: torch.device | None = None,
                  total_steps: int | None = None) -> nn.Module:
    """The seeded model of ``cfg`` (same init for every run of a seed), on the fast route.
    ``total_steps``: the run's length, for Batch Renorm's warm-up (``renorm="warmup"``)."""
    renorm = None
    if cfg.norm == "br" and cfg.renorm == "warmup":
        if total_steps is None:
            raise ValueError("renorm='warmup' rescales the BR paper's schedule to the run: "
                             "pass total_steps")
        renorm = RenormSchedule.paper(total_steps)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_model("bn" if cfg.norm == "syncbn" else cfg.norm, widths=cfg.widths,
                            blocks=cfg.blocks, groups=cfg.groups,
                            channels_per_group=cfg.channels_per_group,
                            stem_stride=cfg.stem_stride, strides=cfg.strides,
                            bn_splits=cfg.devices if cfg.norm == "bn" else 1, renorm=renorm)
    return to_route(use_backend(model, cfg.gn_backend), cfg, device or resolve_device(cfg.device))


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum and weight decay on every parameter, at the scaled lr. ``foreach``:
    one multi-tensor update instead of a loop over parameters (the same numbers, measured
    bit for bit in tests/test_train.py; faster per step)."""
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay, foreach=True)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor,
               y: Tensor) -> tuple[Tensor, Tensor]:
    """One SGD step on the batch ``(x, y)``; returns the (detached) loss and logits."""
    out = model(x)
    loss = F.cross_entropy(out, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), out.detach()


def _run_epoch(model, opt, cfg, data, batches, aug, step0, total, bar) -> tuple[float, float]:
    """Train one epoch; returns its mean loss and training error (%)."""
    xtr, ytr = data
    dev = xtr.device
    loss_sum = torch.zeros((), device=dev)
    wrong = torch.zeros((), dtype=torch.long, device=dev)
    for i, idx in enumerate(batches):
        xb = aug.batch(idx) if aug is not None else xtr[idx.to(dev)]
        yb = ytr[idx.to(dev)]
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg.lr, step0 + i, total, cfg.schedule)
        loss, out = train_step(model, opt, to_route(xb, cfg, dev), yb)
        loss_sum += loss
        wrong += (out.argmax(1) != yb).sum()
        bar.update(1)
    return loss_sum.item() / len(batches), 100.0 * wrong.item() / batches.numel()


def train(cfg: TrainConfig | dict, data: tuple[Tensor, ...] | None = None,
          progress: bool = False, model: nn.Module | None = None,
          return_model: bool = False) -> dict[str, Any] | tuple[dict[str, Any], nn.Module]:
    """Train one model and return ``{"config", "test_error", "train_error", "diverged",
    "did_not_train", ..., "history": {"epoch", "train_loss", "train_error", "test_error",
    "lr"}}`` (errors in %). ``data``: float ``(xtr, ytr, xte, yte)`` (default:
    :func:`get_data`). ``progress`` shows a tqdm bar. ``return_model``: return ``(record,
    trained model)``. Deterministic for a given config, commit and thread count."""
    from tqdm.auto import tqdm

    cfg = TrainConfig.from_dict(cfg) if isinstance(cfg, dict) else cfg
    dev = resolve_device(cfg.device)
    xtr, ytr, xte, yte = (t.to(dev) for t in (data if data is not None else get_data(cfg)))
    if cfg.batch_size > len(xtr):
        raise ValueError(f"batch_size {cfg.batch_size} exceeds the training set ({len(xtr)})")
    t0 = time.perf_counter()
    total = len(epoch_batches(cfg, ytr.cpu(), torch.Generator().manual_seed(cfg.seed))) * cfg.epochs
    model = to_route(model, cfg, dev) if model is not None else prepare_model(cfg, dev, total)
    opt = make_optimizer(cfg, model)
    gen = torch.Generator().manual_seed(cfg.seed)
    aug = (Augmentation(xtr, to_float(torch.zeros(1, dtype=torch.uint8)).item())
           if cfg.augment else None)
    track = cfg.norm in BATCH_STAT_NORMS
    keys = ["epoch", "train_loss", "train_error", "test_error", "lr"]
    hist: dict[str, list] = {k: [] for k in keys + (["bn_mean_gap", "bn_var_ratio"] if track else [])}
    bar = tqdm(total=total, disable=not progress, leave=False,
               desc=f"{cfg.norm} B={cfg.batch_size} d={cfg.devices} seed={cfg.seed}")
    step, diverged_epoch = 0, None
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        batches = epoch_batches(cfg, ytr.cpu(), gen)
        if aug is not None:
            aug.new_epoch(gen)
        loss, err = _run_epoch(model, opt, cfg, (xtr, ytr), batches, aug, step, total, bar)
        step += len(batches)
        hist["epoch"].append(epoch)
        hist["lr"].append(lr_at(cfg.lr, step - 1, total, cfg.schedule))
        if not math.isfinite(loss):
            diverged_epoch = epoch
            for k in hist:
                if k not in ("epoch", "lr"):        # no metrics for a diverged epoch
                    hist[k].append(None)
            break
        hist["train_loss"].append(round(loss, 5))
        hist["train_error"].append(round(err, 3))
        hist["test_error"].append(round(evaluate(model, xte, yte, cfg.eval_batch), 3))
        if track:
            gap = bn_statistics_gap(model, xtr[:2000], cfg.eval_batch)
            hist["bn_mean_gap"].append(gap["mean_gap"])
            hist["bn_var_ratio"].append(gap["var_ratio"])
        bar.set_postfix(loss=f"{loss:.3f}", test=f"{hist['test_error'][-1]:.2f}%")
    bar.close()
    res = _summary(cfg, model, hist, diverged_epoch, step, (xtr, xte, yte), dev, t0)
    return (res, model) if return_model else res


def _summary(cfg, model, hist, diverged_epoch, steps, data, dev, t0) -> dict[str, Any]:
    """The record of a finished run (final metrics, BN diagnostics, wall time)."""
    diverged, k = diverged_epoch is not None, cfg.median_last
    res: dict[str, Any] = {
        "config": cfg.to_dict(), "device": str(dev), "lr": cfg.lr, "steps": steps,
        "diverged": diverged, "diverged_epoch": diverged_epoch,
        "did_not_train": did_not_train(hist["train_loss"]),
        "test_error": None if diverged else statistics.median(hist["test_error"][-k:]),
        "train_error": None if diverged else statistics.median(hist["train_error"][-k:]),
        "history": hist,
    }
    if not diverged and cfg.norm in BATCH_STAT_NORMS:
        xtr, xte, yte = data
        res.update(bn_final_report(model, cfg.batch_size, xtr, xte, yte,
                                   precise=cfg.norm != "br"))
    res["wall_s"] = round(time.perf_counter() - t0, 2)
    return res
