r"""What one data-parallel run depends on (:class:`DistConfig`), and its command line.

Every field of :class:`DistConfig` is a flag of ``torchrun ... -m gnlib.distributed``:
:func:`add_config_arguments` turns a dataclass's fields into ``--field-name`` options with the
field's type and default, and the ``help`` / ``choices`` kept in the field's metadata, so the
command line cannot drift from the config. Arguments are checked in
:meth:`DistConfig.__post_init__`, whichever way the config is made.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BACKENDS", "DATA", "MODELS", "NORMS", "STATS_COMMUNICATION", "DistConfig",
           "add_config_arguments", "config_from_args"]

#: The normalizations a run understands.
NORMS = ("bn", "syncbn", "gbn", "gn")
DATA = ("synthetic", "fashion-mnist")
MODELS = ("tiny", "resnet")
BACKENDS = ("auto", "gloo", "nccl")

#: What each norm makes the processes exchange for its statistics.
STATS_COMMUNICATION = {
    "bn": "none (per-process statistics; DDP broadcasts BN buffers from rank 0 each forward)",
    "syncbn": "nn.SyncBatchNorm: all_gather of (mean, invstd, count) per BN layer in forward, "
              "all_reduce in backward",
    "gbn": "GlobalBatchNorm2d: all_reduce of (count, sum, sum of squares) per BN layer in "
           "forward, all_reduce of their gradients in backward",
    "gn": "none (statistics within each sample)",
}


def _option(default: Any, help: str | None = None, choices: tuple | None = None) -> Any:
    """A dataclass field whose metadata carries its command-line ``help`` and ``choices``."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class DistConfig:
    """Everything one data-parallel run depends on (each field is a ``--flag``)."""

    norm: str = _option("gn", "syncbn needs CUDA/NCCL; gbn is the CPU-capable global-batch BN",
                        NORMS)
    batch_per_process: int = _option(2, "images per process and step")
    steps: int = _option(50, "training steps (timed)")
    warmup_steps: int = _option(3, "first steps left out of the timing")
    timing_steps: int = _option(10, "extra steps without the gradient all-reduce, to time it")
    base_lr: float = _option(0.1, "lr at global batch 32: lr = base_lr * global_batch / 32")
    momentum: float = _option(0.9, "SGD momentum")
    weight_decay: float = _option(1e-4, "SGD weight decay")
    data: str = _option("synthetic", "synthetic: gnlib.train.synthetic_data", DATA)
    train_size: int = _option(1024, "training images (fashion-mnist: a fixed random subset)")
    test_size: int = _option(512, "test images")
    model: str = _option("tiny", "gnlib.models.ResNetSmall: tiny = widths (width, 2 width); "
                                 "resnet = the course's default", MODELS)
    width: int = _option(8, "tiny model width")
    groups: int | None = _option(None, "GN groups (default 4 for tiny, 32 for resnet)")
    seed: int = _option(0, "initial weights and batch order (the same on every rank)")
    backend: str = _option("auto", "auto: nccl with CUDA, else gloo", BACKENDS)
    threads: int = _option(1, "torch threads per process")
    timeout_s: float = _option(300.0, "collective timeout: a rank waiting for a dead peer "
                                      "gives up after it")

    def __post_init__(self) -> None:
        for name, ok in (("norm", NORMS), ("data", DATA), ("model", MODELS),
                         ("backend", BACKENDS)):
            if getattr(self, name) not in ok:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose one of {ok}")
        for name in ("batch_per_process", "steps", "threads", "train_size", "test_size", "width"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_steps < 0 or self.timing_steps < 0:
            raise ValueError("warmup_steps and timing_steps must be >= 0")
        if self.groups is not None and self.groups < 1:
            raise ValueError(f"groups must be >= 1 or None, got {self.groups}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")


def _scalar_type(hint: Any) -> type:
    """``int`` for ``int`` and ``int | None`` (the type a command-line string converts to)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    return hint


def _argument(f: dataclasses.Field, hint: Any) -> dict[str, Any]:
    """``add_argument`` keywords for one dataclass field."""
    kind = _scalar_type(hint)
    kw: dict[str, Any] = {"dest": f.name, "default": f.default, "help": f.metadata.get("help")}
    if kind is bool:
        kw["action"] = argparse.BooleanOptionalAction
    else:
        kw["type"] = kind
    if f.metadata.get("choices"):
        kw["choices"] = f.metadata["choices"]
    return kw


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one ``--field-name`` option per field of the dataclass ``cls`` (type, default,
    and ``help`` / ``choices`` from the field's metadata)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        parser.add_argument("--" + f.name.replace("_", "-"), **_argument(f, hints[f.name]))


def config_from_args(cls: type, args: argparse.Namespace) -> Any:
    """The dataclass ``cls`` from parsed options (validated by its ``__post_init__``)."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})
