"""The JupyterLab fixture itself: private dirs, environment reaches the kernel, clean shutdown."""
from __future__ import annotations

import os
import time
from pathlib import Path

import psutil

from browser_harness import _pgid_members, make_workspace, start_lab, stop_lab


def test_lab_server_passes_env_and_shuts_down_cleanly(tmp_path, monkeypatch):
    monkeypatch.setenv("GNLIB_QUICK", "1")
    monkeypatch.setenv("GNLIB_BROWSER_PROBE", "reaches-the-kernel")
    root, home = tmp_path / "root", tmp_path / "home"
    make_workspace(root, {})
    server = start_lab(root, home)
    try:
        assert server.url.startswith("http://127.0.0.1:") and len(server.token) >= 32
        status = server.api("GET", "api/status")
        assert "started" in status
        # the private dirs are the ones in use, not the user's
        env = psutil.Process(server.proc.pid).environ()
        for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR",
                    "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR", "IPYTHONDIR"):
            assert Path(env[var]).is_relative_to(home), var
        assert list(Path(env["JUPYTER_RUNTIME_DIR"]).glob("jpserver-*.json")), \
            "the server does not use the private runtime dir"

        kernel = server.api("POST", "api/kernels", {"name": "python3"}, timeout=120)
        deadline = time.monotonic() + 120
        while not (pids := server.kernel_pids()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(pids) == 1, f"expected one kernel process, got {pids}"
        kernel_proc = psutil.Process(pids[0])
        kenv = kernel_proc.environ()
        assert kenv.get("GNLIB_QUICK") == "1"
        assert kenv.get("GNLIB_BROWSER_PROBE") == "reaches-the-kernel"
        assert kernel["id"] in {k["id"] for k in server.api("GET", "api/kernels")}
    finally:
        problems = stop_lab(server)
    assert problems == [], problems
    assert server.proc.returncode is not None
    assert not kernel_proc.is_running() or kernel_proc.status() == psutil.STATUS_ZOMBIE
    assert _pgid_members(server.proc.pid) == []
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                   for p in server.seen if p.pid != os.getpid())
