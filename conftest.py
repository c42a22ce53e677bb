"""pytest settings shared by unit tests and notebooks (nbval)."""
import os


def pytest_configure(config):
    # The outputs saved in the notebooks are quick-mode outputs, so nbval always compares
    # against a quick-mode run (GNLIB_QUICK=1 shrinks sizes, never code paths). The kernel
    # that nbval starts inherits this environment.
    if getattr(config.option, "nbval", False) or getattr(config.option, "nbval_lax", False):
        os.environ.setdefault("GNLIB_QUICK", "1")


def pytest_collectstart(collector):
    # nbval: stderr carries library warnings that differ between machines; stdout and
    # every rich output (text/plain, text/html, LaTeX) are still compared exactly.
    if getattr(collector, "fspath", None) is not None and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr",)
