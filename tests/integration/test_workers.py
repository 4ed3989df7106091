"""The worker pool under failure: kill -9 mid-batch, graceful shutdown, two workers racing."""

from __future__ import annotations

import signal

import httpx

from server.domain.checkpoints import STOPPED
from server.store.consumers import ConsumerStore
from tests.helpers import wait_for
from tests.integration.conftest import Env
from tests.integration.recording import (
    DELAY,
    GATE,
    INBATCH,
    Noted,
    append,
    log_order,
    metrics_port,
    no_overlaps,
    relay,
    seen,
    wait_all_seen,
    workers,
)

SHARD = 5


def held_batch(env: Env) -> None:
    """Close the gate, append one batch's worth to SHARD, and wait for a worker to hold it."""
    env.redis.set(GATE, "closed")
    append(env.store, [(SHARD, Noted(n=i)) for i in range(40)])
    wait_for(lambda: env.redis.get(INBATCH), 30, "a batch held half-way")


def test_kill_9_mid_batch_redoes_the_batch(env: Env) -> None:
    """A worker killed half-way through a batch: the batch is applied again by another
    worker, nothing is lost and nothing is out of order."""
    the_relay = relay(env.vars)
    first = workers(env.vars)
    try:
        held_batch(env)
        applied_before = len(seen(env.redis, "recording", SHARD)) + len(
            seen(env.redis, "recording_stop", SHARD))
        assert applied_before > 0  # half a batch was applied, not checkpointed
        first.kill()
        env.redis.delete(GATE, "active:recording:5", "active:recording_stop:5")
        second = workers(env.vars)
        try:
            wait_all_seen(env.store, env.redis, [SHARD], procs=(the_relay, second))
            redone = sum(int(env.redis.get(f"dups:{n}:{SHARD}") or 0)
                         for n in ("recording", "recording_stop"))
            assert redone == applied_before  # exactly the applied half came again
        finally:
            assert second.stop() == 0, second.output.text()
    finally:
        first.kill()
        the_relay.stop()


def test_graceful_shutdown_finishes_and_checkpoints_the_batch(env: Env) -> None:
    """SIGTERM while a batch is half-applied: the worker finishes it, saves the checkpoint and
    exits 0, so what was applied is exactly what the checkpoint covers."""
    the_relay = relay(env.vars)
    worker = workers(env.vars)
    try:
        held_batch(env)
        worker.signal(signal.SIGTERM)
        wait_for(lambda: "finish their batch" in worker.output.text(), 10, "the worker to stop")
        assert worker.alive()  # still finishing the held batch
        env.redis.set(GATE, "open")
        assert worker.wait(30) == 0, worker.output.text()
        store = ConsumerStore(env.router)
        for name in ("recording", "recording_stop"):
            applied = seen(env.redis, name, SHARD)
            checkpoint = store.checkpoint(name, SHARD)
            assert checkpoint is not None and checkpoint.status != STOPPED
            assert applied == log_order(env.store, SHARD, {"TestNoted"})[:len(applied)]
            assert applied and checkpoint.position.id == applied[-1]  # no half-applied batch
    finally:
        worker.kill()
        the_relay.stop()


def test_two_workers_never_advance_one_pair_at_once(env: Env) -> None:
    """Two worker processes kicked over and over on the same pairs: the one that finds a pair
    locked backs off, so the recording never sees two batches of one pair overlap."""
    port = metrics_port()
    env.redis.set(DELAY, "0.002")
    the_relay = relay(env.vars)
    procs = (workers(env.vars, SHUTTERLOG_WORKERS_METRICS_PORT=port), workers(env.vars))
    try:
        for i in range(30):
            append(env.store, [(s, Noted(n=i)) for s in (1, 9) for _ in range(10)])
        wait_all_seen(env.store, env.redis, (1, 9), procs=procs)
        no_overlaps(env.redis)
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        busy = [line for line in text.splitlines()
                if line.startswith("shutterlog_consumer_busy_total{")]
        assert sum(float(line.split()[-1]) for line in busy) > 0, "the lock was never contended"
    finally:
        for p in procs:
            assert p.stop() == 0, p.output.text()
        the_relay.stop()
