"""Training-step throughput of the course's model: routes side by side, against the CPU's peak.

Times exactly what the experiments run, :func:`gnlib.train.train_step` on a model from
:func:`gnlib.train.prepare_model` (1 thread), for BN, GN (gnlib), LN, IN and BN with
per-device slices, at batch 32 and batch 2. Routes (each a change on top of the one before):

* ``eager``: the step as it was before the fast route (contiguous NCHW, per-parameter SGD,
  gnlib's GroupNorm layers in Python);
* ``channels_last``: model and batches in channels-last memory;
* ``foreach``: channels-last + multi-tensor (``foreach``) SGD;
* ``default``: ``foreach`` + gnlib's GroupNorm layers (GN, LN, IN) on the fused C++ kernel
  (``gn_backend="auto"``): what ``gnlib.train`` runs by default (the same as ``foreach`` for BN);
* ``compiled`` (``--compile``): ``torch.compile`` of the model on the default route.

The steps of every norm and route of one batch size and the float32 matmul peak (``torch.mm``
of 1024 x 1024, 1 thread) are interleaved in blocks and each keeps its best block (the least
disturbed by other processes), so every ratio compares timings taken side by side; the peak
used is the higher of that and the matmul timed alone before and after (conservative);
achieved GFLOP/s counts ``3 x 2 x MACs`` per image (forward + backward,
:func:`gnlib.models.count_macs`). Two ceilings bound what any route can reach: the eager step's
fraction of peak (no route is more than ``1 / fraction`` times faster) and, with
``--ceiling``, the GFLOP/s of the model's convolutions alone, each layer's forward + backward
timed at its own input shape, per batch size.

    .venv/bin/python bench/bench_training.py [--compile] [--profile] [--ceiling]
                                             [--save bench/results_training.txt]
    .venv/bin/python bench/bench_training.py --quick --json     # default route, one JSON per line
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from gnlib.models import count_macs
from gnlib.train import TrainConfig, make_optimizer, prepare_model, to_route, train_step

CPU = torch.device("cpu")
#: (label, norm, devices at B = 32, devices at B = 2): per-device BN has slices of 2 and of 1.
NORMS = (("bn", "bn", 1, 1), ("gn", "gn", 1, 1), ("ln", "ln", 1, 1), ("in", "in", 1, 1),
         ("bn per-device", "bn", 16, 2))
BATCHES = (32, 2)


def matmul(n: int = 1024):
    """A closure timing one float32 ``n x n`` matmul, and its GFLOP (the peak's yardstick)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return (lambda: torch.mm(a, b)), 2 * n ** 3 / 1e9


def isolated_peak(repeats: int = 6) -> float:
    """Best GFLOP/s of the matmul timed alone, call by call."""
    mm, gflop = matmul()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        mm()
        best = min(best, time.perf_counter() - t)
    return gflop / best


def make_step(norm: str, devices: int, batch: int, route: str):
    """A closure running one training step of ``route``, and the step's GFLOP."""
    fast = route in ("default", "compiled")
    cfg = TrainConfig(norm=norm, batch_size=batch, devices=devices,
                      memory_format="contiguous" if route == "eager" else "channels_last",
                      gn_backend="auto" if fast else "python")
    model = prepare_model(cfg, CPU)
    if route in ("eager", "channels_last"):                  # per-parameter SGD
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4,
                              foreach=False)
    else:
        opt = make_optimizer(cfg, model)
    net = torch.compile(model) if route == "compiled" else model
    gen = torch.Generator().manual_seed(0)
    x = to_route(torch.randn(batch, 1, 28, 28, generator=gen), cfg, CPU)
    y = torch.randint(0, 10, (batch,), generator=gen)
    gflop = 6 * count_macs(model) * batch / 1e9
    return (lambda: train_step(net, opt, x, y)), gflop


def best_ms(steps: dict, n: int, rounds: int) -> dict:
    """Milliseconds per step of each closure: interleaved blocks of ``n``, best block."""
    best = {k: float("inf") for k in steps}
    for _ in range(rounds):
        for k, f in steps.items():
            t = time.perf_counter()
            for _ in range(n):
                f()
            best[k] = min(best[k], (time.perf_counter() - t) / n * 1e3)
    return best


