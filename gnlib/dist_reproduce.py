"""The committed distributed experiment: ``torchrun`` runs appended to
``results/distributed.jsonl`` (``python -m gnlib reproduce distributed``).

Each run starts ``torchrun --standalone --nproc_per_node=nproc -m gnlib.distributed`` for one
norm and seed; rank 0's summary, with the command, git commit, date and machine
(:mod:`gnlib.results`), becomes one record. A run's identity (:func:`run_identity`) is its
preset, number of processes and :class:`~gnlib.dist_config.DistConfig`; finished identities
are skipped, so an interrupted experiment resumes. Records are read back with
``gnlib.results.load_results(path, key=run_identity)``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .dist_config import DistConfig
from .results import RESULTS_DIR, append_record, git_commit, load_results, machine_info, provenance

__all__ = ["REPRODUCE_PRESETS", "reproduce", "run_identity", "torchrun_summary"]

#: ``python -m gnlib reproduce distributed``: per-process batch 2 on 2 CPU processes. syncbn
#: is left out on CPU (it needs CUDA); gbn computes the same global-batch statistics.
REPRODUCE_PRESETS: dict[str, dict[str, Any]] = {
    "full": dict(model="resnet", data="fashion-mnist", train_size=6000, test_size=10000,
                 batch_per_process=2, steps=4500, timing_steps=50, base_lr=0.2),
    "quick": dict(model="tiny", data="fashion-mnist", train_size=1000, test_size=1000,
                  batch_per_process=2, steps=150, timing_steps=10, base_lr=0.2),
}


def run_identity(record: dict) -> str:
    """A distributed run's identity: its preset, number of processes and the
    :class:`DistConfig` fields of its config (keys that are not fields, such as the defaults
    :func:`gnlib.results.normalize` adds or options removed since, do not count)."""
    config = record.get("config") or {}
    own = {f.name: config.get(f.name) for f in fields(DistConfig)}
    return json.dumps([record.get("preset"), record.get("world_size"), own], sort_keys=True)


def _identity(preset: str, nproc: int, cfg: DistConfig) -> str:
    return run_identity({"preset": preset, "world_size": nproc, "config": asdict(cfg)})


def _flags(norm: str, seed: int, preset: str) -> list[str]:
    """The ``gnlib.distributed`` command-line flags of one run of ``preset``."""
    flags = ["--norm", norm, "--seed", str(seed)]
    for k, v in REPRODUCE_PRESETS[preset].items():
        flags += [f"--{k.replace('_', '-')}", str(v)]
    return flags


def torchrun_summary(flags: Sequence[str], nproc: int) -> dict[str, Any]:
    """Run ``torchrun --standalone --nproc_per_node=nproc -m gnlib.distributed *flags`` and
    return rank 0's summary; a failed run raises with the end of its stderr."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "summary.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", "-m", "gnlib.distributed", *flags,
               "--output", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"torchrun failed for {' '.join(flags[:2])} (exit "
                               f"{proc.returncode}):\n{proc.stderr[-2000:]}")
        return json.loads(out.read_text())


def _check_preset(preset: str) -> None:
    if preset not in REPRODUCE_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {tuple(REPRODUCE_PRESETS)}")


def reproduce(preset: str = "full", norms: Sequence[str] | None = None, nproc: int = 2,
              seeds: int = 1, results_dir: str | os.PathLike | None = None, force: bool = False,
              log: Callable[[str], Any] = print) -> Path:
    """Run every norm (default: bn, gbn, gn; syncbn too when CUDA is available) and seed
    through ``torchrun``, appending each rank-0 summary with its provenance to
    ``results/distributed.jsonl``. Finished identities are skipped unless ``force``."""
    _check_preset(preset)
    if norms is None:
        norms = ("bn", "syncbn", "gbn", "gn") if torch.cuda.is_available() else ("bn", "gbn", "gn")
    path = Path(results_dir or RESULTS_DIR) / "distributed.jsonl"
    done = {run_identity(r) for r in load_results(path, key=run_identity)}
    meta = {"git_commit": git_commit(), **machine_info()}
    for seed in range(seeds):
        for norm in norms:
            cfg = DistConfig(norm=norm, seed=seed, **REPRODUCE_PRESETS[preset])
            if _identity(preset, nproc, cfg) in done and not force:
                log(f"{norm} seed={seed}: done, skipped")
                continue
            _run_and_append(path, _flags(norm, seed, preset), nproc, preset, meta, log)
    log(provenance(load_results(path, preset, key=run_identity)))
    return path


def _run_and_append(path: Path, flags: list[str], nproc: int, preset: str,
                    meta: dict[str, Any], log: Callable[[str], Any]) -> None:
    """One torchrun run, appended to ``path`` as a record with its command and provenance."""
    command = f"torchrun --standalone --nproc_per_node={nproc} -m gnlib.distributed"
    rec = {**torchrun_summary(flags, nproc), **meta, "preset": preset,
           "experiment": "distributed", "command": f"{command} {' '.join(flags)}"}
    append_record(path, rec)
    log(f"{flags[1]} seed={flags[3]}: test {rec['test_error']:.2f}%, {rec['step_ms']:.1f} ms/step "
        f"({rec['grad_allreduce_ms']:.2f} ms gradient all-reduce)")
