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
from scripts.supervisor import running_pid
from tests.helpers import REPO, Process, scrubbed_env, wait_for
from tests.integration.test_stack import processes_under
from workers import gearman


def system_env(var: Path) -> dict[str, str]:
    return {
        "SHUTTERLOG_VAR": str(var),
        "SHUTTERLOG_HTTP_PORT": str(free_port()),
        "SHUTTERLOG_STACK_POSTGRES_PORT": str(free_port()),
        "SHUTTERLOG_STACK_REDIS_PORT": str(free_port()),
        "SHUTTERLOG_STACK_GEARMAN_PORT": str(free_port()),
        "SHUTTERLOG_RELAY_METRICS_PORT": str(free_port()),
        "SHUTTERLOG_WORKERS_METRICS_PORT": str(free_port()),
    }


def healthy(port: str) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def answers(port: str) -> bool:
    """True when something serves /metrics on ``port`` (the relay's or the workers')."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def config_file(var: Path, env: dict[str, str]) -> Path:
    """``env``'s settings (``SHUTTERLOG_SECTION_KEY``) as a configuration file in ``var``."""
    sections: dict[str, list[str]] = {}
    for name, value in env.items():
        section, _, key = name.removeprefix("SHUTTERLOG_").lower().partition("_")
        if section != "var":
            sections.setdefault(section, []).append(f"{key} = {value}")
    text = f'var = "{env["SHUTTERLOG_VAR"]}"\n' + "".join(
        f"[{section}]\n" + "\n".join(lines) + "\n" for section, lines in sections.items())
    path = var / "shutterlog.toml"
    path.write_text(text)
    return path


def test_run_then_ctrl_c_stops_every_process() -> None:
    """run with a configuration file brings the system up (/healthz 200 on its port, relay
    and workers running on theirs, the workers connected to gearmand: each child read the
    file); a second run for the same state refuses, leaving the first one's pid file; SIGINT
    stops all of it, leaving no process."""
    var = Path(tempfile.mkdtemp(prefix="shutterlog-run-test-"))
    var.chmod(0o755)  # PostgreSQL (as user postgres when we are root) must enter it
    env = system_env(var / "state")
    cli = [sys.executable, "-m", "scripts.cli", "--config", str(config_file(var, env))]
    proc = Process([*cli, "run"], {}, "run")
    try:
        wait_for(lambda: healthy(env["SHUTTERLOG_HTTP_PORT"]) or not proc.alive(), 120,
                 "the system to answer /healthz")
        assert proc.alive(), proc.output.text()
        second = subprocess.run([*cli, "run"], env=scrubbed_env({}), cwd=REPO,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and "already running" in second.stderr, second.stderr
        assert running_pid(var / "state") == proc.proc.pid
        metrics = [env["SHUTTERLOG_RELAY_METRICS_PORT"], env["SHUTTERLOG_WORKERS_METRICS_PORT"]]
        wait_for(lambda: all(answers(p) for p in metrics), 60, "relay and workers /metrics")
        gearmand = f"127.0.0.1:{env['SHUTTERLOG_STACK_GEARMAN_PORT']}"
        wait_for(lambda: any("advance" in w.functions for w in gearman.workers(gearmand)), 30,
                 "the workers to register with gearmand")
        proc.signal(signal.SIGINT)
        assert proc.wait(60) == 0, proc.output.text()
        assert processes_under(var) == []
        assert not healthy(env["SHUTTERLOG_HTTP_PORT"])
        assert not any(answers(p) for p in metrics)
    finally:
        if proc.alive():  # a failed assertion: stop it as Ctrl-C would, so that its
            proc.signal(signal.SIGINT)  # children and servers go too (SIGKILL orphans them)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
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
