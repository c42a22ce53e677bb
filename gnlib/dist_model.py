"""The model of a data-parallel run: the course's ResNetSmall, its BN made global if asked.

* :func:`dist_model` builds :func:`gnlib.models.build_model` for a norm of
  :data:`~gnlib.dist_config.NORMS`: ``syncbn`` and ``gbn`` are BN models whose
  ``BatchNorm2d`` layers become ``nn.SyncBatchNorm`` / :class:`~gnlib.norms.GlobalBatchNorm2d`;
* :func:`build_ddp_model` seeds it identically on every rank and wraps it in
  :class:`~torch.nn.parallel.DistributedDataParallel`;
* :func:`check_syncbn_supported` tries one real ``nn.SyncBatchNorm`` forward, so a run that
  cannot work stops with a clear message before any training.
"""
from __future__ import annotations

import torch
from torch import nn

from .dist_config import MODELS, NORMS, DistConfig
from .models import build_model
from .norms import convert_to_global_bn

__all__ = ["DEFAULT_GROUPS", "SyncBNUnavailableError", "build_ddp_model",
           "check_syncbn_supported", "dist_model"]

#: GN's G when ``groups`` is not given: 4 on the tiny model's 8 / 16 channels, else the paper's.
DEFAULT_GROUPS = {"tiny": 4, "resnet": 32}


class SyncBNUnavailableError(RuntimeError):
    """``nn.SyncBatchNorm`` cannot run on this device (CPU) in this PyTorch."""


def dist_model(norm: str, model: str = "tiny", width: int = 8,
               groups: int | None = None) -> nn.Module:
    """The single-process model of a run with ``norm`` in :data:`NORMS`.

    ``model="resnet"`` is :func:`gnlib.models.build_model`'s default ResNetSmall; ``"tiny"``
    the same network at widths ``(width, 2 width)``. ``groups`` defaults to
    :data:`DEFAULT_GROUPS`.
    """
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {MODELS}")
    arch = {"widths": (width, 2 * width)} if model == "tiny" else {}
    net = build_model("bn" if norm in ("syncbn", "gbn") else norm,
                      groups=groups or DEFAULT_GROUPS[model], **arch)
    if norm == "syncbn":
        return nn.SyncBatchNorm.convert_sync_batchnorm(net)
    return convert_to_global_bn(net) if norm == "gbn" else net


def build_ddp_model(cfg: DistConfig, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """``(ddp, model)``: the model of ``cfg`` on ``device``, initialized from ``cfg.seed``
    (the same weights on every rank), and its DDP wrapper."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.manual_seed(cfg.seed)
    model = dist_model(cfg.norm, cfg.model, cfg.width, cfg.groups).to(device)
    ddp = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    return ddp, model


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
