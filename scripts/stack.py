"""The local stack: PostgreSQL, Redis and gearmand of our own, on loopback ports.

Used by ``shutterlog run``/``up``, the test suite and the benchmarks. Every process it starts is
recorded in ``VAR/run/NAME.pid`` with its start time, and ``down`` stops only those: servers
already running on the machine are never touched. PostgreSQL refuses to run as root, so as
root its cluster belongs to, and runs as, the ``postgres`` user (created by Debian's package).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from server.probes import gearman_version, redis_ping

#: Settings for a throwaway cluster (tests, benchmarks): fast, not crash-safe.
EPHEMERAL_PG = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class StackError(RuntimeError):
    """The stack cannot start or stop; the message says why and what to do."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    port: int
    pid: int | None  # None: not running (as far as our pid file says)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def postgres_bindir(configured: str = "") -> Path:
    """The directory holding ``initdb`` and ``postgres``: configured, or the newest installed."""
    if configured:
        return Path(configured)
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("postgres") or shutil.which("initdb")
    if found:
        return Path(found).parent
    raise StackError("PostgreSQL server binaries not found: apt-get install postgresql")


class LocalStack:
    """Start, stop and inspect the local servers under the state directory ``var``."""

    def __init__(
        self,
        var: Path,
        *,
        postgres_port: int,
        redis_port: int,
        gearman_port: int,
        databases: int = 2,
        ephemeral: bool = False,
        postgres_bin: str = "",
        postgres_settings: Mapping[str, str] | None = None,
        say: Callable[[str], None] = lambda msg: None,
    ) -> None:
        self.var = Path(var).absolute()
        self.ports = {"postgres": postgres_port, "redis": redis_port, "gearmand": gearman_port}
        self.databases = databases
        self.ephemeral = ephemeral
        self.postgres_bin = postgres_bin
        self.postgres_settings = dict(postgres_settings or {})
        self.say = say

    # --- public ---------------------------------------------------------------------------

    def up(self, timeout: float = 60.0) -> list[str]:
        """Start whatever is not running yet, wait until each server answers, and return the
        names of the servers this call started (if one fails to start, those it had started
        are stopped before the error goes on)."""
        for d in ("run", "log"):
            (self.var / d).mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        started = [name for name in self.ports if self.pid(name) is None]
        try:
            self._start_postgres(deadline)
            self._start_redis(deadline)
            self._start_gearmand(deadline)
        except BaseException:  # a port taken, a server that never answers: none left behind
            self.down([name for name in started if self.pid(name) is not None])
            raise
        return started

    def down(self, names: list[str] | None = None, timeout: float = 30.0) -> None:
        """Stop the servers this stack started (``names``: only those of them)."""
        stop = {"postgres": signal.SIGINT}  # PostgreSQL's "fast" shutdown
        for name in ("gearmand", "redis", "postgres"):
            if names is not None and name not in names:
                continue
            pid = self.pid(name)
            if pid is None:
                continue
            self.say(f"stopping {name} (pid {pid})")
            terminate(pid, stop.get(name, signal.SIGTERM), timeout)
            (self.var / "run" / f"{name}.pid").unlink(missing_ok=True)

    def status(self) -> list[ServiceStatus]:
        """Each server, its port, and its pid if it is running."""
        return [ServiceStatus(n, p, self.pid(n)) for n, p in self.ports.items()]

    def dsn(self, index: int) -> str:
        """The DSN of the ``index``-th physical database."""
        return f"postgresql://postgres@127.0.0.1:{self.ports['postgres']}/shutterlog_{index}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.ports['redis']}/0"

    @property
    def gearman_server(self) -> str:
        return f"127.0.0.1:{self.ports['gearmand']}"

    def env(self) -> dict[str, str]:
        """Environment variables pointing shutterlog's configuration at this stack."""
        return {
            "SHUTTERLOG_VAR": str(self.var),
            "SHUTTERLOG_STACK_POSTGRES_PORT": str(self.ports["postgres"]),
            "SHUTTERLOG_STACK_REDIS_PORT": str(self.ports["redis"]),
            "SHUTTERLOG_STACK_GEARMAN_PORT": str(self.ports["gearmand"]),
            "SHUTTERLOG_STACK_DATABASES": str(self.databases),
        }

    # --- servers --------------------------------------------------------------------------

    def _start_postgres(self, deadline: float) -> None:
        bindir = postgres_bindir(self.postgres_bin)
        home = self.var / "postgres"
        data = home / "data"
        user = self._postgres_user()
        if self.pid("postgres") is None:
            self._check_port("postgres")
            home.mkdir(parents=True, exist_ok=True)
            if user is not None:
                self._allow_traversal(user)
                os.chown(home, user.pw_uid, user.pw_gid)
            if not (data / "PG_VERSION").exists():
                self.say(f"initdb {data}")
                self._run_as(
                    user,
                    [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                     "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"],
                )
            settings = {
                "listen_addresses": "127.0.0.1",
                "port": str(self.ports["postgres"]),
                "unix_socket_directories": "",
                "max_connections": "300",
                "shared_buffers": "256MB",
                "log_min_messages": "warning",
            }
            if self.ephemeral:
                settings |= EPHEMERAL_PG
            settings |= self.postgres_settings
            args = [str(bindir / "postgres"), "-D", str(data)]
            for k, v in settings.items():
                args += ["-c", f"{k}={v}"]
            self._spawn("postgres", args, user)
        self._wait("postgres", deadline, self._postgres_ready)
        self._create_databases()

    def _start_redis(self, deadline: float) -> None:
        if self.pid("redis") is None:
            self._check_port("redis")
            home = self.var / "redis"
            home.mkdir(parents=True, exist_ok=True)
            args = [
                shutil.which("redis-server") or "redis-server",
                "--port", str(self.ports["redis"]), "--bind", "127.0.0.1",
                "--dir", str(home), "--daemonize", "no", "--save", "",
                "--appendonly", "no" if self.ephemeral else "yes",
                # Counter buckets hold 1,000 fields; above this limit a hash leaves the compact
                # listpack encoding and the saving of bucketing is gone (DESIGN.md).
                "--hash-max-listpack-entries", "1024",
                "--hash-max-listpack-value", "64",
                "--logfile", str(self.var / "log" / "redis.log"),
            ]
            self._spawn("redis", args, None)
        self._wait("redis", deadline, lambda: redis_ping("127.0.0.1", self.ports["redis"]))

    def _start_gearmand(self, deadline: float) -> None:
        if self.pid("gearmand") is None:
            self._check_port("gearmand")
            exe = shutil.which("gearmand") or "/usr/sbin/gearmand"
            if not os.path.exists(exe):
                raise StackError("gearmand not found: apt-get install gearman-job-server")
            args = [
                exe, "--listen", "127.0.0.1", "--port", str(self.ports["gearmand"]),
                "--log-file", str(self.var / "log" / "gearmand.log"), "--verbose", "WARNING",
            ]
            self._spawn("gearmand", args, None)
        self._wait(
            "gearmand", deadline,
            lambda: gearman_version("127.0.0.1", self.ports["gearmand"]) is not None,
        )

    # --- helpers --------------------------------------------------------------------------

    def _postgres_ready(self) -> bool:
        try:
            psycopg2.connect(self._admin_dsn(), connect_timeout=1).close()
            return True
        except psycopg2.OperationalError:
            return False

    def _admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.ports['postgres']}/postgres"

    def _create_databases(self) -> None:
        conn = psycopg2.connect(self._admin_dsn())
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                for i in range(self.databases):
                    name = f"shutterlog_{i}"
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                    if cur.fetchone() is None:
                        self.say(f"creating database {name}")
                        cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()

    def _postgres_user(self) -> pwd.struct_passwd | None:
        """None when we are not root; else the account PostgreSQL runs as."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise StackError(
                "PostgreSQL refuses to run as root and there is no 'postgres' user: "
                "apt-get install postgresql creates one"
            ) from None

    def _allow_traversal(self, user: pwd.struct_passwd) -> None:
        """Let ``user`` reach the cluster: open our own state directory for traversal, and
        check that every directory above it is searchable by others."""
        self.var.chmod(self.var.stat().st_mode | 0o011)
        for parent in self.var.parents:
            st = parent.stat()
            if st.st_uid != user.pw_uid and not st.st_mode & 0o001:
                raise StackError(
                    f"PostgreSQL runs as user {user.pw_name}, who cannot enter {parent} "
                    f"(mode {oct(st.st_mode & 0o777)}); set SHUTTERLOG_VAR to a directory "
                    "outside it, or chmod o+x it"
                )

    def _run_as(self, user: pwd.struct_passwd | None, args: list[str]) -> None:
        done = subprocess.run(
            args, capture_output=True, text=True, check=False,
            user=user.pw_uid if user else None, group=user.pw_gid if user else None,
        )
        if done.returncode != 0:
            raise StackError(f"{args[0]} failed: {done.stderr.strip() or done.stdout.strip()}")

    def _spawn(self, name: str, args: list[str], user: pwd.struct_passwd | None) -> None:
        log = open(self.var / "log" / f"{name}.out", "ab")  # noqa: SIM115 (child keeps it)
        self.say(f"starting {name} on 127.0.0.1:{self.ports[name]}")
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in a terminal reaches our supervisor, not these
            user=user.pw_uid if user else None, group=user.pw_gid if user else None,
            cwd=self.var,
        )
        log.close()
        (self.var / "run" / f"{name}.pid").write_text(f"{proc.pid} {start_time(proc.pid)}\n")

    def pid(self, name: str) -> int | None:
        """The pid of our ``name`` server if it is still the process we started."""
        try:
            pid_text, start = (self.var / "run" / f"{name}.pid").read_text().split()
        except (FileNotFoundError, ValueError):
            return None
        pid = int(pid_text)
        if start_time(pid) != start:  # gone, or the pid was reused by another process
            return None
        return pid

    def _check_port(self, name: str) -> None:
        port = self.ports[name]
        if port_in_use(port):
            raise StackError(
                f"port {port} for {name} is in use by a process this stack did not start; "
                f"set SHUTTERLOG_STACK_{'GEARMAN' if name == 'gearmand' else name.upper()}_PORT"
            )

    def _wait(self, name: str, deadline: float, ready: Callable[[], bool]) -> None:
        while not ready():
            if self.pid(name) is None:
                log = self.var / "log" / f"{name}.out"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise StackError(f"{name} exited while starting; its output:\n{tail}")
            if time.monotonic() > deadline:
                raise StackError(f"{name} did not answer on port {self.ports[name]} in time")
            time.sleep(0.05)


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/PID/stat), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited
        return None
    return fields[19]


def terminate(pid: int, sig: int, timeout: float) -> None:
    """Send ``sig``, wait for the process to exit, SIGKILL it after ``timeout``."""
    start = start_time(pid)
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while start_time(pid) == start:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
        time.sleep(0.05)
    try:  # reap it if it is our child
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
