"""Every ``>>>`` example in gnlib's docstrings runs, so the examples cannot rot.

The modules are found by their source (any ``.py`` under ``gnlib/`` with a ``>>>``), so an
example added anywhere is tested without touching this file.
"""
from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

GNLIB = Path(__file__).resolve().parents[1] / "gnlib"
#: Modules whose examples document the layers (they must keep having some).
MUST_HAVE_EXAMPLES = {"gnlib.norms.group_norm", "gnlib.norms.per_device_bn",
                      "gnlib.norms.batch_renorm", "gnlib.norms.weight_std", "gnlib.augment"}


def _modules_with_examples() -> list[str]:
    names = []
    for path in sorted(GNLIB.rglob("*.py")):
        if ">>>" in path.read_text(encoding="utf-8"):
            parts = path.relative_to(GNLIB.parent).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_the_documented_layers_have_examples():
    assert MUST_HAVE_EXAMPLES <= set(_modules_with_examples())


@pytest.mark.parametrize("name", _modules_with_examples())
def test_docstring_examples_run(name):
    module = importlib.import_module(name)     # the module, even where a function shadows it
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name}: no example was collected"
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
