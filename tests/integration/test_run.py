"""``shutterlog run`` (Ctrl-C stops everything it started) and ``up``/``down``."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from scripts.stack import free_port
from tests.helpers import REPO, Process, scrubbed_env, wait_for
from tests.integration.test_stack import processes_under


def system_env(var: Path) -> dict[str, str]:
    return {
        "SHUTTERLOG_VAR": str(var),
        "SHUTTERLOG_HTTP_PORT": str(free_port()),
        "SHUTTERLOG_STACK_POSTGRES_PORT": str(free_port()),
        "SHUTTERLOG_STACK_REDIS_PORT": str(free_port()),
        "SHUTTERLOG_STACK_GEARMAN_PORT": str(free_port()),
    }


def healthy(port: str) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_run_then_ctrl_c_stops_every_process() -> None:
    """run brings the system up (/healthz 200); SIGINT stops all of it, leaving no process."""
    var = Path(tempfile.mkdtemp(prefix="shutterlog-run-test-"))
    env = system_env(var)
    proc = Process([sys.executable, "-m", "scripts.cli", "run"], env, "run")
    try:
        wait_for(lambda: healthy(env["SHUTTERLOG_HTTP_PORT"]) or not proc.alive(), 120,
                 "the system to answer /healthz")
        assert proc.alive(), proc.output.text()
        proc.signal(signal.SIGINT)
        assert proc.proc.wait(60) == 0, proc.output.text()
        assert processes_under(var) == []
        assert not healthy(env["SHUTTERLOG_HTTP_PORT"])
    finally:
        if proc.alive():
            proc.kill()
        shutil.rmtree(var, ignore_errors=True)


def test_up_returns_healthy_and_down_stops_everything() -> None:
    """up returns once /healthz is 200 and leaves the system running; down stops all of it."""
    var = Path(tempfile.mkdtemp(prefix="shutterlog-up-test-"))
    cmd_env = scrubbed_env(system_env(var))
    try:
        up = subprocess.run([sys.executable, "-m", "scripts.cli", "up"], env=cmd_env, cwd=REPO,
                            capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stderr
        assert healthy(cmd_env["SHUTTERLOG_HTTP_PORT"])
        down = subprocess.run([sys.executable, "-m", "scripts.cli", "down"], env=cmd_env,
                              cwd=REPO, capture_output=True, text=True, timeout=300)
        assert down.returncode == 0, down.stderr
        assert processes_under(var) == []
    finally:
        subprocess.run([sys.executable, "-m", "scripts.cli", "down"], env=cmd_env, cwd=REPO,
                       capture_output=True, timeout=300)
        shutil.rmtree(var, ignore_errors=True)
