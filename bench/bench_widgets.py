"""How long one redraw of the S_i explorer takes (budget: 300 ms on the 2-core course machine).

A redraw is what a slider move costs in the notebook: ``SetsExplorer.update`` (new cube,
(N, C) map, statistics) plus rendering the PNG the widget shows. Each norm is timed while
the pixel moves, so every call really redraws. Prints the median and worst ms per norm and
the ratio to the budget.

    .venv/bin/python bench/bench_widgets.py [--repeats 15] [--N 8 --C 16 --HW 8]
"""
from __future__ import annotations

import argparse
import statistics
import time

import matplotlib

matplotlib.use("Agg")

import gnlib  # noqa: E402
from gnlib.sets import SET_KINDS  # noqa: E402
from gnlib.widgets import SetsExplorer  # noqa: E402

BUDGET_MS = 300.0


def time_redraws(explorer: SetsExplorer, kind: str, repeats: int) -> tuple[list[float], list[float]]:
    """(update ms, update + PNG ms) for ``repeats`` redraws of ``kind``, moving pixel i."""
    explorer.update(kind=kind)
    explorer.png()  # warm-up
    N, C, HW = explorer.shape
    update_ms, total_ms = [], []
    for r in range(repeats):
        t0 = time.perf_counter()
        explorer.update(i_N=r % N, i_C=(3 * r) % C, i_HW=(r + 1) % HW)
        t1 = time.perf_counter()
        explorer.png()
        t2 = time.perf_counter()
        update_ms.append(1e3 * (t1 - t0))
        total_ms.append(1e3 * (t2 - t0))
    return update_ms, total_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--N", type=int, default=8)
    parser.add_argument("--C", type=int, default=16)
    parser.add_argument("--HW", type=int, default=8)
    args = parser.parse_args()
    gnlib.setup(seed=0)
    explorer = SetsExplorer(N=args.N, C=args.C, G=4, HW=args.HW, max_N=args.N, max_C=args.C)
    print(f"cube N={args.N} C={args.C} HW={args.HW}, {args.repeats} redraws per norm, "
          f"budget {BUDGET_MS:.0f} ms")
    print(f"{'norm':>4} {'update ms':>10} {'+png median':>12} {'+png worst':>11} {'ratio':>6}")
    worst_ratio = 0.0
    for kind in SET_KINDS:
        upd, tot = time_redraws(explorer, kind, args.repeats)
        med = statistics.median(tot)
        ratio = med / BUDGET_MS
        worst_ratio = max(worst_ratio, ratio)
        print(f"{kind:>4} {statistics.median(upd):10.1f} {med:12.1f} {max(tot):11.1f} "
              f"{ratio:6.2f}")
    verdict = "within" if worst_ratio <= 1 else "OVER"
    print(f"slowest median / budget = {worst_ratio:.2f} ({verdict} the {BUDGET_MS:.0f} ms budget)")


if __name__ == "__main__":
    main()
