"""How long one redraw of the S_i explorer takes (budget: 300 ms on the 2-core course machine).

A redraw is what a slider move costs in the notebook: ``SetsExplorer.update`` (new cube,
(N, C) map, statistics) plus rendering the PNG the widget shows. Each norm is timed while
the pixel moves, so every call really redraws. Prints, per norm, the median and worst wall
ms and the median CPU ms of this process, with their ratios to the budget. The machine is
shared: when the load average is above the core count, wall time mostly measures waiting
for a core, and the CPU time is the better estimate of the redraw's own cost.

    .venv/bin/python bench/bench_widgets.py [--repeats 15] [--N 8 --C 16 --HW 8]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import matplotlib

matplotlib.use("Agg")

import gnlib  # noqa: E402
from gnlib.sets import SET_KINDS  # noqa: E402
from gnlib.widgets import SetsExplorer  # noqa: E402

BUDGET_MS = 300.0


def time_redraws(
    explorer: SetsExplorer, kind: str, repeats: int
) -> tuple[list[float], list[float], list[float]]:
    """(update ms, update + PNG wall ms, update + PNG CPU ms) for ``repeats`` redraws."""
    explorer.update(kind=kind)
    explorer.png()  # warm-up
    N, C, HW = explorer.shape
    update_ms, total_ms, cpu_ms = [], [], []
    for r in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        explorer.update(i_N=r % N, i_C=(3 * r) % C, i_HW=(r + 1) % HW)
        t1 = time.perf_counter()
        explorer.png()
        t2, c2 = time.perf_counter(), time.process_time()
        update_ms.append(1e3 * (t1 - t0))
        total_ms.append(1e3 * (t2 - t0))
        cpu_ms.append(1e3 * (c2 - c0))
    return update_ms, total_ms, cpu_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--N", type=int, default=8)
    parser.add_argument("--C", type=int, default=16)
    parser.add_argument("--HW", type=int, default=8)
    args = parser.parse_args()
    gnlib.setup(seed=0)
    explorer = SetsExplorer(N=args.N, C=args.C, G=4, HW=args.HW, max_N=args.N, max_C=args.C)
    load = os.getloadavg()[0]
    print(f"cube N={args.N} C={args.C} HW={args.HW}, {args.repeats} redraws per norm, "
          f"budget {BUDGET_MS:.0f} ms; load average {load:.1f} on {os.cpu_count()} cores")
    print(f"{'norm':>4} {'update':>7} {'wall med':>9} {'wall max':>9} {'cpu med':>8} "
          f"{'wall/budget':>12} {'cpu/budget':>11}   (ms)")
    worst_wall = worst_cpu = 0.0
    for kind in SET_KINDS:
        upd, tot, cpu = time_redraws(explorer, kind, args.repeats)
        wall, cpu_med = statistics.median(tot), statistics.median(cpu)
        worst_wall = max(worst_wall, wall / BUDGET_MS)
        worst_cpu = max(worst_cpu, cpu_med / BUDGET_MS)
        print(f"{kind:>4} {statistics.median(upd):7.1f} {wall:9.1f} {max(tot):9.1f} "
              f"{cpu_med:8.1f} {wall / BUDGET_MS:12.2f} {cpu_med / BUDGET_MS:11.2f}")
    for name, ratio in (("wall", worst_wall), ("cpu", worst_cpu)):
        verdict = "within" if ratio <= 1 else "OVER"
        print(f"slowest median {name} / budget = {ratio:.2f} "
              f"({verdict} the {BUDGET_MS:.0f} ms budget)")


if __name__ == "__main__":
    main()