def measure(routes: tuple[str, ...], n32: int, n2: int, rounds: int) -> list[dict]:
    """One row per (norm, batch, route) with ms/step, the compile time where compiled, and the
    matmul peak. Every norm and route of a batch size, and the matmul, are timed in the same
    interleaved blocks, so their ratios (GN / BN, route / eager, fraction of peak) compare
    steps measured side by side under the same load."""
    rows = []
    for batch in BATCHES:
        steps, gflop, first = {}, {}, {}
        for label, norm, d32, d2 in NORMS:
            for route in routes:
                step, gflop[label, route] = make_step(norm, d32 if batch == 32 else d2, batch, route)
                t = time.perf_counter()
                step()                                   # warm-up (compiles when compiled)
                first[label, route] = time.perf_counter() - t
                for _ in range(3):
                    step()
                steps[label, route] = step
        steps["peak"], peak_gflop = matmul()
        ms = best_ms(steps, n32 if batch == 32 else n2, rounds)
        peak = peak_gflop / ms.pop("peak") * 1e3
        rows += [{"norm": label, "batch_size": batch, "route": route, "ms_per_step": t,
                  "images_per_s": batch / t * 1e3, "gflops": gflop[label, route] / t * 1e3,
                  "peak_gflops": peak, "first_call_s": first[label, route]}
                 for (label, route), t in ms.items()]
    return rows


def conv_inputs(batch: int) -> list[tuple[torch.nn.Conv2d, tuple[int, ...]]]:
    """Each Conv2d of the default model with the shape of its input at ``batch`` images."""
    model = prepare_model(TrainConfig(norm="bn", batch_size=batch), CPU)
    found = []
    hooks = [m.register_forward_hook(lambda m, i, o: found.append((m, tuple(i[0].shape))))
             for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last))
    for h in hooks:
        h.remove()
    return found


def conv_ceiling(batch: int, n: int = 10, rounds: int = 5) -> tuple[float, float]:
    """GFLOP/s of the model's convolutions alone (forward + backward, channels-last, each layer
    timed separately at its own input shape, best block), counted as the step counts them
    (about what a step could reach if everything else were free), and that as a fraction of
    the 1024 x 1024 matmul peak timed in the same interleaved blocks (so load cancels)."""
    mm, mm_gflop = matmul()
    steps, flop = {"peak": mm}, 0.0
    for i, (conv, shape) in enumerate(conv_inputs(batch)):
        x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
        x.requires_grad_(i > 0)                      # the stem's input is the data: no gradient
        g = torch.randn_like(conv(x))
        kh, kw = conv.kernel_size
        flop += 6 * g.numel() * conv.in_channels // conv.groups * kh * kw
        steps[i] = lambda conv=conv, x=x, g=g: conv(x).backward(g)
    ms = best_ms(steps, n, rounds)
    conv = flop / (sum(v for k, v in ms.items() if k != "peak") / 1e3) / 1e9
    return conv, conv / (mm_gflop / (ms["peak"] / 1e3))


def header(note: str = "") -> str:
    root = Path(__file__).resolve().parents[1]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                            capture_output=True, text=True).stdout.strip() or "unknown"
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                   if ln.startswith("model name"))
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"# bench_training.py  {now}  git {commit}\n"
            f"# machine: {os.cpu_count()} cores, {cpu}; torch {torch.__version__}, 1 thread\n"
            f"# load average at start: {os.getloadavg()[0]:.2f}" + (f"\n# note: {note}" if note else ""))


