"""Fixtures for the real-browser tests: a JupyterLab server from this venv and headless Chromium.

* ``lab_server`` (session): ``python -m jupyterlab`` on a free 127.0.0.1 port with a random
  token, private JUPYTER config/data/runtime/settings/workspace dirs (the user's settings do
  not leak in), the caller's environment passed on to the kernel (``GNLIB_QUICK``). Its
  root is a scratch workspace that mirrors the repository (symlinks) where the notebook under
  test is a *copy*, so nothing the browser does (run, autosave) touches the repo's notebooks.
  Teardown: ``POST /api/shutdown``, then terminate / kill the process group and any kernel
  left over, and assert that no process of it survives.
* ``browser`` (function): Chromium via Debian's ``/usr/bin/chromedriver`` (never Selenium
  Manager), headless, fresh profile, browser console log captured.
* ``browser_binaries``: the Chromium and chromedriver paths. Missing: **fail** when ``CI`` is
  true (the tests must not be skipped silently there), skip locally with the reason.

Every test under tests/browser/ gets the ``browser`` marker: ``pytest -m "not browser"``.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from browser_harness import (
    ARTIFACTS, CHROMEDRIVER_CANDIDATES, CHROMIUM_CANDIDATES, CHROMIUM_FLAGS, HERE, alive, descendants,
    first_executable, in_ci, make_workspace, start_lab, stop_lab,
)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "browser: real-browser test (JupyterLab + headless Chromium); "
        "deselect with -m 'not browser'")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.browser)


@dataclass(frozen=True)
class BrowserBinaries:
    chromium: str
    chromedriver: str


@pytest.fixture(scope="session")
def browser_binaries() -> BrowserBinaries:
    chromium = first_executable(CHROMIUM_CANDIDATES, "GNLIB_CHROMIUM")
    driver = first_executable(CHROMEDRIVER_CANDIDATES, "GNLIB_CHROMEDRIVER")
    missing = [name for name, path in (("chromium", chromium), ("chromium-driver", driver))
               if path is None]
    if missing:
        looked = [os.environ.get(var) or ", ".join(paths) for var, paths in
                  (("GNLIB_CHROMIUM", CHROMIUM_CANDIDATES),
                   ("GNLIB_CHROMEDRIVER", CHROMEDRIVER_CANDIDATES))]
        msg = (f"browser test needs Debian's {' and '.join(missing)} "
               f"(apt-get install chromium chromium-driver; looked at {'; '.join(looked)})")
        if in_ci():
            pytest.fail(f"CI=true but {msg}", pytrace=False)
        pytest.skip(msg)
    try:
        import selenium  # noqa: F401
    except ImportError:
        msg = "browser test needs selenium (pip install -e '.[dev]')"
        if in_ci():
            pytest.fail(f"CI=true but {msg}", pytrace=False)
        pytest.skip(msg)
    return BrowserBinaries(chromium, driver)


@pytest.fixture(scope="session")
def lab_workspace(tmp_path_factory) -> Path:
    """The (empty) root of the session's JupyterLab: tests copy their notebooks here."""
    root = tmp_path_factory.mktemp("lab-root")
    make_workspace(root, {})
    return root


@pytest.fixture(scope="session")
def lab_server(browser_binaries, lab_workspace):
    home = Path(tempfile.mkdtemp(prefix="gnlib-jupyter-"))
    server = start_lab(lab_workspace, home)
    yield server
    problems = stop_lab(server)
    shutil.rmtree(home, ignore_errors=True)
    assert not problems, "JupyterLab did not shut down cleanly:\n" + "\n".join(problems)


@pytest.fixture
def lab(lab_server):
    """The session's JupyterLab; every kernel it started is shut down after the test (one
    kernel at a time on a 2-core machine), and none may survive."""
    yield lab_server
    lab_server.shutdown_kernels()
    assert not lab_server.kernel_pids(), "a kernel survived its session's deletion"


# ---- the browser -----------------------------------------------------------------------
@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)  # lets fixtures see a failed test
    return report


def safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def save_failure_artifacts(driver, name: str) -> None:
    """Screenshot and browser console of a failed test, next to the other screenshots."""
    safe = safe_name(name)
    try:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / f"FAILED-{safe}.png"))
        (ARTIFACTS / f"FAILED-{safe}-console.log").write_text(
            "\n".join(f"{e.get('level')} {e.get('message')}" for e in driver.get_log("browser")))
    except Exception as exc:  # the browser may be the thing that broke
        print(f"could not save failure artifacts: {exc!r}")


@pytest.fixture
def browser(browser_binaries, tmp_path, monkeypatch, request):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download
    for stale in ARTIFACTS.glob(f"FAILED-{safe_name(request.node.name)}*"):
        stale.unlink()
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    opts = Options()
    opts.binary_location = browser_binaries.chromium
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(browser_binaries.chromedriver,
                      log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=opts)
    driver.set_page_load_timeout(180)
    driver.set_script_timeout(120)
    driver_pid = service.process.pid
    chromium_procs = descendants(driver_pid)
    try:
        yield driver
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            save_failure_artifacts(driver, request.node.name)
    finally:
        chromium_procs += [p for p in descendants(driver_pid)
                           if p.pid not in {c.pid for c in chromium_procs}]
        try:
            driver.quit()
        finally:
            import psutil
            # Chromium's helper processes need a moment to exit after quit(); then judge.
            _gone, stray = psutil.wait_procs(alive(chromium_procs), timeout=20)
            stray = alive(stray)
            for p in stray:
                try:
                    p.kill()
                except psutil.Error:
                    pass
            psutil.wait_procs(stray, timeout=10)
        assert not stray, f"Chromium processes survived driver.quit(): {[p.pid for p in stray]}"
