"""The whole system in one process tree: ``shutterlog run`` (foreground), ``up`` and ``down``.

``run`` starts the local stack, migrates, then starts the API service, the log relay and the
worker pool as child processes, and waits. Ctrl-C (SIGINT) or SIGTERM stops the children, then
the stack servers this run started. A child that exits on its own stops everything, so a
broken system never looks half-alive. ``up`` runs ``run`` in the background and returns once
``/healthz`` answers 200; ``down`` stops it and whatever stack servers are left.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from scripts.stack import LocalStack, start_time, terminate
from server.config import Config

#: Seconds a child gets to stop after SIGTERM before SIGKILL.
STOP_TIMEOUT = 20.0


@dataclass(frozen=True)
class Child:
    name: str
    argv: list[str]


def children(cfg: Config) -> list[Child]:
    """The processes of the system, each a command line."""
    bindir = Path(sys.executable).parent
    twistd = str(bindir / "twistd") if (bindir / "twistd").exists() else shutil.which("twistd")
    if twistd is None:
        raise RuntimeError("twistd not found: install the project (pip install -e .)")
    cli = [sys.executable, "-m", "scripts.cli"]
    return [
        Child("api", [twistd, "--logger", "server.logs.observer",
                      "--pidfile", str(cfg.var / "run" / "twistd.pid"), "-n", "shutterlog"]),
        Child("relay", [*cli, "relay"]),
        Child("workers", [*cli, "workers"]),
    ]


class Supervisor:
    """Runs the children until told to stop or until one of them exits. ``config_file`` (the
    ``--config`` given) reaches every child as ``SHUTTERLOG_CONFIG``, so all of them read
    the configuration this run read."""

    def __init__(self, cfg: Config, stack: LocalStack, say: Callable[[str], None],
                 config_file: str | None = None) -> None:
        self.cfg = cfg
        self.stack = stack
        self.say = say
        self.env = os.environ | (
            {"SHUTTERLOG_CONFIG": str(Path(config_file).absolute())} if config_file else {})
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._stopping = False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def run(self) -> int:
        from server.shards import ShardRouter
        from server.store.migrate import migrate

        other = running_pid(self.cfg.var)
        if other is not None:
            self.say(f"already running (pid {other}) for {self.cfg.var}: 'shutterlog down' "
                     "stops it")
            return 1
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        pidfile = self.cfg.var / "run" / "shutterlog.pid"
        mine = f"{os.getpid()} {start_time(os.getpid())}\n"
        started = self.stack.up(timeout=180)  # on failure, it stops what it started
        pidfile.write_text(mine)
        code = 0
        try:
            router = ShardRouter(self.cfg.shard_map, pool_size=1, name="shutterlog-migrate")
            try:
                migrate(router, say=self.say)
            finally:
                router.close()
            for child in children(self.cfg):
                if self._stopping:
                    break
                self.say(f"starting {child.name}")
                self.procs[child.name] = subprocess.Popen(child.argv, env=self.env,
                                                          start_new_session=True)
            self.say(
                f"shutterlog is up on {self.cfg.http.public_url} (Ctrl-C stops everything)"
            )
            while not self._stopping:
                for name, proc in self.procs.items():
                    if proc.poll() is not None:
                        self.say(f"{name} exited with status {proc.returncode}; stopping")
                        self._stopping = True
                        code = 1
                time.sleep(0.2)
        finally:
            self._stop_children()
            if started:
                self.say(f"stopping {', '.join(started)}")
                self.stack.down(started)
            if pidfile.exists() and pidfile.read_text() == mine:
                pidfile.unlink()
        return code

    def _stop_children(self) -> None:
        for name, proc in reversed(list(self.procs.items())):
            if proc.poll() is None:
                self.say(f"stopping {name}")
                terminate(proc.pid, signal.SIGTERM, STOP_TIMEOUT)
            proc.wait()


def running_pid(var: Path) -> int | None:
    """The pid of a ``shutterlog run`` in the background for this state directory, if any."""
    try:
        pid_text, start = (var / "run" / "shutterlog.pid").read_text().split()
    except (FileNotFoundError, ValueError):
        return None
    return int(pid_text) if start_time(int(pid_text)) == start else None


def healthy(cfg: Config) -> bool:
    """True when the API's ``/healthz`` answers 200."""
    host = cfg.http.host if cfg.http.host not in ("0.0.0.0", "::") else "127.0.0.1"
    url = f"http://{host}:{cfg.http.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False
