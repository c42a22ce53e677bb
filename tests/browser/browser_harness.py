"""Helpers of the browser tests (imported by conftest.py and the tests; no fixtures here).

A JupyterLab server from this venv (:func:`start_lab` / :func:`stop_lab`), the scratch
workspace it serves (:func:`make_workspace`), where the browser binaries are, CI detection.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ARTIFACTS = REPO / "test-artifacts" / "browser"

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/lib/chromium/chromium")
CHROMEDRIVER_CANDIDATES = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1400,1300", "--hide-scrollbars",
)
SERVER_START_TIMEOUT = 180  # s; the machine is shared with training jobs
# Entries of the repo not mirrored into the server's workspace.
NOT_MIRRORED = {".git", ".venv", "notebooks", "test-artifacts", ".pytest_cache", "__pycache__"}

# JupyterLab user settings for the run: no network (news, update check), no toasts over
# the page, no autosave, every cell rendered (no windowing, so widgets below the fold exist).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def first_executable(candidates, env_name):
    """``$env_name`` if set (None if that is not an executable file), else the first
    executable file of ``candidates`` (or None)."""
    explicit = os.environ.get(env_name)
    for path in [explicit] if explicit else candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


# ---- JupyterLab server -----------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list:
    import psutil
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def alive(procs) -> list:
    import psutil
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            pass
    return out


def _pgid_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    import psutil
    found = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass
    return found


@dataclass
class LabServer:
    """A running JupyterLab: ``url`` (ends with /), ``token``, ``root`` (its workspace)."""
    proc: subprocess.Popen
    url: str
    token: str
    root: Path
    home: Path
    log_path: Path
    seen: list = field(default_factory=list)  # every child process ever observed

    def api(self, method: str, path: str, body=None, timeout: float = 30):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path.lstrip("/"), data=data, method=method,
            headers={"Authorization": f"token {self.token}",
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def remember_children(self) -> list:
        """Record the server's current descendants (kernels) for the teardown check."""
        kids = descendants(self.proc.pid)
        known = {p.pid for p in self.seen}
        self.seen.extend(p for p in kids if p.pid not in known)
        return kids

    def kernel_pids(self) -> list[int]:
        return [p.pid for p in self.remember_children()
                if "ipykernel" in " ".join(_safe_cmdline(p))]

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no server log)"

    def lab_url(self, notebook_path: str) -> str:
        return f"{self.url}lab/tree/{notebook_path}?reset&token={self.token}"

    def shutdown_kernels(self) -> None:
        """Delete all sessions and kernels (between tests: one kernel at a time on 2 cores)."""
        self.remember_children()
        for s in self.api("GET", "api/sessions"):
            try:
                self.api("DELETE", f"api/sessions/{s['id']}", timeout=60)
            except (urllib.error.URLError, OSError):
                pass
        for k in self.api("GET", "api/kernels"):
            try:
                self.api("DELETE", f"api/kernels/{k['id']}", timeout=60)
            except (urllib.error.URLError, OSError):
                pass


def _safe_cmdline(p) -> list[str]:
    try:
        return p.cmdline()
    except Exception:
        return []


def make_workspace(root: Path, notebooks: dict[str, Path]) -> None:
    """Mirror the repo into ``root`` with symlinks; ``notebooks/`` is a real directory whose
    other files are symlinks too but holds no notebook except those under test (``notebooks``
    maps a name to the source file), which are copies."""
    root.mkdir(parents=True, exist_ok=True)
    for entry in REPO.iterdir():
        if entry.name not in NOT_MIRRORED:
            (root / entry.name).symlink_to(entry)
    nb_dir = root / "notebooks"
    nb_dir.mkdir()
    src_dir = REPO / "notebooks"
    if src_dir.is_dir():
        for entry in src_dir.iterdir():
            if entry.suffix != ".ipynb" and entry.name != ".ipynb_checkpoints":
                (nb_dir / entry.name).symlink_to(entry)
    for name, src in notebooks.items():
        copy_notebook(src, root / "notebooks" / name)


