"""pytest settings shared by unit tests and notebooks (nbval)."""


def pytest_collectstart(collector):
    # nbval: stderr carries library warnings that differ between machines; stdout and
    # every rich output (text/plain, text/html, LaTeX) are still compared exactly.
    if getattr(collector, "fspath", None) is not None and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr",)
