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
``gbn``   the global batch ``b * W``:                       one all-reduce of (count, sum, sum of squares)
          :class:`~gnlib.norms.GlobalBatchNorm2d` (CPU)     per BN layer in forward, one in backward
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
the final loss and test error (``test_error``, %), the median time per step, the time per
step without DDP's gradient all-reduce (``ddp.no_sync()``) and their difference (the
all-reduce cost), and a direct timing of one all-reduce of a tensor of the model's size. The
process group is destroyed in a ``finally`` block, so a failing rank shuts down cleanly and
its peers get an error instead of hanging.

This module is the entry point (command line, :func:`main`); the parts live next to it:

================================  =============================================================
:mod:`gnlib.dist_config`          :class:`DistConfig` (one field per flag) and its checks
:mod:`gnlib.dist_model`           the model (:func:`gnlib.models.build_model`), DDP, SyncBN probe
:mod:`gnlib.dist_run`             one run in steps: process group, set-up, training loop,
                                  evaluation, all-reduce timing, summary
:mod:`gnlib.dist_timing`          medians over steps, maxima over ranks, one all-reduce timed
:mod:`gnlib.dist_reproduce`       ``python -m gnlib reproduce distributed`` (the results store)
:mod:`gnlib.norms.per_device_bn`  :class:`~gnlib.norms.GlobalBatchNorm2d`, global statistics
================================  =============================================================
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

import torch
import torch.distributed as dist

from .dist_config import (NORMS, STATS_COMMUNICATION, DistConfig, add_config_arguments,
                          config_from_args)
from .dist_model import SyncBNUnavailableError, check_syncbn_supported, dist_model
from .dist_reproduce import REPRODUCE_PRESETS, reproduce, run_identity
from .dist_run import init_process_group, run, shutdown
from .norms import GlobalBatchNorm2d  # noqa: F401 - its former home; gnlib.norms owns it

__all__ = [
    "NORMS", "REPRODUCE_PRESETS", "STATS_COMMUNICATION", "DistConfig", "GlobalBatchNorm2d",
    "SyncBNUnavailableError", "check_syncbn_supported", "dist_model", "main", "parse_args",
    "reproduce", "run", "run_identity",
]


def parse_args(argv: Sequence[str] | None = None) -> tuple[DistConfig, str | None]:
    """``(config, output path)`` from the command line: one flag per :class:`DistConfig`
    field, plus ``--output``."""
    p = argparse.ArgumentParser(
        prog="torchrun --nproc_per_node=2 -m gnlib.distributed",
        description="Data-parallel training (DDP) with BN, SyncBN, global-batch BN or GN; "
                    "rank 0 prints a JSON summary. See the module docstring for multi-node runs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_config_arguments(p, DistConfig)
    p.add_argument("--output", default=None, help="also write the JSON summary here (rank 0)")
    args = p.parse_args(argv)
    return config_from_args(DistConfig, args), args.output


def _report(summary: dict, output: str | None) -> None:
    """Rank 0 prints the summary as one JSON line (and writes it to ``output``)."""
    if dist.get_rank() != 0:
        return
    line = json.dumps(summary)
    print(line, flush=True)
    if output:
        with open(output, "w") as fh:
            fh.write(line + "\n")


def main(argv: Sequence[str] | None = None, init_method: str | None = None) -> int:
    """Entry point: join the process group from torchrun's environment (or ``init_method``
    with RANK / WORLD_SIZE set), run, report from rank 0, always leave the group."""
    cfg, output = parse_args(argv)
    if "WORLD_SIZE" not in os.environ and init_method is None:
        print("gnlib.distributed: WORLD_SIZE is not set; start it with torchrun, e.g.\n"
              "  torchrun --nproc_per_node=2 -m gnlib.distributed --norm gn", file=sys.stderr)
        return 2
    torch.set_num_threads(cfg.threads)
    try:
        init_process_group(cfg, init_method)
        _report(run(cfg), output)
        dist.barrier()  # every rank is done before any tears its connections down
        return 0
    except Exception as err:
        print(f"gnlib.distributed: rank {os.environ.get('RANK', '0')} failed: "
              f"{type(err).__name__}: {err}", file=sys.stderr, flush=True)
        raise
    finally:
        shutdown()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SyncBNUnavailableError:
        sys.exit(3)  # the message is already on stderr; no traceback for a known limitation
