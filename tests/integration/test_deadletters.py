"""Poison events: retried, parked in dead letters, skipped or stopping per policy, re-driven."""

from __future__ import annotations

import json
import subprocess

import redis

from scripts.stack import free_port
from server.domain.log import ORIGIN
from server.domain.shards import schema_name
from server.store.consumers import ConsumerStore
from tests.helpers import REPO, scrubbed_env, wait_for
from tests.integration.conftest import Env
from tests.integration.recording import (
    FAST,
    Noted,
    append,
    cli,
    cure,
    log_order,
    poison,
    relay,
    seen,
    wait_all_seen,
    workers,
)
from workers.advance import Advancer
from workers.consumers import CONSUMERS
from workers.context import WorkerContext

SHARD = 2
OTHER = 9


def run_cli(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(*args), env=scrubbed_env(env.vars | FAST), cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def letter_of(env: Env, consumer: str):
    letters = ConsumerStore(env.router).letters(consumer)
    return letters[0] if letters else None


def test_poison_event_is_parked_skipped_or_stops_its_shard_and_retry_redrives_it(env: Env) -> None:
    """After K attempts a failing event lands in dead letters; the SKIP consumer goes on, the
    STOP consumer stops on that shard only (others go on), and `deadletters retry` after the
    fix applies it and resumes the stopped shard."""
    append(env.store, [(SHARD, Noted(n=i)) for i in range(10)])
    order = log_order(env.store, SHARD, {"TestNoted"})
    bad = order[4]
    poison(env.redis, bad)
    procs = (relay(env.vars), workers(env.vars))
    try:
        skip = wait_for(lambda: letter_of(env, "recording"), 30, "the SKIP consumer's letter")
        stop = wait_for(lambda: letter_of(env, "recording_stop"), 30, "the STOP consumer's letter")
        assert (skip.event_id, skip.attempts, skip.status) == (bad, 3, "parked")
        assert (stop.event_id, stop.status) == (bad, "blocking")
        assert "poisoned event" in skip.error and "RuntimeError" in skip.traceback
        wait_for(lambda: seen(env.redis, "recording", SHARD) == order[:4] + order[5:], 30,
                 "the SKIP consumer to go on past the poisoned event")
        checkpoint = ConsumerStore(env.router).checkpoint("recording_stop", SHARD)
        assert checkpoint is not None and checkpoint.stopped
        assert seen(env.redis, "recording_stop", SHARD) == order[:4]
        wait_for(lambda: "CONSUMER STOPPED" in procs[1].output.text(), 30,
                 "the worker to log the stop (its output is read by a thread of ours)")
        append(env.store, [(OTHER, Noted(n=i)) for i in range(5)])  # other shards go on
        wait_all_seen(env.store, env.redis, [OTHER], procs=procs)
        append(env.store, [(SHARD, Noted(n=99))])  # the stopped shard does not
        wait_for(lambda: len(seen(env.redis, "recording", SHARD)) == 10, 30, "the SKIP one")
        assert seen(env.redis, "recording_stop", SHARD) == order[:4]

        status = json.loads(run_cli(env, "status", "--json").stdout)
        by_name = {c["name"]: c for c in status["consumers"]}
        assert by_name["recording_stop"]["stopped"][0]["shard"] == SHARD
        assert by_name["recording"]["dead_letters"] == 1 and status["dead_letters"] == 2
        assert status["gearmand"][0]["up"] and status["gearmand"][0]["workers"] >= 1

        listed = run_cli(env, "deadletters", "list")
        assert str(skip.id) in listed.stdout and str(stop.id) in listed.stdout
        still = run_cli(env, "deadletters", "retry", str(skip.id))
        assert still.returncode == 1 and "failed again" in still.stderr
        assert letter_of(env, "recording").attempts == 4

        cure(env.redis)
        done = run_cli(env, "deadletters", "retry", str(skip.id))
        assert done.returncode == 0, done.stderr
        assert env.redis.lrange(f"late:recording:{SHARD}", 0, -1) == [str(bad).encode()]
        assert letter_of(env, "recording") is None
        resumed = run_cli(env, "deadletters", "retry", str(stop.id))
        assert resumed.returncode == 0 and "resumes" in resumed.stderr, resumed.stderr
        wait_all_seen(env.store, env.redis, [SHARD], names=("recording_stop",), procs=procs)
    finally:
        for p in procs:
            assert p.stop() == 0, p.output.text()


def test_undecodable_event_is_parked_not_a_crash_loop(env: Env) -> None:
    """An event the registry cannot decode is parked like a failing one; the SKIP consumer
    goes on, and `deadletters drop` lets the stopped one go on past it."""
    append(env.store, [(SHARD, Noted(n=1))])
    conn = env.router.database(SHARD).connect(autocommit=True)
    with conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO events (id, shard, stream, version, type, schema_version, payload) "
            f"VALUES ({schema_name(SHARD)}.next_id(), %s, 'broken:1', 1, 'TestNoted', 1, "
            f"'\\x81a178'::bytea) RETURNING id", (SHARD,))
        broken = cur.fetchone()[0]
    conn.close()
    append(env.store, [(SHARD, Noted(n=2))])
    procs = (relay(env.vars), workers(env.vars))
    try:
        skip = wait_for(lambda: letter_of(env, "recording"), 30, "the letter")
        assert skip.event_id == broken and "UnreadableEvent" in skip.error
        wait_for(lambda: len(seen(env.redis, "recording", SHARD)) == 2, 30, "the rest")
        stop = wait_for(lambda: letter_of(env, "recording_stop"), 30, "the STOP letter")
        dropped = run_cli(env, "deadletters", "drop", str(stop.id))
        assert dropped.returncode == 0 and "resumes" in dropped.stderr, dropped.stderr
        wait_for(lambda: len(seen(env.redis, "recording_stop", SHARD)) == 2, 30, "resumed")
    finally:
        for p in procs:
            assert p.stop() == 0, p.output.text()


def test_a_redis_outage_delays_events_and_parks_none(env: Env) -> None:
    """Redis unreachable while a worker takes the jobs (restarting: nothing listens on its
    port) is an outage, not a poison event: the handlers fail on every try, yet nothing is
    parked, the STOP pair does not stop, no attempt is counted and the checkpoints stay;
    once Redis is back, the next jobs apply every event in order (the SKIP consumer loses
    none)."""
    append(env.store, [(SHARD, Noted(n=i)) for i in range(3)])
    names = ("recording", "recording_stop")
    down = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    store = ConsumerStore(env.router)
    for client in (down, env.redis):  # Redis down, then back
        advancer = Advancer(WorkerContext(env.config, env.router, env.store, client),
                            CONSUMERS, env.config.workers)
        try:
            for name in names:
                advancer.run(name, SHARD)  # down: tries for the job's budget, then leaves
        finally:
            advancer.close()
        if client is down:
            for name in names:
                cp = store.checkpoint(name, SHARD)
                assert cp is not None and (cp.position, cp.stopped, cp.failures) == (
                    ORIGIN, False, 0), cp
            assert store.letters() == []
    for name in names:
        assert seen(env.redis, name, SHARD) == log_order(env.store, SHARD, {"TestNoted"})
