"""Reading back the committed output of ``bench/bench_group_norm.py``
(``bench/results_group_norm.txt``) with its provenance header (date, git commit, machine), so
that notebooks show measured numbers instead of quoting them in prose: :func:`load_bench`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BenchResults", "RESULTS_FILE", "load_bench"]

#: The results file that ``bench/bench_group_norm.py --save`` writes and the repository commits.
RESULTS_FILE = Path(__file__).resolve().parents[1] / "bench" / "results_group_norm.txt"

#: The columns of a time table whose header does not name them (ms, then ratios ending in x).
_DEFAULT_COLUMNS = ("reference", "gnlib", "native", "gnlib/native", "ref/gnlib")


@dataclass(frozen=True)
class BenchResults:
    """The parsed output of ``bench/bench_group_norm.py``.

    ``date``, ``commit``, ``machine``, ``settings`` (with ``groups``, the G of every
    measurement) and ``note`` (what else ran, ``--note``) come from the file's header;
    ``times[threads]`` maps
    ``shape -> {"reference": s, "gnlib": s, "native": s}`` (median seconds, as
    :func:`gnlib.bench.median_times` returns them, rounded to the file's 0.01 ms; plus
    ``"gnlib-cpp"`` in files that time gnlib's C++ kernel) for
    contiguous inputs, ``times_channels_last[threads]`` the same for channels-last inputs;
    ``ratios[threads]`` and ``ratios_channels_last[threads]`` map
    ``shape -> {"gnlib/native": x, "ref/gnlib": x}`` (plus ``"cpp/native"`` with the C++
    kernel), the ratio columns as the file prints them
    (computed from the unrounded medians, so they can differ in the last digit from a ratio of
    the rounded milliseconds); ``sections`` holds the
    text of each ``## title`` section verbatim, ``compiled`` the torch.compile lines as
    ``shape -> {"compile_s": s, "compiled": s, "native": s}`` and ``compiled_ratios`` their
    printed ``compiled/native`` column as ``shape -> x``.
    """

    path: Path
    date: str
    commit: str
    machine: str
    load: float | None
    settings: str
    groups: int | None = None
    note: str = ""
    times: dict[int, dict[tuple[int, ...], dict[str, float]]] = field(default_factory=dict)
    times_channels_last: dict[int, dict[tuple[int, ...], dict[str, float]]] = field(
        default_factory=dict)
    ratios: dict[int, dict[tuple[int, ...], dict[str, float]]] = field(default_factory=dict)
    ratios_channels_last: dict[int, dict[tuple[int, ...], dict[str, float]]] = field(
        default_factory=dict)
    compiled: dict[tuple[int, ...], dict[str, float]] = field(default_factory=dict)
    compiled_ratios: dict[tuple[int, ...], float] = field(default_factory=dict)
    sections: dict[str, str] = field(default_factory=dict)

    @property
    def provenance(self) -> str:
        """Where the numbers come from: file, date, commit, machine and settings."""
        load = f"; load average at start {self.load:.2f}" if self.load is not None else ""
        try:  # relative to the repository when the file is inside it
            name = str(self.path.resolve().relative_to(RESULTS_FILE.parents[1]))
        except ValueError:
            name = str(self.path)
        return (f"{name}: measured {self.date}, git {self.commit}\n"
                f"machine: {self.machine}{load}\n" + (f"note: {self.note}\n" if self.note else "")
                + f"{self.settings}")

    def time_table(self, threads: int = 1, channels_last: bool = False) -> str:
        """The forward+backward table for ``threads`` threads (contiguous or channels-last
        inputs), as the file prints it."""
        title = f"forward + backward, {threads} thread{'s' if threads > 1 else ''}"
        body = self.sections[title + (", channels_last" if channels_last else "")]
        return "\n".join(line for line in body.splitlines()
                         if line.strip() and not line.startswith("  "))

    def section(self, title_start: str) -> str:
        """The verbatim text of the first section whose title starts with ``title_start``."""
        for title, body in self.sections.items():
            if title.startswith(title_start):
                return body
        raise KeyError(f"no section starting with {title_start!r} in {self.path}; "
                       f"sections: {list(self.sections)}")


def _parse_shape(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in re.findall(r"\d+", text))


def load_bench(path: str | Path | None = None) -> BenchResults:
    """Parse the results file written by ``bench/bench_group_norm.py --save`` (default:
    :data:`RESULTS_FILE`). Raises ``ValueError`` if the provenance header is missing."""
    path = Path(path) if path is not None else RESULTS_FILE
    lines = path.read_text().splitlines()
    head = re.match(r"# bench_group_norm\.py\s+(.+?)\s+git\s+(\S+)", lines[0]) if lines else None
    machine = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("# machine:")), None)
    if head is None or machine is None:
        raise ValueError(f"{path}: no provenance header (date, git commit, machine); was it "
                         "written by bench/bench_group_norm.py --save?")
    load_line = next((ln for ln in lines if ln.startswith("# load average")), "")
    load_match = re.search(r":\s*([\d.]+)", load_line)
    settings = next((ln[2:] for ln in lines if re.match(r"# G=\d+", ln)), "")
    note = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("# note:")), "")

    sections: dict[str, list[str]] = {}
    title = None
    for line in lines:
        if line.startswith("## "):
            title = line[3:].strip()
            sections[title] = []
        elif title is not None and line and not line.startswith("saved to "):
            sections[title].append(line)

    times: dict[int, dict[tuple[int, ...], dict[str, float]]] = {}
    times_cl: dict[int, dict[tuple[int, ...], dict[str, float]]] = {}
    ratios: dict[int, dict[tuple[int, ...], dict[str, float]]] = {}
    ratios_cl: dict[int, dict[tuple[int, ...], dict[str, float]]] = {}
    for title, body in sections.items():
        threads = re.fullmatch(r"forward \+ backward, (\d+) threads?(, channels_last)?", title)
        if threads is None:
            continue
        n, cl = int(threads.group(1)), bool(threads.group(2))
        table = (times_cl if cl else times).setdefault(n, {})
        ratio_table = (ratios_cl if cl else ratios).setdefault(n, {})
        columns = _DEFAULT_COLUMNS
        for line in body:
            if line.startswith("shape "):                  # the header names the columns
                columns = tuple(line.split("(ms")[0].split()[1:])
            row = re.match(r"(\([\d,]+\))((?:\s+[\d.]+x?)+)\s*$", line)
            if row:
                shape = _parse_shape(row.group(1))
                cells = dict(zip(columns, row.group(2).split()))
                table[shape] = {k: float(v) / 1e3 for k, v in cells.items() if not v.endswith("x")}
                ratio = {k: float(v[:-1]) for k, v in cells.items() if v.endswith("x")}
                if ratio:
                    ratio_table[shape] = ratio

    compiled: dict[tuple[int, ...], dict[str, float]] = {}
    compiled_ratios: dict[tuple[int, ...], float] = {}
    for title, body in sections.items():
        if not title.startswith("torch.compile"):
            continue
        for line in body:
            row = re.match(r"\s*(\([\d, ]+\))\s+first call \(compile\)\s+([\d.]+) s\s+compiled"
                           r"\s+([\d.]+) ms\s+native\s+([\d.]+) ms"
                           r"(?:\s+compiled/native\s+([\d.]+)x)?", line)
            if row:
                shape = _parse_shape(row.group(1))
                compiled[shape] = {
                    "compile_s": float(row.group(2)), "compiled": float(row.group(3)) / 1e3,
                    "native": float(row.group(4)) / 1e3}
                if row.group(5) is not None:
                    compiled_ratios[shape] = float(row.group(5))

    return BenchResults(
        path=path, date=head.group(1), commit=head.group(2), machine=machine,
        load=float(load_match.group(1)) if load_match else None, settings=settings, note=note,
        groups=int(groups.group(1)) if (groups := re.match(r"G=(\d+)", settings)) else None,
        times=times, times_channels_last=times_cl, ratios=ratios, ratios_channels_last=ratios_cl,
        compiled=compiled, compiled_ratios=compiled_ratios,
        sections={t: "\n".join(body) for t, body in sections.items()})
