"""The command line: ``python -m gnlib reproduce ...`` and ``python -m gnlib plot ...``.

    python -m gnlib reproduce {figure1,batch-size,curves,groups,small-batch,non-iid,distributed,all} \\
        --preset {quick,full,long,gpu} --device {auto,cpu,cuda} --workers 2 --seeds 3 [--force] \\
        [--results-dir results]
    python -m gnlib plot {figure1,batch-size,curves,groups,small-batch,non-iid,sets,all} [--preset full] \\
        [--results-dir results] [--figures-dir figures]

``reproduce`` appends to ``results/<experiment>.jsonl`` and skips finished runs; ``plot``
redraws ``figures/*.png`` and ``*.svg`` from the results files only (no training).
"""
from __future__ import annotations

import argparse
import sys

CHOICES = ("figure1", "batch-size", "curves", "groups", "small-batch", "non-iid", "distributed",
           "all")


def _expand(what: str) -> list[str]:
    return (["figure1", "batch-size", "groups", "small-batch", "non-iid", "distributed"] if what == "all"
            else [what])


def main(argv: list[str] | None = None) -> int:
    from .experiments import PRESETS

    parser = argparse.ArgumentParser(prog="python -m gnlib", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    rep = sub.add_parser("reproduce", help="run an experiment grid, appending to results/")
    rep.add_argument("experiment", choices=CHOICES)
    rep.add_argument("--preset", choices=tuple(PRESETS), default="full",
                     help="long: figure1 for 20 epochs; gpu: figure1 only, a deeper net for 30 "
                          "epochs on one GPU")
    rep.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                     help="auto: cuda when available (records name the device)")
    rep.add_argument("--workers", type=int, default=2, help="processes (1 thread each); 0 = inline")
    rep.add_argument("--seeds", type=int, default=3)
    rep.add_argument("--force", action="store_true", help="rerun finished configs too")
    rep.add_argument("--results-dir", default=None)
    rep.add_argument("--rerun-reused", action="store_true",
                     help="run the configs reused from another experiment's file into this one's")
    plo = sub.add_parser("plot", help="redraw figures/ from results/ (no training)")
    plo.add_argument("experiment", choices=tuple(c for c in CHOICES if c != "distributed") + ("sets",))
    plo.add_argument("--preset", choices=tuple(PRESETS), default="full")
    plo.add_argument("--results-dir", default=None)
    plo.add_argument("--figures-dir", default=None)
    args = parser.parse_args(argv)

    if args.cmd == "reproduce":
        from .experiments import run_grid
        from .train import resolve_device

        device = resolve_device(args.device).type

        for exp in _expand(args.experiment):
            if exp == "distributed":      # 2 torchrun processes per run; one seed by default
                from .distributed import reproduce

                reproduce(args.preset, seeds=1 if args.experiment == "all" else args.seeds,
                          results_dir=args.results_dir, force=args.force)
            else:
                run_grid(exp, args.preset, args.seeds, args.workers, args.force, args.results_dir,
                         rerun_reused=args.rerun_reused, device=device)
    else:
        from .figures import PLOTTED, plot_experiment

        exps = list(PLOTTED) if args.experiment == "all" else [args.experiment]
        for exp in exps:
            try:
                for p in plot_experiment(exp, args.preset, args.results_dir, args.figures_dir):
                    print(p)
            except FileNotFoundError as err:
                if args.experiment != "all":
                    raise SystemExit(str(err)) from None
                print(f"skipped {exp}: {err}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
