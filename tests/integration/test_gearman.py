"""Our Gearman client against the real gearmand: errors, coalescing, failover, admin, workers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from scripts.stack import free_port
from server.probes import gearman_version
from tests.helpers import wait_for
from tests.integration.conftest import Env
from tests.integration.gearmand import Gearmand
from workers import gearman
from workers.gearman import (
    GearmanClient,
    GearmanError,
    GearmanServerError,
    P,
    Submit,
    WorkerConnection,
    encode,
)
from workers.status import _gearmand


def test_unique_key_over_64_bytes_is_an_error_not_a_hang(env: Env) -> None:
    """gearmand's ERROR answer to a submit raises GearmanServerError at once; the client's own
    check refuses the same key before sending it, and the connection stays usable."""
    client = GearmanClient(env.config.gearman.servers)
    conn = client._conns[client.servers[0]]
    try:
        with conn.lock:
            conn.send(encode(P.SUBMIT_JOB_BG, b"f", b"k" * 65, b"data"))
            with pytest.raises(GearmanServerError) as raised:
                conn.answer(P.JOB_CREATED)
        assert raised.value.code == "ARGUMENT_TOO_LARGE"
        [refused] = client.submit_many([Submit("f", b"x", "k" * 65)])
        assert isinstance(refused, GearmanError) and "max 64" in str(refused)
        assert client.submit("f", b"x", "k" * 64).startswith("H:")
    finally:
        client.close()


def test_same_unique_key_coalesces_into_one_job(env: Env) -> None:
    """Background submits with one unique key get one job handle and one queued job, until a
    worker takes it; binary payloads arrive intact."""
    ns = env.config.gearman.namespace
    client = GearmanClient(env.config.gearman.servers)
    server = client.servers[0]
    payload = bytes(range(256)) + b"\0\0"
    try:
        handles = {client.submit(f"{ns}co", payload, "pair:1") for _ in range(5)}
        assert len(handles) == 1
        [queued] = [f for f in gearman.status(server) if f.function == f"{ns}co"]
        assert (queued.total, queued.running, queued.workers) == (1, 0, 0)
        worker = WorkerConnection(server, [f"{ns}co"], "test-worker")
        job = worker.grab()
        assert job is not None and (job.unique, job.data) == ("pair:1", payload)
        assert any(w.client_id == "test-worker" and f"{ns}co" in w.functions
                   for w in gearman.workers(server))
        worker.complete(job)
        assert worker.grab() is None
        assert client.submit(f"{ns}co", b"", "pair:1") not in handles  # a new job now
        worker.close()
    finally:
        client.close()


def test_submit_fails_over_and_a_sleeping_worker_wakes(env: Env, tmp_path) -> None:
    """With one of two gearmand down, submits go to the other; a worker asleep after PRE_SLEEP
    is woken by NOOP when a job arrives."""
    second = Gearmand(free_port(), tmp_path)
    dead = f"127.0.0.1:{free_port()}"
    client = GearmanClient([dead, second.server])
    worker = WorkerConnection(second.server, ["wake"], "sleeper")
    try:
        assert worker.grab() is None
        worker.conn.send(encode(P.PRE_SLEEP))
        assert all(isinstance(client.submit("wake", b"%d" % i, f"u{i}"), str) for i in range(8))
        assert worker.conn.read(5, idle=True).type == P.NOOP
        assert gearman.version(second.server)
        with pytest.raises(gearman.GearmanConnectionError):
            gearman.status(dead)
    finally:
        worker.close()
        client.close()
        second.stop()


def test_status_reads_the_workers_of_a_gearmand_on_ipv6(tmp_path: Path) -> None:
    """A gearmand reached over IPv6 (``::1:PORT``) lists its workers with addresses that
    hold " :" themselves; status still reads them (it used to report the server DOWN)."""
    port = free_port()
    exe = shutil.which("gearmand") or "/usr/sbin/gearmand"
    proc = subprocess.Popen([exe, "--listen", "::1", "--port", str(port), "--log-file",
                             str(tmp_path / "g.log"), "--verbose", "WARNING"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = f"::1:{port}"
    worker = WorkerConnection(server, ["advance", "task"], "ipv6-worker")
    try:
        wait_for(lambda: gearman_version("::1", port) is not None, 20, "gearmand on ::1")
        worker.connect()
        assert worker.grab() is None  # registered (CAN_DO) and answered
        report = _gearmand(server, "")
        assert report["up"] and report["workers"] == 1, report
        [found] = [w for w in gearman.workers(server) if w.functions]  # not the admin link
        assert found.client_id == "ipv6-worker" and found.ip.startswith("::")
        assert set(found.functions) == {"advance", "task"}
    finally:
        worker.close()
        proc.terminate()
        proc.wait(20)
