"""The browser check catches what it should (opt-in: GNLIB_BROWSER_SELFTEST=1, ~1 min).

Tiny notebooks with a planted fault: an exception in a cell, in a slider callback that draws
into an ``Output`` (the traceback shows inside the widget), in a callback outside any
``Output`` (JupyterLab sends it to the log console). Each must make the check fail, with a
message naming the error. A notebook without kernelspec (JupyterLab asks for a kernel first)
must pass.
"""
from __future__ import annotations

import os

import pytest

from test_browser_widgets import DEMO_CELLS, check_slider_redraws

pytestmark = pytest.mark.skipif(
    os.environ.get("GNLIB_BROWSER_SELFTEST") != "1",
    reason="self-test of the browser harness; run with GNLIB_BROWSER_SELFTEST=1")

IMPORTS, WIDGET = DEMO_CELLS
FAULTS = {
    "cell-error": ([IMPORTS, "1 / 0", WIDGET], "ZeroDivisionError"),
    "callback-error-in-output": (
        [IMPORTS, WIDGET.replace("ax.plot(", "assert slider.value == 2, 'planted'\n        ax.plot(")],
        "planted"),
    "callback-error-to-log-console": (
        [IMPORTS, WIDGET + "\ndef bad(change):\n    raise ValueError('planted')\n"
                           "slider.observe(bad, names='value')"],
        "a widget callback failed"),
}


def write_notebook(path, cells, kernelspec=True):
    import nbformat
    nb = nbformat.v4.new_notebook()
    if kernelspec:
        nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)",
                                     "language": "python", "name": "python3"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nbformat.write(nb, str(path))


@pytest.mark.parametrize("fault", list(FAULTS))
def test_planted_fault_is_caught(fault, lab, browser):
    cells, expected = FAULTS[fault]
    rel = f"notebooks/selftest_{fault}.ipynb"
    write_notebook(lab.root / rel, cells)
    with pytest.raises((AssertionError, pytest.fail.Exception)) as caught:
        check_slider_redraws(browser, lab, rel, r"^\s*G\b", f"selftest-{fault}")
    assert expected in str(caught.value)


def test_notebook_without_kernelspec_opens(lab, browser):
    rel = "notebooks/selftest_no_kernelspec.ipynb"
    write_notebook(lab.root / rel, DEMO_CELLS, kernelspec=False)
    check_slider_redraws(browser, lab, rel, r"^\s*G\b", "selftest-no-kernelspec")
