"""The local stack starts, answers, stops cleanly, leaves nothing behind, touches nothing else."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

import psycopg2
import pytest

from scripts.stack import LocalStack, StackError, free_port, start_time
from server.probes import gearman_version, redis_ping


def processes_under(var: Path) -> list[int]:
    """Pids whose command line or working directory mentions ``var``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if str(var) in cmdline or cwd.startswith(str(var)):
            found.append(int(entry.name))
    return found


def test_up_down_leaves_nothing_behind(stack: LocalStack) -> None:
    """A second stack comes up beside the session's, answers, and goes away entirely."""
    var = Path(tempfile.mkdtemp(prefix="shutterlog-stack-test-"))
    s = LocalStack(var, postgres_port=free_port(), redis_port=free_port(),
                   gearman_port=free_port(), databases=2, ephemeral=True)
    try:
        assert s.up() == ["postgres", "redis", "gearmand"]
        assert all(row.pid for row in s.status())
        for i in range(2):
            psycopg2.connect(s.dsn(i)).close()
        assert redis_ping("127.0.0.1", s.ports["redis"])
        assert gearman_version("127.0.0.1", s.ports["gearmand"])
        assert s.up() == []  # already running: starts nothing
        if os.geteuid() == 0:  # PostgreSQL refuses root: the cluster belongs to postgres
            assert (var / "postgres" / "data").stat().st_uid != 0
        s.down()
        assert [row.pid for row in s.status()] == [None, None, None]
        assert processes_under(var) == []
        for port in s.ports.values():
            with socket.socket() as sock:
                assert sock.connect_ex(("127.0.0.1", port)) != 0
        # The session's stack was never touched.
        assert all(row.pid for row in stack.status())
        assert redis_ping("127.0.0.1", stack.ports["redis"])
    finally:
        s.down()
        shutil.rmtree(var, ignore_errors=True)


def test_port_taken_by_a_stranger_is_refused() -> None:
    """A port in use by something we did not start is an error naming the setting to change."""
    var = Path(tempfile.mkdtemp(prefix="shutterlog-stack-test-"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        s = LocalStack(var, postgres_port=port, redis_port=free_port(),
                       gearman_port=free_port(), ephemeral=True)
        try:
            with pytest.raises(StackError, match="SHUTTERLOG_STACK_POSTGRES_PORT"):
                s.up()
        finally:
            s.down()
            shutil.rmtree(var, ignore_errors=True)


def test_a_start_failing_half_way_stops_what_it_started() -> None:
    """gearmand's port is taken by a stranger: PostgreSQL and Redis were started first, and
    the failed start stops them again (a failed ``shutterlog run`` leaves no server)."""
    var = Path(tempfile.mkdtemp(prefix="shutterlog-stack-test-"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        s = LocalStack(var, postgres_port=free_port(), redis_port=free_port(),
                       gearman_port=busy.getsockname()[1], ephemeral=True)
        try:
            with pytest.raises(StackError, match="SHUTTERLOG_STACK_GEARMAN_PORT"):
                s.up()
            assert processes_under(var) == []
        finally:
            s.down()
            shutil.rmtree(var, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the cluster to 'postgres'")
def test_state_dir_postgres_cannot_reach_is_explained(tmp_path: Path) -> None:
    """As root, a state directory under a 0700 parent is refused with what to do about it."""
    tmp_path.chmod(0o700)
    s = LocalStack(tmp_path / "var", postgres_port=free_port(), redis_port=free_port(),
                   gearman_port=free_port(), ephemeral=True)
    (tmp_path / "var").mkdir()
    with pytest.raises(StackError, match=r"cannot enter .* set SHUTTERLOG_VAR"):
        s.up()


def test_stale_pid_file_is_not_trusted(tmp_path: Path) -> None:
    """A pid file naming a process that is not the one we started (pid reused) is ignored."""
    s = LocalStack(tmp_path, postgres_port=free_port(), redis_port=free_port(),
                   gearman_port=free_port())
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "redis.pid").write_text(f"{os.getpid()} 1\n")  # wrong start time
    assert start_time(os.getpid()) != "1"
    assert {row.name: row.pid for row in s.status()}["redis"] is None
    s.down()  # must not signal this test process
