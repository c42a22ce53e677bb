"""Presets, grids and parallel workers that append to the results files.

* :data:`PRESETS`: ``quick`` (seconds, for notebooks and CI), ``full`` (the committed
  results), ``long`` (``figure1`` for 20 epochs: does the last epoch still move the error?)
  and ``gpu`` (``figure1`` on one GPU); :func:`grid` expands an experiment into a list of
  :class:`~gnlib.train.TrainConfig`.
* Experiments: ``figure1`` (the paper's Figure 1 after a full schedule: total batch 32 per step, BN
  statistics over device slices of 32 ... 1 images, GN / LN / IN as references; all 60k
  images with crop + flip), ``batch-size`` (BN/LN/IN/GN x B = 32..2 on a short budget: what an
  under-trained run shows), ``curves``
  (its batch-32 runs, Figure 4; stored in ``batch-size.jsonl``, so they are shared),
  ``groups`` (GN at B = 32 with a G sweep and a channels-per-group sweep, Table 3), and two
  beyond the paper: ``small-batch`` (BN / Batch Renorm / GN / GN+WS at B = 4 and 2) and
  ``non-iid`` (BN vs GN at B = 32 on simulated devices whose slices are i.i.d., one image, or
  one class; :class:`~gnlib.train.TrainConfig` ``devices`` and ``batching``). Runs that are
  already in another experiment's file with the same config (BN and GN at B = 4, 2; the
  i.i.d. B = 32 runs) are reused, not rerun (:data:`REUSES`, :func:`load_experiment`).
* :func:`run_grid` runs the configs in worker processes (``spawn``, 1 thread each). Each worker
  appends one JSON line per finished run to ``results/<file>.jsonl``
  (:func:`gnlib.results.append_record`: a killed run leaves no line, a finished run is never
  lost) and keeps the final weights in ``results/checkpoints/`` (not committed). A run's
  identity is its preset and config (:func:`identity`); re-running skips identities present
  in the file (resume), ``force=True`` reruns them (the newest line then wins).

Tables and statistics of the records live in :mod:`gnlib.analysis`, figures in
:mod:`gnlib.plots`.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Iterable

from .results import RESULTS_DIR, append_record, git_commit, machine_info
from .results import load_results as _load
from .train import TrainConfig

__all__ = ["EXPERIMENTS", "FIGURE1_BATCH", "FIGURE1_SLICES", "NON_IID_CONDITIONS", "PRESETS",
           "REUSES", "checkpoint_path", "figure1_configs", "grid", "identity", "load_experiment",
           "load_results", "pending", "results_path", "run_grid"]

EXPERIMENTS = ("figure1", "batch-size", "curves", "groups", "small-batch", "non-iid")
#: ``curves`` re-uses the batch-32 runs of the batch-size grid.
RESULT_FILE = {"figure1": "figure1", "batch-size": "batch-size", "curves": "batch-size", "groups": "groups",
               "small-batch": "small-batch", "non-iid": "non-iid"}
#: Other results files whose runs an experiment's grid may contain (same identity = same run).
REUSES = {"small-batch": ("batch-size",), "non-iid": ("batch-size",)}

#: The ``non-iid`` conditions, as ``(batching, devices)`` at B = 32: one step on the whole
#: batch, BN statistics per device slice of ``32 / devices`` images (:func:`non_iid_label`
#: names them: shuffled; 2 classes per batch; 16 devices x 2, i.i.d.; 32 devices x 1;
#: 16 devices x 2, 1 class each).
NON_IID_CONDITIONS = (("shuffled", 1), ("non-iid-2", 1), ("shuffled", 16), ("shuffled", 32), ("non-iid-1", 16))

NORMS = ("bn", "ln", "in", "gn")
#: Images per device whose statistics BN normalizes with in ``figure1`` (total batch 32).
FIGURE1_SLICES = (32, 16, 8, 4, 2, 1)
FIGURE1_BATCH = 32
BATCH_SIZES = (32, 16, 8, 4, 2)

#: Shared training settings per preset (everything else: TrainConfig defaults).
PRESETS: dict[str, dict[str, Any]] = {
    "full": {
        # 6k-image fixed subset x 6 epochs (36k images seen per run), full 10k test set; base lr
        # 0.2 at B=32 (paper: 0.1 for 100 epochs; a short probe trained faster with 0.2).
        # These grids ran before the channels-last route and the C++ GN kernel existed: pinned
        # to the route they ran.
        "train": dict(train_size=6000, test_size=10000, epochs=6, base_lr=0.2,
                      memory_format="contiguous", gn_backend="python"),
        # Figure 1, full schedule: all 60k images, crop + flip, 10 epochs of batch 32 at lr 0.1 with
        # cosine decay to 0; the final epoch's test error is reported.
        "figure1": dict(train=dict(train_size=60000, test_size=10000, epochs=10, base_lr=0.1,
                                   augment=True, median_last=1, gn_backend="python"),
                        slices=FIGURE1_SLICES, references=("gn", "ln", "in")),
        "batch_sizes": BATCH_SIZES,
        "groups": (64, 32, 16, 8, 4, 2, 1),
        "channels_per_group": (64, 32, 16, 8, 4, 2, 1),
        "groups_batch": 32,
        "small_batch_norms": ("bn", "br", "gn", "gn+ws"),
        "small_batch_sizes": (4, 2),
        "non_iid_conditions": NON_IID_CONDITIONS,
    },
    "quick": {
        "train": dict(train_size=1000, test_size=1000, epochs=2, base_lr=0.2),
        "figure1": dict(train=dict(train_size=1000, test_size=1000, epochs=2, base_lr=0.1,
                                   augment=True, median_last=1),
                        slices=(32, 2, 1), references=("gn",)),
        "batch_sizes": (32, 8, 2),
        "groups": (32, 8, 1),
        "channels_per_group": (16, 2),
        "groups_batch": 32,
        "small_batch_norms": ("bn", "br", "gn", "gn+ws"),
        "small_batch_sizes": (2,),
        "non_iid_conditions": (NON_IID_CONDITIONS[0], NON_IID_CONDITIONS[-1]),
    },
    # Figure 1 for 20 epochs, otherwise as full: with 10, cosine decay to lr 0 still lowers the
    # mean test error of BN at 32 by 0.31 pt in the last epoch (measured; the criterion is
    # < 0.15). ~17 min per run on one core: two sessions with 2 workers.
    "long": {
        "figure1": dict(train=dict(train_size=60000, test_size=10000, epochs=20, base_lr=0.1,
                                   augment=True, median_last=1, gn_backend="python"),
                        slices=FIGURE1_SLICES, references=("gn", "ln", "in")),
    },
    # Figure 1 on one GPU: ResNet-20's shape (widths 16, 32, 64; 3 x 3 blocks at 28, 14, 7
    # pixels: 21 norm layers, C/G >= 2 everywhere with G = 8), 30 epochs. Other experiments:
    # CPU presets.
    "gpu": {
        "figure1": dict(train=dict(train_size=60000, test_size=10000, epochs=30, base_lr=0.1,
                                   augment=True, median_last=1, widths=(16, 32, 64),
                                   blocks=(3, 3, 3), stem_stride=1, strides=(1, 2, 2), groups=8),
                        slices=FIGURE1_SLICES, references=("gn", "ln", "in")),
    },
}


def figure1_configs(preset: str, seed: int) -> list[TrainConfig]:
    """One seed of ``figure1``: total batch 32 per SGD step, BN statistics over device slices of
    ``s`` images (``devices = 32 / s``), and GN / LN / IN (whose forward ignores the split), in
    run order: BN at 32, GN, BN at 2 and 1 (the figure's core), then the rest."""
    f, B = PRESETS[preset]["figure1"], FIGURE1_BATCH
    bn = [TrainConfig(norm="bn", batch_size=B, devices=B // s, seed=seed, **f["train"])
          for s in f["slices"]]
    refs = [TrainConfig(norm=n, batch_size=B, seed=seed, **f["train"]) for n in f["references"]]
    core = {("bn", 1): 0, ("gn", 1): 1, ("bn", B // 2): 2, ("bn", B): 3}
    return sorted(bn + refs, key=lambda c: (core.get((c.norm, c.devices), 4), c.norm != "bn"))


def grid(experiment: str, preset: str = "full", seeds: int = 3,
         norms: Iterable[str] = NORMS, device: str = "cpu") -> list[TrainConfig]:
    """The configs of ``experiment`` under ``preset`` on ``device``, in run order: seed-major,
    the most expensive (smallest batch) first; for ``batch-size`` BN and GN before LN and IN."""
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; choose one of {EXPERIMENTS}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {tuple(PRESETS)}")
    p = PRESETS[preset]
    if "train" not in p and experiment != "figure1":
        raise ValueError(f"preset {preset!r} defines the figure1 experiment only")
    out: list[TrainConfig] = []
    for seed in range(seeds):
        if experiment == "figure1":
            out += figure1_configs(preset, seed)
        elif experiment == "small-batch":
            # Batch Renorm as the BR paper runs it: r_max, d_max warmed up (renorm="warmup")
            out += [TrainConfig(norm=n, batch_size=b, seed=seed,
                                renorm="warmup" if n == "br" else "fixed", **p["train"])
                    for b in sorted(p["small_batch_sizes"]) for n in p["small_batch_norms"]]
        elif experiment == "non-iid":
            # GN never looks across samples, so per-device i.i.d. slices change nothing for it;
            # SyncBN (statistics over all devices) only differs from shuffled BN when non-i.i.d.
            out += [TrainConfig(norm=n, batch_size=32, batching=bt, devices=d, seed=seed,
                                **p["train"])
                    for bt, d in p["non_iid_conditions"] for n in ("bn", "gn", "syncbn")
                    if (n == "bn" or bt != "shuffled" or d == 1) and (n != "syncbn" or
                                                                (d > 1 and bt != "shuffled"))]
        elif experiment in ("batch-size", "curves"):
            bss = sorted(p["batch_sizes"]) if experiment == "batch-size" else [32]
            out += [TrainConfig(norm=n, batch_size=b, seed=seed, **p["train"])
                    for b in bss for n in norms]
        else:
            b = p["groups_batch"]
            out += [TrainConfig(norm="gn", groups=g, batch_size=b, seed=seed, **p["train"])
                    for g in p["groups"]]
            out += [TrainConfig(norm="gn", channels_per_group=c, batch_size=b, seed=seed,
                                **p["train"]) for c in p["channels_per_group"]]
    if experiment == "batch-size":
        # The paper's Figure 1 compares BN and GN: those first (all seeds), then LN/IN at
        # batch 32 (the curves), then the rest; a grid cut short keeps the core comparison.
        def tier(c: TrainConfig) -> int:
            return 0 if c.norm in ("bn", "gn") else (1 if c.batch_size == 32 else 2)
        out.sort(key=tier)  # stable: seed-major, smallest (most expensive) batch first
    return [dataclasses.replace(c, device=device) for c in out] if device != "cpu" else out


def identity(preset: str, cfg: TrainConfig | dict) -> str:
    """The canonical identity of a run: its preset and full config (defaults filled in), as
    sorted JSON."""
    d = cfg.to_dict() if isinstance(cfg, TrainConfig) else TrainConfig.from_dict(cfg).to_dict()
    return json.dumps({"preset": preset, **d}, sort_keys=True)


def results_path(experiment: str, results_dir: str | os.PathLike | None = None) -> Path:
    """``results/<file>.jsonl`` of ``experiment``."""
    return Path(results_dir or RESULTS_DIR) / f"{RESULT_FILE[experiment]}.jsonl"


def _record_identity(rec: dict) -> str:
    return identity(rec["preset"], rec["config"])


def load_results(path: str | os.PathLike, preset: str | None = None, key=None) -> list[dict]:
    """:func:`gnlib.results.load_results` keyed by the run identity (:func:`identity`)."""
    return _load(path, preset, key or _record_identity)


def pending(configs: list[TrainConfig], preset: str, path: Path, force: bool,
            also: Iterable[Path] = ()) -> list[TrainConfig]:
    """The configs whose identity is not in ``path`` (or in the files ``also``) yet; all of
    them with ``force``."""
    if force:
        return list(configs)
    done = {_record_identity(r) for f in (path, *also) for r in load_results(f)}
    return [c for c in configs if identity(preset, c) not in done]


def load_experiment(experiment: str, preset: str = "full", seeds: int = 3,
                    results_dir: str | os.PathLike | None = None, device: str = "cpu") -> list[dict]:
    """The records of ``experiment``'s grid: its own file plus the runs it reuses from the
    files in :data:`REUSES` (only those whose config is in the grid)."""
    wanted = {identity(preset, c) for c in grid(experiment, preset, seeds, device=device)}
    recs = load_results(results_path(experiment, results_dir), preset)
    have = {_record_identity(r) for r in recs}
    for other in REUSES.get(experiment, ()):
        recs += [r for r in load_results(results_path(other, results_dir), preset)
                 if _record_identity(r) in wanted and _record_identity(r) not in have]
    return [r for r in recs if _record_identity(r) in wanted]


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="GN with groups")


def checkpoint_path(path: str | os.PathLike, preset: str, cfg: TrainConfig | dict) -> Path:
    """Where :func:`run_grid` keeps a run's final weights: ``results/checkpoints/`` (not
    committed), named by the experiment file and a hash of the run identity."""
    import hashlib

    digest = hashlib.sha1(identity(preset, cfg).encode()).hexdigest()[:12]
    return Path(path).parent / "checkpoints" / f"{Path(path).stem}-{digest}.pt"


def _run_one(cfg_dict: dict, meta: dict, path: str) -> dict:
    """Worker: train one config, append its record and keep its final weights; returns a
    short summary."""
    import torch

    from .train import train

    res, model = train(cfg_dict, return_model=True)
    ckpt = checkpoint_path(path, meta["preset"], cfg_dict)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, ckpt)
    rec = {**meta, **res, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    append_record(path, rec)
    return {k: res[k] for k in ("test_error", "diverged", "did_not_train", "wall_s")}


def run_grid(experiment: str, preset: str = "full", seeds: int = 3, workers: int = 2,
             force: bool = False, results_dir: str | os.PathLike | None = None,
             configs: list[TrainConfig] | None = None, log=print,
             rerun_reused: bool = False, device: str = "cpu") -> Path:
    """Run every pending config of ``experiment`` (or the given ``configs``) and append records.

    ``workers=0`` runs in this process (no pool). ``rerun_reused`` runs, into this experiment's
    own file, the configs it would otherwise reuse from another file (e.g. to record a
    diagnostic added later; the run is deterministic, so its errors come out the same).
    Returns the results file's path.
    """
    path = results_path(experiment, results_dir)
    configs = grid(experiment, preset, seeds, device=device) if configs is None else configs
    also = [results_path(o, results_dir) for o in REUSES.get(experiment, ())]
    if rerun_reused:
        reused = {_record_identity(r) for f in also for r in load_results(f)}
        todo = [c for c in pending(configs, preset, path, force) if identity(preset, c) in reused]
    else:
        todo = pending(configs, preset, path, force, also)
    log(f"{experiment} ({preset}): {len(configs)} runs, {len(configs) - len(todo)} done, "
        f"{len(todo)} to run -> {path}")
    meta = {"experiment": experiment, "preset": preset, "git_commit": git_commit(),
            "command": "python -m gnlib " + " ".join(sys.argv[1:]) if sys.argv[0].endswith(
                ("__main__.py", "gnlib")) else " ".join(sys.argv), **machine_info()}
    t0 = time.perf_counter()

    def report(i: int, c: TrainConfig, s: dict) -> None:
        err = "diverged" if s["diverged"] else f"test {s['test_error']:.2f}%"
        err += " (did not train)" if s["did_not_train"] and not s["diverged"] else ""
        extra = f" {c.batching} devices={c.devices}" if (c.batching, c.devices) != ("shuffled", 1) else ""
        log(f"[{i}/{len(todo)}] {c.norm} G={c.groups} cpg={c.channels_per_group} "
            f"B={c.batch_size}{extra} seed={c.seed}: {err} ({s['wall_s']:.0f} s; "
            f"elapsed {time.perf_counter() - t0:.0f} s)")

    if workers <= 0:
        _init_worker()
        for i, c in enumerate(todo, 1):
            report(i, c, _run_one(c.to_dict(), meta, str(path)))
        return path
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                             initializer=_init_worker) as pool:
        futs = {pool.submit(_run_one, c.to_dict(), meta, str(path)): c for c in todo}
        try:
            for i, fut in enumerate(as_completed(futs), 1):
                report(i, futs[fut], fut.result())
        except BrokenProcessPool as err:
            raise RuntimeError(f"a worker process died ({err}); every finished run is saved in "
                               f"{path}: run the same command again to resume") from err
    return path
