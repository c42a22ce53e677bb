"""The dependency rules of DESIGN.md, checked on the source (ast), and shown to catch a plant.

Arrows that must never appear (module -> what it imports, directly or, for training code,
through any chain):

* ``gnlib.norms.*`` -> anything of gnlib but ``gnlib.norms`` and ``gnlib.config``;
* ``gnlib.plots.*`` -> training code (train, experiments, models, diagnostics, data,
  distributed, figures, widgets, live): plots draw from records and arrays passed in;
* ``gnlib.widgets`` -> ``gnlib.train`` (widgets wire controls to plots and computations);
* ``gnlib.train`` -> ``gnlib.plots`` (directly or through any chain);
* ``gnlib.results``, ``gnlib.analysis``, ``gnlib.paper`` -> torch, or gnlib modules outside
  that layer (the pure results layer: no torch, no training code).

Also: ``import gnlib.widgets`` does not import seaborn.
"""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "gnlib"
TRAINING = ("gnlib.train", "gnlib.experiments", "gnlib.models", "gnlib.diagnostics", "gnlib.data",
            "gnlib.distributed", "gnlib.dist_", "gnlib.figures", "gnlib.widgets", "gnlib.live")
RESULTS_LAYER = ("gnlib.results", "gnlib.analysis", "gnlib.paper")


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path) -> set[str]:
    """Absolute names of everything ``path`` imports (relative imports resolved)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}     # "from . import x" imports x
    return out


def graph(root: Path) -> dict[str, set[str]]:
    return {module_name(p, root): imports_of(p, root) for p in root.rglob("*.py")}


def _hits(names: set[str], prefixes: tuple[str, ...]) -> set[str]:
    return {n for n in names if any(n == p or n.startswith(p if p.endswith("_") else p + ".")
                                    or (p.endswith("_") and n.startswith(p)) for p in prefixes)}


def _closure(g: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        for dep in g.get(m, ()):
            for known in g:
                if (dep == known or dep.startswith(known + ".")) and known not in seen:
                    seen.add(known)
                    todo.append(known)
    return seen


def violations(root: Path = PKG) -> list[str]:
    """Every never-arrow in the package at ``root``, as readable lines."""
    g, out = graph(root), []
    for mod, deps in sorted(g.items()):
        own = {d for d in deps if d == "gnlib" or d.startswith("gnlib.")}
        if mod.startswith("gnlib.norms"):
            bad = {d for d in own if not d.startswith(("gnlib.norms", "gnlib.config"))}
            out += [f"{mod} -> {d} (norms import nothing of gnlib but config)" for d in sorted(bad)]
        if mod.startswith("gnlib.plots"):
            out += [f"{mod} -> {d} (plots never reach training code)"
                    for d in sorted(_hits(own, TRAINING))]
        if mod.startswith("gnlib.widgets"):
            out += [f"{mod} -> {d} (widgets never import train)"
                    for d in sorted(_hits(own, ("gnlib.train",)))]
        if mod.startswith(RESULTS_LAYER):
            bad = {d for d in deps if d == "torch" or d.startswith("torch.")}
            bad |= {d for d in own if not d.startswith(RESULTS_LAYER)}
            out += [f"{mod} -> {d} (the results layer is pure)" for d in sorted(bad)]
    out += [f"gnlib.train -> ... -> {m} (training never reaches plots)"
            for m in sorted(_closure(g, "gnlib.train")) if m.startswith("gnlib.plots")]
    return out


def test_no_never_arrows():
    assert violations() == []


@pytest.mark.parametrize("module, line", [
    ("norms/group_norm.py", "from ..train import TrainConfig"),
    ("plots/results.py", "from ..experiments import grid"),
    ("widgets/theory.py", "from ..train import train"),
    ("analysis/stats.py", "import torch"),
    ("diagnostics.py", "from .plots import style"),          # train -> diagnostics -> plots
])
def test_a_planted_violation_is_caught(tmp_path, module, line):
    root = tmp_path / "gnlib"
    shutil.copytree(PKG, root, ignore=shutil.ignore_patterns("__pycache__"))
    target = root / module
    target.write_text(line + "\n" + target.read_text())
    assert any(line.split()[1].lstrip(".").split(".")[0] in v or "torch" in v
               for v in violations(root)), violations(root)


def test_widgets_do_not_import_seaborn():
    code = "import sys, gnlib.widgets; print('seaborn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
