"""The relay and the worker pool together: every event reaches every interested consumer, in
log order per shard, through restarts of the relay and of gearmand."""

from __future__ import annotations

import itertools
import json

import httpx

from scripts.stack import free_port
from server.db import Txn
from server.domain.checkpoints import SWEEP_AFTER, lock_key
from server.store import consumers as cstore
from tests.helpers import Process, wait_for
from tests.integration.conftest import Env
from tests.integration.gearmand import Gearmand
from tests.integration.recording import (
    Noted,
    OtherNoted,
    append,
    metrics_port,
    no_overlaps,
    relay,
    wait_all_seen,
    workers,
)

SHARDS = range(16)


def test_every_event_reaches_every_interested_consumer_in_order(env: Env) -> None:
    """Events on all shards, appended while two worker processes run, arrive complete and in
    log order at each consumer that wants them, and never at one that does not."""
    counter = itertools.count()
    append(env.store, [(s, Noted(n=next(counter))) for s in SHARDS for _ in range(5)])
    procs = (relay(env.vars), workers(env.vars), workers(env.vars))
    try:
        for _ in range(10):
            append(env.store, [(s, Noted(n=next(counter))) for s in SHARDS for _ in range(20)])
        append(env.store, [(s, OtherNoted(n=next(counter))) for s in (3, 12)])
        wait_all_seen(env.store, env.redis, SHARDS, procs=procs)
        wait_all_seen(env.store, env.redis, (3, 12), names=("recording_other",),
                      types=frozenset({"TestOther"}), procs=procs)
        assert env.redis.keys("seen:recording_other:*") != []
        assert {k.decode() for k in env.redis.keys("seen:recording_other:*")} == {
            "seen:recording_other:3", "seen:recording_other:12"}
        no_overlaps(env.redis)
    finally:
        for p in procs:
            assert p.stop() == 0, p.output.text()


def test_relay_killed_and_restarted_loses_nothing(env: Env) -> None:
    """Events appended while no relay runs are delivered once a new relay starts."""
    work = workers(env.vars)
    first = relay(env.vars)
    try:
        append(env.store, [(s, Noted(n=s)) for s in SHARDS])
        wait_all_seen(env.store, env.redis, SHARDS, procs=(work, first))
        first.kill()
        append(env.store, [(s, Noted(n=100 + s)) for s in SHARDS for _ in range(3)])
        second = relay(env.vars)
        try:
            wait_all_seen(env.store, env.redis, SHARDS, procs=(work, second))
        finally:
            assert second.stop() == 0, second.output.text()
    finally:
        assert work.stop() == 0, work.output.text()


def test_gearmand_stopped_and_restarted_while_events_arrive(env: Env, tmp_path) -> None:
    """With gearmand down, events keep being appended; once it is back, all of them arrive."""
    port = free_port()
    gearmand = Gearmand(port, tmp_path)
    own = env.vars | {"SHUTTERLOG_GEARMAN_SERVERS": f"127.0.0.1:{port}"}
    procs = (relay(own), workers(own))
    try:
        append(env.store, [(s, Noted(n=s)) for s in SHARDS])
        wait_all_seen(env.store, env.redis, SHARDS, procs=procs)
        gearmand.stop()
        for round_ in range(5):
            append(env.store, [(s, Noted(n=1000 * round_ + s)) for s in SHARDS])
        wait_for(lambda: "gearmand" in procs[0].output.text(), 20,
                 "the relay to notice that gearmand is down")
        gearmand.start()
        append(env.store, [(s, Noted(n=99_999)) for s in SHARDS])
        wait_all_seen(env.store, env.redis, SHARDS, timeout=90, procs=procs)
        no_overlaps(env.redis)
    finally:
        for p in procs:
            p.stop()
        gearmand.stop()


