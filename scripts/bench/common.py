"""What every benchmark shares: a private local stack, timing, progress and a result table.

Benchmarks print figures; they are not tests and assert nothing about speed. Each starts its
own stack on free ports in a temporary directory (or uses ``--var DIR`` to keep it), so it
never touches a running system.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from scripts.stack import LocalStack, free_port
from server.config import Config, load
from server.shards import ShardRouter
from server.store.migrate import migrate


def arguments(description: str, *, stack: bool = True) -> argparse.ArgumentParser:
    """The common options (``stack=False``: a benchmark that starts no local stack)."""
    p = argparse.ArgumentParser(description=description)
    if stack:
        p.add_argument("--durable", action="store_true",
                       help="run PostgreSQL crash-safe (fsync on); default: fsync off, so the "
                       "figures show CPU cost rather than the disk's flush rate")
    p.add_argument("--seconds", type=float, default=5.0,
                   help="how long each measured phase runs (default: %(default)s)")
    return p


def progress(message: str) -> None:
    """A progress line on stderr (stdout carries the figures)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class BenchStack:
    stack: LocalStack
    config: Config
    env: dict[str, str]


#: PostgreSQL settings that record every statement's calls and time (``Statements``).
STATEMENTS_PG = {"shared_preload_libraries": "pg_stat_statements",
                 "pg_stat_statements.track": "all"}


@contextlib.contextmanager
def bench_stack(durable: bool = False, databases: int = 2,
                statements: bool = False) -> Iterator[BenchStack]:
    """A migrated local stack on free ports in a temporary directory, removed afterwards (a
    SIGTERM, as from ``timeout`` or ``kill``, unwinds like Ctrl-C, so the stack is stopped
    then too). ``statements``: PostgreSQL loads pg_stat_statements (``Statements``)."""
    signal.signal(signal.SIGTERM, _terminated)
    var = Path(tempfile.mkdtemp(prefix="shutterlog-bench-"))
    stack = LocalStack(var, postgres_port=free_port(), redis_port=free_port(),
                       gearman_port=free_port(), databases=databases, ephemeral=not durable,
                       postgres_settings=STATEMENTS_PG if statements else None, say=progress)
    try:
        stack.up()
        env = stack.env() | {"SHUTTERLOG_SECRETS_KEY": "bench"}
        cfg = load(env=env, search_default=False)
        router = ShardRouter(cfg.shard_map, pool_size=1)
        migrate(router)
        router.close()
        yield BenchStack(stack, cfg, env)
    finally:
        stack.down()
        shutil.rmtree(var, ignore_errors=True)


class Statements:
    """What PostgreSQL ran between ``reset()`` and ``report()``, from pg_stat_statements (the
    stack started with ``statements=True``), over every database of the cluster. With
    ``track = all`` the statements inside functions are counted too."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg2.connect(dsn)
        self.conn.autocommit = True
        with self.conn.cursor() as cur:
            cur.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    def reset(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_stat_statements_reset()")

    def report(self, per: int, unit: str, top: int) -> list[str]:
        """Statements and execution time per ``unit`` (``per`` of them done), then the
        ``top`` statements by total execution time."""
        with self.conn.cursor() as cur:
            cur.execute("SELECT sum(calls), sum(total_exec_time) FROM pg_stat_statements")
            calls, ms = cur.fetchone() or (0, 0.0)
            cur.execute(
                "SELECT calls, total_exec_time, rows, regexp_replace(query, '\\s+', ' ', 'g') "
                "FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT %s", (top,))
            rows = cur.fetchall()
        per = max(1, per)
        lines = [f"PostgreSQL: {int(calls or 0) / per:.1f} statements and "
                 f"{float(ms or 0) / per:.2f} ms of execution per {unit}; "
                 "calls / total ms / mean ms / rows / statement:"]
        lines += [f"{c:>8} {t:>9.1f} {t / max(1, c):>7.3f} {r:>8}  {q[:110]}"
                  for c, t, r, q in rows]
        return lines

    def close(self) -> None:
        self.conn.close()


def _terminated(signum: int, frame: object) -> None:
    """Unwind once: a second SIGTERM (``timeout`` signals the whole process group as well)
    must not cut the stack's shutdown short."""
    signal.signal(signum, signal.SIG_IGN)
    raise SystemExit(f"stopped by signal {signum}")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) so far of process ``pid`` and its descendants (PostgreSQL's
    backends, say), from one pass over ``/proc``."""
    children: dict[int, list[int]] = {}
    used: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        child = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(child)
        used[child] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        total += used.get(p, 0.0)
    return total


@contextlib.contextmanager
def process(argv: list[str], env: dict[str, str], ready_url: str,
            timeout: float = 60) -> Iterator[subprocess.Popen[bytes]]:
    """A server process (output to a temporary log), once ``ready_url`` answers; stopped with
    SIGTERM afterwards."""
    log = tempfile.TemporaryFile()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SHUTTERLOG_")} | env
    proc = subprocess.Popen(argv, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise SystemExit(f"{argv[0]} exited:\n{log.read().decode(errors='replace')}")
            try:
                with urllib.request.urlopen(ready_url, timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise SystemExit(f"{ready_url} did not answer in {timeout:.0f}s") from None
                time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def timed(fn: Callable[[], int]) -> tuple[int, float]:
    """Run ``fn`` (which returns how many things it did); return (count, seconds)."""
    start = time.perf_counter()
    count = fn()
    return count, time.perf_counter() - start


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, " \
           f"Python {platform.python_version()}"


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """Print an aligned table to stdout."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
