"""Test helpers: waiting on conditions with deadlines, and running our processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx
import pytest

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent


def wait_for(
    condition: Callable[[], T], timeout: float = 10.0, message: str = "condition", poll=0.02
) -> T:
    """Poll ``condition`` until it returns something truthy; fail the test at the deadline.

    This waits on a condition, never for a fixed time: it returns as soon as it holds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(poll)


class OutputTail:
    """Collects a child process's output lines in a background thread."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def finish(self, timeout: float = 10.0) -> None:
        """Wait until the stream has ended (its writers exited) and every line is read."""
        self._thread.join(timeout)


def scrubbed_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without any SHUTTERLOG_ setting, plus ``extra``."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SHUTTERLOG_")} | extra


def _terminal_signals() -> None:
    """In the child: SIGINT and SIGQUIT as a terminal's foreground command has them. A test
    suite started as a shell's background job (``make test &``) ignores both, and a child
    inherits that: the Ctrl-C tests would then signal a process that cannot hear them."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


class Process:
    """A process of ours (``twistd -n shutterlog``, ``shutterlog relay``, ...) under test."""

    def __init__(self, argv: list[str], env: dict[str, str], name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            argv, env=scrubbed_env(env), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_terminal_signals,
        )
        assert self.proc.stdout is not None
        self.output = OutputTail(self.proc.stdout)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit (``subprocess.TimeoutExpired`` past ``timeout``), then for the
        rest of its output: the exit can be seen before the reader has the last lines."""
        status = self.proc.wait(timeout)
        self.output.finish()
        return status

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then wait; SIGKILL if it does not exit in time. Returns the exit status."""
        self.signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.name} did not stop on SIGTERM:\n{self.output.text()}"
            ) from None

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        self.signal(signal.SIGKILL)
        self.wait()


def twistd_argv() -> list[str]:
    """``twistd -n shutterlog`` with our JSON/text log observer."""
    return [str(Path(sys.executable).parent / "twistd"), "--logger", "server.logs.observer",
            "--pidfile", "", "-n", "shutterlog"]


class Service(Process):
    """The API service on a free port; ``url(path)`` and ``client`` talk to it."""

    def __init__(self, env: dict[str, str], port: int) -> None:
        super().__init__(twistd_argv(), env | {"SHUTTERLOG_HTTP_PORT": str(port)}, "api")
        self.base = f"http://127.0.0.1:{port}"
        self.client = httpx.Client(base_url=self.base, timeout=10)

    def wait_listening(self, timeout: float = 30.0) -> None:
        def up() -> bool:
            if not self.alive():
                raise AssertionError(f"the service exited:\n{self.output.text()}")
            try:
                self.client.get("/metrics")
                return True
            except httpx.TransportError:
                return False

        wait_for(up, timeout, "the service to listen")

    def stop(self, timeout: float = 20.0) -> int:
        self.client.close()
        return super().stop(timeout)


def after_first_call(monkeypatch: pytest.MonkeyPatch, owner: object, name: str,
                     competitor: Callable[[], object]) -> list[bool]:
    """Replace ``owner.name`` so that ``competitor`` runs once, right after the first call
    returns (a decision's read, then another writer commits before it goes on); the list
    returned holds True once it ran."""
    real, fired = getattr(owner, name), list[bool]()

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        found = real(*args, **kwargs)
        if not fired:
            fired.append(True)
            competitor()
        return found

    monkeypatch.setattr(owner, name, wrapped)
    return fired