def report(rows: list[dict], routes: tuple[str, ...],
           ceilings: dict[int, tuple[float, float]] | None = None) -> str:
    """The table, ratios against eager, GN / BN per route, what meets the issue's goals, and
    (``ceilings``: batch -> :func:`conv_ceiling`) how far a goal can be reached. Fractions of
    peak use the matmul timed in the same blocks as the row."""
    peaks = {r["batch_size"]: r["peak_gflops"] for r in rows}
    out = ["float32 matmul peak (1024 x 1024, 1 thread; the higher of the matmul timed in the "
           "steps' interleaved blocks and timed alone before and after them): "
           + ", ".join(f"{p:.1f} GFLOP/s (B={b})" for b, p in peaks.items()), "",
           f"{'norm':<14}{'B':>3} {'route':<14}{'ms/step':>8}{'img/s':>8}{'GFLOP/s':>8}"
           f"{'of peak':>8}{'vs eager':>9}{'first call':>11}"]
    key = {(r["norm"], r["batch_size"], r["route"]): r for r in rows}
    for r in rows:
        base = key.get((r["norm"], r["batch_size"], "eager"))
        speedup = f"{base['ms_per_step'] / r['ms_per_step']:8.2f}x" if base else ""
        out.append(f"{r['norm']:<14}{r['batch_size']:>3} {r['route']:<14}{r['ms_per_step']:8.2f}"
                   f"{r['images_per_s']:8.0f}{r['gflops']:8.1f}{r['gflops'] / r['peak_gflops']:8.0%}"
                   f"{speedup}{r['first_call_s']:10.1f}s")
    out.append("")
    for route in routes:
        for b in BATCHES:
            gn, bn = key[("gn", b, route)], key[("bn", b, route)]
            out.append(f"GN / BN step time, {route:<14} B={b:>2}: "
                       f"{gn['ms_per_step'] / bn['ms_per_step']:.2f}x")
    out += ["", "goals (default route): >= 1.6x eager, >= 60 % of peak, GN <= 1.1x BN;",
            "a route can be at most 1 / (eager's fraction of peak) times faster than eager, and"
            " at most (the convolutions' fraction of peak) / (eager's) if all else took no time"]
    for (norm, b, route), r in key.items():
        if route == "default" and (norm, b, "eager") in key:
            eager, peak = key[(norm, b, "eager")], r["peak_gflops"]
            base, frac = eager["ms_per_step"] / r["ms_per_step"], r["gflops"] / peak
            most = f"at most {peak / eager['gflops']:.2f}x"
            if ceilings and b in ceilings:
                most += f", {ceilings[b][1] * peak / eager['gflops']:.2f}x at the convolutions' speed"
            out.append(f"  {norm:<14} B={b:>2}: {base:.2f}x eager ({'met' if base >= 1.6 else 'missed'}; "
                       f"{most}), {frac:.0%} of peak ({'met' if frac >= 0.6 else 'missed'})")
    for b, (c, frac) in sorted((ceilings or {}).items(), reverse=True):
        out.append(f"ceiling B={b:>2}: the convolutions alone (fwd + bwd, each layer at its own "
                   f"shape) reach {c:.1f} GFLOP/s = {frac:.0%} of the matmul peak timed with them")
    return "\n".join(out)


def profile_table(norm: str, devices: int, batch: int, n: int = 10) -> str:
    """``torch.profiler`` top operators (self CPU time) of ``n`` default-route steps."""
    step, _ = make_step(norm, devices, batch, "default")
    for _ in range(3):
        step()
    with torch.profiler.profile() as prof:
        for _ in range(n):
            step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12,
                                     max_name_column_width=40)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="default route only, fewer steps")
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    ap.add_argument("--compile", action="store_true", help="also torch.compile the model")
    ap.add_argument("--profile", action="store_true", help="profiler tables, B=32 and B=2, BN and GN")
    ap.add_argument("--ceiling", action="store_true",
                    help="also time the model's convolutions alone at each batch size")
    ap.add_argument("--save", type=Path, help="also write the report to this file")
    ap.add_argument("--note", default="", help="what else ran on the machine (header line)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    routes = ("default",) if args.quick else ("eager", "channels_last", "foreach", "default")
    routes += ("compiled",) if args.compile else ()
    n32, n2, rounds = (4, 20, 3) if args.quick else (10, 50, 5)
    alone = isolated_peak()
    rows = measure(routes, n32, n2, rounds)
    alone = max(alone, isolated_peak())          # before and after the steps
    for r in rows:                               # the conservative peak: the higher of the two
        r["peak_gflops"] = max(r["peak_gflops"], alone)
    ceilings = {b: conv_ceiling(b) for b in BATCHES} if args.ceiling else None
    if args.json:
        for r in rows:
            print(json.dumps({**{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()},
                              "fraction_of_peak": round(r["gflops"] / r["peak_gflops"], 4)}))
        return
    text = header(args.note) + "\n" + report(rows, routes, ceilings)
    if args.profile:
        for (label, norm), b in ((("BN", "bn"), 32), (("GN", "gn"), 32), (("BN", "bn"), 2), (("GN", "gn"), 2)):
            text += f"\n\n## torch.profiler, default route, {label}, B={b}, 10 steps\n"
            text += profile_table(norm, 1, b)
    print(text)
    if args.save:
        args.save.write_text(text + "\n")


if __name__ == "__main__":
    main()