def sample(port: str, series: str) -> float | None:
    """One series' value (``name{labels}`` as the page prints it) from a /metrics page; None
    if absent or not answering."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.TransportError:
        return None
    found = [line[len(series) + 1:] for line in text.splitlines()
             if line.startswith(series + " ")]
    return float(found[0]) if found else None


def metric(port: str, name: str, consumer: str, shard: int) -> float | None:
    """A gauge labelled by consumer and shard (None if absent or not answering)."""
    return sample(port, f'{name}{{consumer="{consumer}",shard="{shard}"}}')


def test_relay_metrics_show_lag_until_workers_catch_up(env: Env) -> None:
    """With no workers the relay's /metrics shows the events and seconds a consumer is behind
    on a shard; once workers run it drops to zero. Its logs are JSON lines when asked."""
    port = metrics_port()
    append(env.store, [(4, Noted(n=i)) for i in range(7)])
    the_relay = relay(env.vars, SHUTTERLOG_RELAY_METRICS_PORT=port, SHUTTERLOG_LOG_FORMAT="json")
    try:
        wait_for(lambda: metric(port, "shutterlog_consumer_lag_events", "recording", 4) == 7,
                 30, "lag of 7 events")
        assert (metric(port, "shutterlog_consumer_lag_seconds", "recording", 4) or 0) > 0
        assert metric(port, "shutterlog_consumer_lag_events", "recording", 5) == 0
        work = workers(env.vars)
        try:
            wait_for(lambda: metric(port, "shutterlog_consumer_lag_events", "recording", 4) == 0,
                     30, "no lag")
        finally:
            assert work.stop() == 0, work.output.text()
        lines = [json.loads(line) for line in the_relay.output.lines if line.startswith("{")]
        assert any(line["message"].startswith("relay up") and line["role"] == "relay"
                   for line in lines)
    finally:
        assert the_relay.stop() == 0, the_relay.output.text()


def counter(port: str, name: str, consumer: str | None = None) -> float:
    """A counter, labelled by consumer or not (0 if not counted yet)."""
    return sample(port, f'{name}{{consumer="{consumer}"}}' if consumer else name) or 0.0


def test_the_relay_wakes_only_the_consumers_that_want_what_was_appended(env: Env) -> None:
    """A notification names the types appended: events of one type kick their consumers and
    not the others, and only their consumers show lag; the scan, which re-kicks what is
    behind, leaves a consumer with nothing of its types to do alone too."""
    port = metrics_port()
    the_relay = relay(env.vars, SHUTTERLOG_RELAY_METRICS_PORT=port)
    kicks = "shutterlog_relay_kicks_total"
    try:
        wait_for(lambda: metric(port, "shutterlog_consumer_lag_events", "recording", 4) == 0,
                 30, "the relay's first scan")
        other_before = counter(port, kicks, "recording_other")
        notified = counter(port, "shutterlog_relay_notifications_total")
        append(env.store, [(4, Noted(n=i)) for i in range(7)])
        wait_for(lambda: counter(port, "shutterlog_relay_notifications_total") > notified,
                 30, "the append's notification")
        wait_for(lambda: metric(port, "shutterlog_consumer_lag_events", "recording", 4) == 7,
                 30, "lag of 7 events")
        kicked = counter(port, kicks, "recording")
        # Two more scans (each re-kicks "recording", which stays behind with no workers).
        wait_for(lambda: counter(port, kicks, "recording") >= kicked + 2, 30, "two more scans")
        assert metric(port, "shutterlog_consumer_lag_events", "recording_other", 4) == 0
        assert counter(port, kicks, "recording_other") == other_before
        append(env.store, [(4, OtherNoted(n=99))])
        wait_for(lambda: counter(port, kicks, "recording_other") > other_before, 30,
                 "a kick of the consumer that wants TestOther")
    finally:
        assert the_relay.stop() == 0, the_relay.output.text()


def test_the_scan_sweeps_a_checkpoint_past_events_it_does_not_read(env: Env) -> None:
    """A consumer with nothing of its types to do is kicked by the scan once SWEEP_AFTER
    events of other types wait behind its checkpoint, which then moves to the head, so the
    next scans stop walking them; it was given none of them.

    The test holds the pair's lock while the relay starts, so the relay's start-up kick of
    every pair (which would move the checkpoint too) finds it busy and is spent; once that
    is seen, only the scan can kick the pair again."""
    name, shard = "recording_other", 6
    key = lock_key(name, shard)
    conn = env.router.database(shard).connect(autocommit=True)
    procs: tuple[Process, ...] = ()
    try:
        txn = Txn(conn.cursor())
        assert cstore.lock_txn(txn, key, name, shard, from_head=False) is not None
        port = metrics_port()
        procs = (relay(env.vars), workers(env.vars, SHUTTERLOG_WORKERS_METRICS_PORT=port))
        wait_for(lambda: counter(port, "shutterlog_consumer_busy_total", name) > 0, 30,
                 "the start-up kick spent on the held lock")
        append(env.store, [(shard, Noted(n=i)) for i in range(SWEEP_AFTER)])
        head = env.store.head(shard)
        assert head is not None
        cstore.unlock_txn(txn, key)

        def swept() -> bool:
            cp = cstore.ConsumerStore(env.router).checkpoint(name, shard)
            return cp is not None and cp.position == head

        wait_for(swept, 30, f"{name}'s checkpoint on {shard} at the head")
        assert env.redis.keys(f"seen:{name}:{shard}") == [], "given none of them"
    finally:
        conn.close()
        for p in procs:
            assert p.stop() == 0, p.output.text()
