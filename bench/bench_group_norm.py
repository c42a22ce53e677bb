"""Benchmark Group Norm: gnlib's hand-derived backward vs the autograd reference vs torch native.

For each shape, thread count and memory format (contiguous, and channels-last: the layout the
course's models train in), forward+backward times are measured side by side (repeats
interleaved, medians) and printed as ratios; saved-for-backward memory is measured exactly.
Targets: gnlib within 1.5x of native (stretch 1.2x), at least 3x faster than the reference,
and saved memory no more than the input plus the per-group statistics. Where gnlib's fused C++
kernel can be built (``group_norm(..., backend="cpp")``), it is timed too as ``gnlib-cpp``, with
its own target: within 1.5x of native (stretch 1.2x); ``--no-cpp`` leaves it out. The shapes: the four
of notebook 03's memory table, and (32, 64, 7, 7) and (32, 128, 4, 4), two of the three GN input
shapes of the course's model at batch 32 (the stem's (32, 64, 14, 14) is not timed). Notebook 03
reads the ``--save`` file back with :func:`gnlib.bench_file.load_bench` (keep the header:
date, commit, machine).

    python bench/bench_group_norm.py [--repeats 15] [--threads 1 2] [--compile] [--no-cpp]
                                     [--formats contiguous channels_last]
                                     [--save bench/results_group_norm.txt]
                                     [--figure figures/group_norm_speed.png]
    python bench/bench_group_norm.py --profile bench/profile_group_norm.txt   # where the time goes
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from gnlib import group_norm_reference
from gnlib.bench import (CPP, CPP_RATIO, IMPLEMENTATIONS, format_memory_table,
                         format_time_table, fwd_bwd_inputs, implementations, median_times,
                         num_threads, saved_memory, time_fwd_bwd)
from gnlib.norms import group_norm_cpp
from gnlib.plots import plot_fwd_bwd_times, save_figure

SHAPES = [(32, 64, 56, 56), (32, 256, 14, 14), (2, 64, 28, 28), (128, 32, 7, 7),
          (32, 64, 7, 7), (32, 128, 4, 4)]
TARGET_NATIVE, STRETCH_NATIVE, TARGET_REFERENCE = 1.5, 1.2, 3.0
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def header(note: str = "") -> str:
    """Date, git commit, machine and versions, for the results file; ``note``: what else ran
    on the machine (``--note``)."""
    root = Path(__file__).resolve().parents[1]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                            capture_output=True, text=True).stdout.strip() or "unknown"
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"# bench_group_norm.py  {now}  git {commit}\n"
            f"# machine: {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}; "
            f"python {platform.python_version()}, torch {torch.__version__}\n"
            f"# load average at start: {os.getloadavg()[0]:.2f} (shared machine: ratios, not ms)"
            + (f"\n# note: {note}" if note else ""))


def target_lines(medians: dict, label: str) -> list[str]:
    lines = []
    for shape, t in medians.items():
        nat, ref = t["gnlib"] / t["native"], t["reference"] / t["gnlib"]
        ok = nat <= TARGET_NATIVE and ref >= TARGET_REFERENCE
        stretch = " stretch met" if nat <= STRETCH_NATIVE else ""
        lines.append(f"  {str(shape):<18} gnlib/native {nat:5.2f}x (target <= {TARGET_NATIVE}{stretch})"
                     f"  reference/gnlib {ref:5.2f}x (target >= {TARGET_REFERENCE})"
                     f"  {'OK' if ok else 'MISSED'}{label}")
    for shape, t in medians.items():                   # gnlib's C++ kernel, where timed
        if CPP in t:
            cpp = t[CPP] / t["native"]
            stretch = " stretch met" if cpp <= STRETCH_NATIVE else ""
            lines.append(f"  {str(shape):<18} {CPP_RATIO} {cpp:5.2f}x (target <= {TARGET_NATIVE}"
                         f"{stretch})  {'OK' if cpp <= TARGET_NATIVE else 'MISSED'}{label}")
    return lines


def compile_section(shapes: list[tuple[int, ...]], groups: int, repeats: int) -> None:
    """torch.compile of the reference: first-call (compile) time and ratio to native.

    Inductor's on-disk caches are disabled so the first call shows a cold compile.
    """
    import torch._inductor.config as inductor_config

    inductor_config.force_disable_caches = True
    compiled = torch.compile(group_norm_reference, dynamic=False)
    print("\n## torch.compile(group_norm_reference), 1 thread, cold compile (caches disabled)")
    with num_threads(1):
        medians = {}
        for shape in shapes:
            x, w, b, dy = fwd_bwd_inputs(shape)
            start = time.perf_counter()
            torch.autograd.grad(compiled(x, groups, w, b), (x, w, b), dy)
            first = time.perf_counter() - start
            fns = {"compiled": compiled, "native": IMPLEMENTATIONS["native"]}
            medians[shape] = t = median_times(time_fwd_bwd(fns, shape, groups, repeats))
            print(f"  {str(shape):<18} first call (compile) {first:6.1f} s   compiled "
                  f"{1e3 * t['compiled']:8.2f} ms   native {1e3 * t['native']:8.2f} ms   "
                  f"compiled/native {t['compiled'] / t['native']:5.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--groups", type=int, default=32)
    parser.add_argument("--formats", nargs="+", choices=tuple(FORMATS),
                        default=list(FORMATS), help="input memory formats")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--no-cpp", action="store_true",
                        help="leave out gnlib's C++ kernel (group_norm(..., backend='cpp'))")
    parser.add_argument("--save", type=Path, help="also write the output to this file")
    parser.add_argument("--note", default="", help="what else ran on the machine (header line)")
    parser.add_argument("--figure", type=Path, help="bar chart of the 1-thread timings (.png)")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="instead of timing: write torch.profiler tables of gnlib and native "
                             "(1 thread, contiguous) to FILE")
    args = parser.parse_args(argv)
    out = io.StringIO()
    with contextlib.redirect_stdout(Tee(sys.stdout, out)):
        if args.profile:
            profile_section(args.groups, note=args.note)
        else:
            run(args)
    save = args.profile or args.save
    if save:
        save.write_text(out.getvalue())
        print(f"saved to {save}")


PROFILE_SHAPES = [(32, 64, 7, 7), (32, 64, 56, 56)]


def profile_section(G: int, calls: int = 20, note: str = "") -> None:
    """Operators (count per forward + backward, self CPU time) of gnlib and native, 1 thread,
    contiguous: shows how many separate passes and dispatches gnlib's Python makes."""
    print(header(note))
    print(f"# G={G}, float32, contiguous, 1 thread, {calls} forward + backward calls each\n")
    for shape in PROFILE_SHAPES:
        x, w, b, dy = fwd_bwd_inputs(shape)                            # leaves that need grad
        for name in ("gnlib", "native"):
            fn = IMPLEMENTATIONS[name]

            def step() -> None:
                torch.autograd.grad(fn(x, G, w, b), (x, w, b), dy)

            with num_threads(1):
                step()                                                 # warm-up
                with torch.profiler.profile() as prof:
                    for _ in range(calls):
                        step()
            events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
            ops = sum(e.count for e in events) / calls
            total = sum(e.self_cpu_time_total for e in prof.key_averages()) / calls / 1e3
            print(f"## {name}, {shape}: {ops:.0f} aten operator calls per forward + backward, "
                  f"{total:.2f} ms self CPU per call")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def run(args: argparse.Namespace) -> None:
    print(header(args.note))
    G = args.groups
    fns = implementations(cpp=not args.no_cpp)
    if args.no_cpp:
        print(f"# {CPP}: left out (--no-cpp)")
    elif CPP in fns:
        flags = " ".join(group_norm_cpp.build_flags())
        print(f"# {CPP}: group_norm(..., backend='cpp'), C++ kernel built with {flags}")
    else:
        print(f"# {CPP}: not timed, the kernel is unavailable: "
              + group_norm_cpp.why_unavailable().splitlines()[0])
    print(f"# G={G}, float32, {args.repeats} interleaved repeats per implementation, medians\n")
    for fmt in args.formats:
        for n in args.threads:
            with num_threads(n):
                medians = {s: median_times(time_fwd_bwd(fns, s, G, args.repeats,
                                                        memory_format=FORMATS[fmt]))
                           for s in SHAPES}
            if args.figure and n == args.threads[0] and fmt == args.formats[0]:
                save_figure(plot_fwd_bwd_times(medians, groups=G, threads=n), args.figure)
            suffix = "" if fmt == "contiguous" else f", {fmt}"
            print(f"## forward + backward, {n} thread{'s' if n > 1 else ''}{suffix}")
            print(format_time_table(medians))
            print("\n".join(target_lines(medians, f" ({n} thr{suffix})")) + "\n")
    memory = {s: {k: saved_memory(f, s, G) for k, f in fns.items()} for s in SHAPES}
    print("## saved for backward")
    print(format_memory_table(memory, G))
    for shape, mem in memory.items():
        stats = 2 * shape[0] * G * 4
        extra = mem["gnlib"].new
        print(f"  {str(shape):<18} gnlib allocates {extra} B for backward (stats: {stats} B)"
              f"  {'OK' if extra <= stats else 'MISSED'};  reference keeps "
              f"{mem['reference'].total / mem['gnlib'].total:.1f}x gnlib")
        if CPP in mem:
            print(f"  {str(shape):<18} {CPP} allocates {mem[CPP].new} B for backward "
                  f"(stats: {stats} B)  {'OK' if mem[CPP].new <= stats else 'MISSED'}")
    if args.compile:
        compile_section(SHAPES, G, max(5, args.repeats // 3))


class Tee(io.TextIOBase):
    """Write to several streams (terminal and the results file)."""

    def __init__(self, *streams: io.TextIOBase) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
            s.flush()
        return len(text)


if __name__ == "__main__":
    main()
