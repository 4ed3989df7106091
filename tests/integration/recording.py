"""Test-only event types, consumers and task handlers, and helpers to run relay and workers.

Our subprocesses load this module through ``SHUTTERLOG_WORKERS_MODULES`` (``workers.modules``).
The recording consumers write what they applied to Redis, in order, so a test can check that
every event arrived once, in log order, and that no two workers ran one (consumer, shard) at
once. Knobs in Redis make them slow, hold a batch in the middle, or fail on chosen events.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

import redis

from scripts.stack import free_port
from server.domain.events import EVENTS, Event
from server.domain.log import ORIGIN, AppendRequest, NewEvent, Position, RecordedEvent
from tests.helpers import Process, wait_for
from workers.consumers import OnFailure, consumer
from workers.context import WorkerContext
from workers.tasks import task_handler

GATE = "knob:gate"  # "closed": a batch stops half-way until it is opened
INBATCH = "knob:inbatch"  # set by a batch held at the gate: the pid of its worker
DELAY = "knob:delay"  # seconds to spend on each event


@EVENTS.event("TestNoted", version=1)
class Noted(Event):
    n: int


@EVENTS.event("TestOther", version=1)
class OtherNoted(Event):
    n: int


def poison(r: redis.Redis, event_id: int) -> None:
    """Make the recording consumers fail on ``event_id`` until ``cure``."""
    r.sadd("knob:poison", event_id)


def cure(r: redis.Redis) -> None:
    r.delete("knob:poison")


def _record(ctx: WorkerContext, name: str, events: list[RecordedEvent]) -> None:
    r = ctx.redis
    shard = events[0].shard
    active = f"active:{name}:{shard}"
    if r.incr(active) > 1:
        r.rpush(f"overlaps:{name}", f"{shard}:{os.getpid()}")
    try:
        last_text = r.get(f"last:{name}:{shard}")
        last = Position.parse(last_text.decode()) if last_text else ORIGIN
        delay = float(r.get(DELAY) or 0)
        for i, e in enumerate(events):
            if i == len(events) // 2 and len(events) > 1 and r.get(GATE) == b"closed":
                r.set(INBATCH, os.getpid())
                while r.get(GATE) == b"closed":
                    time.sleep(0.01)
            if r.sismember("knob:poison", e.id):
                raise RuntimeError(f"poisoned event {e.id}")
            if delay:
                time.sleep(delay)
            if e.position <= last:  # applied before (a redone batch), or re-driven late
                if r.sismember(f"applied:{name}:{shard}", e.id):
                    r.incr(f"dups:{name}:{shard}")
                else:
                    r.rpush(f"late:{name}:{shard}", e.id)
                continue
            r.rpush(f"seen:{name}:{shard}", e.id)
            r.sadd(f"applied:{name}:{shard}", e.id)
            r.set(f"last:{name}:{shard}", str(e.position))
            last = e.position
    finally:
        r.decr(active)


@consumer("recording", "TestNoted", batch_size=50, on_failure=OnFailure.SKIP)
def recording(ctx: WorkerContext, events: list[RecordedEvent]) -> None:
    _record(ctx, "recording", events)


@consumer("recording_stop", "TestNoted", batch_size=50, on_failure=OnFailure.STOP)
def recording_stop(ctx: WorkerContext, events: list[RecordedEvent]) -> None:
    _record(ctx, "recording_stop", events)


@consumer("recording_other", "TestOther", batch_size=50, on_failure=OnFailure.SKIP)
def recording_other(ctx: WorkerContext, events: list[RecordedEvent]) -> None:
    _record(ctx, "recording_other", events)


@task_handler("test_record")
def record_task(ctx: WorkerContext, payload: Any) -> None:
    r = ctx.redis
    name = payload["name"]
    if r.incr(f"task_active:{name}") > 1:
        r.rpush("task_overlaps", name)
    try:
        r.rpush("task_runs", name)
        while payload.get("hold") and r.get(GATE) == b"closed":
            time.sleep(0.01)
    finally:
        r.decr(f"task_active:{name}")


# --- helpers for tests ------------------------------------------------------------------------

#: Settings for our relay and workers in tests: fast scans and retries, no metrics ports.
FAST = {
    "SHUTTERLOG_WORKERS_MODULES": "tests.integration.recording",
    "SHUTTERLOG_RELAY_POLL_INTERVAL": "0.3",
    "SHUTTERLOG_WORKERS_RETRY_DELAY": "0.01",
    "SHUTTERLOG_WORKERS_RETRY_MAX_DELAY": "0.05",
    "SHUTTERLOG_WORKERS_BATCH_ATTEMPTS": "2",
    "SHUTTERLOG_WORKERS_EVENT_ATTEMPTS": "3",
    "SHUTTERLOG_WORKERS_METRICS_PORT": "0",
    "SHUTTERLOG_RELAY_METRICS_PORT": "0",
}
CONSUMER_NAMES = ("recording", "recording_stop", "recording_other")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "scripts.cli", *args]


def relay(env_vars: dict[str, str], **extra: str) -> Process:
    return Process(cli("relay"), env_vars | FAST | extra, "relay")


def workers(env_vars: dict[str, str], concurrency: int = 8, **extra: str) -> Process:
    return Process(cli("workers", "--concurrency", str(concurrency)), env_vars | FAST | extra,
                   "workers")


@contextlib.contextmanager
def running(env_vars: dict[str, str], settings: dict[str, str] | None = None,
            concurrency: int = 6) -> Iterator[list[Process]]:
    """A relay and a worker process (with ``settings``) for the block; both must stop
    cleanly after it."""
    settings = settings or {}
    procs = [relay(env_vars, **settings), workers(env_vars, concurrency, **settings)]
    try:
        yield procs
    finally:
        for p in procs:
            assert p.stop() == 0, p.output.text()


def metrics_port() -> str:
    return str(free_port())


def append(store: Any, items: Iterable[tuple[int, Event]]) -> None:
    """Append events, each to a stream of its own in the given shard, in one batch."""
    requests = [AppendRequest(shard, f"note:{shard}:{i}:{time.monotonic_ns()}",
                              (NewEvent(event),))
                for i, (shard, event) in enumerate(items)]
    store.append_many(requests)


def log_order(store: Any, shard: int, types: set[str]) -> list[int]:
    """The ids of ``shard``'s events of ``types``, in log order (what consumers must see)."""
    out: list[int] = []
    position = ORIGIN
    while True:
        page = store.read_page(shard, position, 1000, types)
        out += [e.id for e in page.events]
        position = page.next
        if not page.more:
            return out


def seen(r: redis.Redis, name: str, shard: int) -> list[int]:
    return [int(x) for x in r.lrange(f"seen:{name}:{shard}", 0, -1)]


def wait_all_seen(store: Any, r: redis.Redis, shards: Iterable[int], timeout: float = 60,
                  names: tuple[str, ...] = ("recording", "recording_stop"),
                  types: frozenset[str] = frozenset({"TestNoted"}),
                  procs: tuple[Process, ...] = ()) -> None:
    """Wait until every consumer in ``names`` has recorded exactly the log, in order."""
    for shard in shards:
        want = log_order(store, shard, set(types))
        for name in names:
            def done(name: str = name, shard: int = shard, want: list[int] = want) -> bool:
                for p in procs:
                    assert p.alive(), f"{p.name} exited:\n{p.output.text()}"
                got = seen(r, name, shard)
                assert got == want[:len(got)], f"{name} shard {shard}: out of order or gap"
                return got == want
            wait_for(done, timeout, f"{name} to apply shard {shard}")


def no_overlaps(r: redis.Redis) -> None:
    for name in CONSUMER_NAMES:
        assert r.lrange(f"overlaps:{name}", 0, -1) == [], f"{name}: two workers at once"
