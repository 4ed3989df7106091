"""A gearmand of a test's own, to stop and start under running relays and workers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from server.probes import gearman_version
from tests.helpers import wait_for


class Gearmand:
    """gearmand on 127.0.0.1:``port``; ``stop`` and ``start`` it at will."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        exe = shutil.which("gearmand") or "/usr/sbin/gearmand"
        self.proc = subprocess.Popen(
            [exe, "--listen", "127.0.0.1", "--port", str(self.port),
             "--log-file", str(self.workdir / "gearmand.log"), "--verbose", "WARNING"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        wait_for(lambda: gearman_version("127.0.0.1", self.port) is not None, 20,
                 f"gearmand on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        self.proc = None