def copy_notebook(src: Path, dest: Path) -> None:
    """A real copy (never through a symlink into the repo)."""
    if dest.is_symlink() or dest.exists():
        dest.unlink()
    shutil.copyfile(src, dest)


def lab_environment(home: Path) -> dict[str, str]:
    """The caller's environment (GNLIB_QUICK etc. reach the kernel) with private Jupyter dirs."""
    env = dict(os.environ)
    for var in ("JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "JUPYTER_TOKEN", "JUPYTER_PREFER_ENV_PATH"):
        env.pop(var, None)
    dirs = {
        "JUPYTER_CONFIG_DIR": home / "config",
        "JUPYTER_DATA_DIR": home / "data",
        "JUPYTER_RUNTIME_DIR": home / "runtime",
        "JUPYTERLAB_SETTINGS_DIR": home / "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": home / "lab-workspaces",
        "IPYTHONDIR": home / "ipython",
    }
    for var, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        env[var] = str(path)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    for rel, value in LAB_SETTINGS.items():
        path = dirs["JUPYTERLAB_SETTINGS_DIR"] / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value, indent=2))
    # No network from the server: no news feed, no update check, no PyPI extension manager.
    (dirs["JUPYTER_CONFIG_DIR"] / "jupyter_server_config.json").write_text(json.dumps({
        "LabApp": {"news_url": None, "extension_manager": "readonly",
                   "check_for_updates_class": "jupyterlab.NeverCheckForUpdate"},
    }, indent=2))
    return env


def start_lab(root: Path, home: Path, timeout: float = SERVER_START_TIMEOUT) -> LabServer:
    """Start JupyterLab on ``root`` and wait until ``/api/status`` answers."""
    env = lab_environment(home)
    log_path = home / "jupyterlab.log"
    last_error = None
    for _attempt in range(3):  # a free port can be taken between probe and bind
        port, token = free_port(), secrets.token_hex(24)
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}", "--ServerApp.open_browser=False",
               # read-only access to the app from the test (kernel status, cell outputs)
               "--LabApp.expose_app_in_browser=True"]
        if hasattr(os, "getuid") and os.getuid() == 0:
            cmd.append("--allow-root")
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        server = LabServer(proc, f"http://127.0.0.1:{port}/", token, root, home, log_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                last_error = f"JupyterLab exited with code {proc.returncode}"
                break
            try:
                status = server.api("GET", "api/status", timeout=5)
                if isinstance(status, dict):
                    return server
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last_error = repr(exc)
            time.sleep(0.5)
        else:
            last_error = f"/api/status did not answer within {timeout:.0f} s ({last_error})"
        stop_lab(server)
        if "Address already in use" not in server.log_tail():
            break
    raise RuntimeError(f"JupyterLab did not start: {last_error}\n--- server log ---\n"
                       f"{server.log_tail()}")


def stop_lab(server: LabServer, timeout: float = 60) -> list[str]:
    """Shut the server down cleanly, then make sure; returns descriptions of processes that
    had to be killed or survived (empty when the shutdown was clean)."""
    import psutil
    proc = server.proc
    server.remember_children()
    problems: list[str] = []
    if proc.poll() is None:
        try:
            server.api("POST", "api/shutdown", timeout=10)
        except (urllib.error.URLError, OSError, ValueError):
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            problems.append(f"server {proc.pid} ignored /api/shutdown; terminated")
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                problems.append(f"server {proc.pid} ignored SIGTERM; killed")
    # Whatever is still in the server's process group: report and kill it.
    deadline = time.monotonic() + 10
    while (members := _pgid_members(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.5)
    if members or proc.poll() is None:
        problems.extend(f"process {pid} of the server's process group killed" for pid in members)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=20)
    # Kernels get SIGTERM/shutdown requests from the server: give them a moment to exit.
    _gone, leftovers = psutil.wait_procs(alive(server.seen), timeout=20)
    leftovers = alive(leftovers)
    for p in leftovers:
        problems.append(f"left over after shutdown, killed: {p.pid} {' '.join(_safe_cmdline(p))}")
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(leftovers, timeout=10)
    for pid in _pgid_members(proc.pid):
        problems.append(f"process {pid} of the server's process group survived")
    return problems
