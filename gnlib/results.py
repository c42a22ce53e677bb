"""The results store: append-only JSONL files, one record per finished run, with provenance.

* :func:`append_record` appends one JSON line under an exclusive ``flock`` (one ``write``,
  ``fsync``): a killed run leaves no line, a finished run is never lost.
* :func:`load_results` reads a file back, newest line per run identity, every record passed
  through :func:`normalize` so that older records read like new ones (``val_error`` is now
  ``test_error``: it always was the 10k test set; ``batching="iid"`` is ``"shuffled"``; options
  added later get the value those runs had).
* :func:`did_not_train`: the rule that flags a run whose loss stayed at chance.
* :func:`provenance`, :func:`git_commit`, :func:`machine_info`: where results come from.

Pure Python (no torch, no pandas): experiments, distributed runs, benchmarks, plots and
notebooks all read results through here.
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import platform
import subprocess
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

__all__ = ["DID_NOT_TRAIN_LOSS", "LEGACY_CONFIG", "RESULTS_DIR", "append_record", "did_not_train",
           "git_commit", "load_results", "machine_info", "normalize", "provenance", "usable"]

#: ``results/`` of the repository (``GNLIB_RESULTS`` overrides it).
RESULTS_DIR = Path(os.environ.get("GNLIB_RESULTS")
                   or Path(__file__).resolve().parent.parent / "results")
#: A run whose mean training loss never fell below this (90 % of chance, ln 10) did not train.
DID_NOT_TRAIN_LOSS = 0.9 * math.log(10)
#: The value a config option had in records written before the option existed.
LEGACY_CONFIG = {"batching": "shuffled", "devices": 1, "augment": False,
                 "memory_format": "contiguous", "device": "cpu", "renorm": "fixed",
                 "gn_backend": "python"}
_RENAMED = {"val_error": "test_error", "val_error_train_mode": "test_error_train_mode"}


def did_not_train(train_loss: list[float | None]) -> bool:
    """True when the run diverged (a ``None`` / non-finite loss) or its mean training loss
    stayed at or above :data:`DID_NOT_TRAIN_LOSS` in every epoch."""
    if not train_loss or any(v is None or not math.isfinite(v) for v in train_loss):
        return True
    return min(train_loss) >= DID_NOT_TRAIN_LOSS


def normalize(record: dict[str, Any]) -> dict[str, Any]:
    """A record in today's vocabulary (a new dict; the file is never rewritten)."""
    rec = {_RENAMED.get(k, k): v for k, v in record.items()}
    if "history" in rec:
        rec["history"] = {_RENAMED.get(k, k): v for k, v in rec["history"].items()}
    if "config" in rec and rec.get("experiment") != "distributed":   # training runs only
        cfg = {**LEGACY_CONFIG, **rec["config"]}
        if cfg["batching"] == "iid":
            cfg["batching"] = "shuffled"
        rec["config"] = cfg
    if "did_not_train" not in rec and "history" in rec and "train_loss" in rec["history"]:
        rec["did_not_train"] = did_not_train(rec["history"]["train_loss"])
    return rec


def usable(record: dict[str, Any]) -> bool:
    """Records that enter means: finished, not diverged, trained (see :func:`did_not_train`)."""
    return not record.get("diverged") and not record.get("did_not_train")


def _default_key(rec: dict[str, Any]) -> str:
    return json.dumps({"preset": rec.get("preset"), **rec.get("config", {})}, sort_keys=True)


def load_results(path: str | os.PathLike, preset: str | None = None,
                 key: Callable[[dict], str] | None = None) -> list[dict]:
    """All records of a JSONL results file, normalized, newest line per ``key(record)``
    (default: preset and config), optionally of one preset. Lines that do not parse (a write
    cut by a crash) are skipped with a warning."""
    key = key or _default_key
    path = Path(path)
    if not path.exists():
        return []
    latest: dict[str, dict] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = normalize(json.loads(line))
            except json.JSONDecodeError:
                warnings.warn(f"{path}:{n}: skipping an incomplete line", stacklevel=2)
                continue
            latest[key(rec)] = rec
    return [r for r in latest.values() if preset is None or r.get("preset") == preset]


def append_record(path: str | os.PathLike, record: dict) -> None:
    """Append ``record`` as one JSON line: exclusive lock, one write, flush, fsync."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data  # a previous write was cut: never glue onto it
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def git_commit() -> str:
    """Short commit of the working tree (``+dirty`` if gnlib has uncommitted changes)."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                             capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "gnlib"],
                               cwd=root, text=True, capture_output=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine_info() -> dict[str, Any]:
    """Platform, CPU and library versions recorded with every run."""
    import sys
    from importlib.metadata import PackageNotFoundError, version

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    if "torch" in sys.modules:
        torch_version = sys.modules["torch"].__version__
    else:
        try:
            torch_version = version("torch")
        except PackageNotFoundError:
            torch_version = "not installed"
    return {"machine": f"{platform.platform()}; {cpu}; {os.cpu_count()} cores",
            "torch": torch_version, "python": platform.python_version()}


def provenance(records: Iterable[dict]) -> str:
    """Where the results come from: commands, commits, dates, machine, torch, wall time."""
    records = list(records)
    if not records:
        return "no records"

    def uniq(key: str) -> str:
        return ", ".join(sorted({str(r.get(key)) for r in records}))

    dates = sorted(r["date"] for r in records)
    wall = sum(r.get("wall_s", 0) for r in records)
    return (f"{len(records)} runs; command: {uniq('command')}\n"
            f"git commit: {uniq('git_commit')}; dates: {dates[0]} .. {dates[-1]}\n"
            f"machine: {uniq('machine')}; torch {uniq('torch')}\n"
            f"summed run time {wall / 60:.0f} min")
