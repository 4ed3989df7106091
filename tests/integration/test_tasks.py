"""Durable chunk tasks: a task lost from gearmand runs anyway; a task never runs twice at once;
a kind's own retry schedule and give-up hook; RetryTask uses no attempt; a task whose worker
died runs again elsewhere."""

from __future__ import annotations

import msgpack
import redis

from scripts.stack import free_port
from server.store.tasks import TaskStore
from tests.helpers import wait_for
from tests.integration.conftest import Env
from tests.integration.recording import GATE, relay, workers
from workers import gearman
from workers.context import WorkerContext
from workers.gearman import GearmanClient
from workers.jobs import task_function
from workers.tasks import RetryTask, TaskHandlers, TaskRefused, run_task, submit_tasks


def runs(env: Env) -> list[bytes]:
    return env.redis.lrange("task_runs", 0, -1)


def state(store: TaskStore, task_id: int) -> tuple[str, int]:
    task = store.get(task_id)
    assert task is not None
    return task.state, task.attempts


def test_task_lost_from_gearmand_is_run_by_the_relays_resubmission(env: Env) -> None:
    """A task stored but never submitted (its job lost) is re-submitted past its deadline and
    runs once; a task submitted normally runs too."""
    store = TaskStore(env.router)
    [lost] = store.insert(7, "test_record", [msgpack.packb({"name": "lost"})], grace=0.5)
    procs = (relay(env.vars), workers(env.vars))
    ctx = WorkerContext.create(env.config, name="shutterlog-test")
    try:
        [normal] = submit_tasks(ctx, "test_record", [{"name": "normal"}], shard=12)
        wait_for(lambda: sorted(runs(env)) == [b"lost", b"normal"], 30, "both tasks to run")
        wait_for(lambda: state(store, lost) == state(store, normal) == ("done", 1), 10, "done")
    finally:
        ctx.close()
        for p in procs:
            assert p.stop() == 0, p.output.text()


def test_task_is_not_run_twice_concurrently(env: Env) -> None:
    """Two jobs for one task reach two worker processes while it runs: the lease lets only
    one of them run it."""
    env.redis.set(GATE, "closed")
    store = TaskStore(env.router)
    [task] = store.insert(4, "test_record", [msgpack.packb({"name": "once", "hold": True})],
                          grace=60)
    procs = (workers(env.vars), workers(env.vars))
    client = GearmanClient(env.config.gearman.servers)
    function = task_function(env.config.gearman.namespace)
    try:
        wait_for(lambda: sum(function in w.functions
                             for w in gearman.workers(client.servers[0])) >= 2, 20, "2 workers")
        for unique in ("first", "second"):  # distinct keys: gearmand does not coalesce them
            client.submit(function, msgpack.packb(task), unique)
        wait_for(lambda: runs(env) == [b"once"], 20, "the task to start")
        wait_for(lambda: all(f.total == 0 for f in gearman.status(client.servers[0])
                             if f.function == function), 20, "both jobs to be taken")
        env.redis.set(GATE, "open")
        wait_for(lambda: state(store, task)[0] == "done", 20, "the task to finish")
        assert runs(env) == [b"once"] and env.redis.lrange("task_overlaps", 0, -1) == []
    finally:
        client.close()
        for p in procs:
            assert p.stop() == 0, p.output.text()


def test_a_kind_retries_on_its_schedule_then_gives_up(env: Env) -> None:
    """A failing task is retried while its kind's schedule says so, then the give-up hook
    gets the payload and the error before the task is marked failed; TaskRefused fails at
    once."""
    registry = TaskHandlers()
    gave_up: list[tuple[object, str]] = []

    def fail(_ctx: WorkerContext, payload: object) -> None:
        raise RuntimeError("down")

    def refuse(_ctx: WorkerContext, payload: object) -> None:
        raise TaskRefused("gone for good")

    for kind, fn in (("t_fail", fail), ("t_refuse", refuse)):
        registry.add(kind, fn, schedule=lambda _cfg, attempt: 0.0 if attempt < 2 else None,
                     give_up=lambda _ctx, payload, error: gave_up.append((payload, str(error))))
    store = TaskStore(env.router)
    [failing] = store.insert(3, "t_fail", [msgpack.packb({"n": 1})], grace=60)
    [refused] = store.insert(3, "t_refuse", [msgpack.packb({"n": 2})], grace=60)
    ctx = WorkerContext(env.config, env.router, env.store, env.redis)
    assert run_task(ctx, failing, registry) == "retry" and gave_up == []
    assert state(store, failing) == ("pending", 1)
    assert run_task(ctx, failing, registry) == "failed"
    assert gave_up == [({"n": 1}, "down")] and state(store, failing) == ("failed", 2)
    assert run_task(ctx, refused, registry) == "failed"
    assert gave_up[1:] == [({"n": 2}, "gone for good")] and state(store, refused) == ("failed", 1)


def test_retry_task_does_not_use_up_the_schedule(env: Env) -> None:
    """Runs ending in RetryTask give their attempt back: after several of them, a plain
    failure is still retried on the kind's schedule instead of failing at once."""
    registry = TaskHandlers()
    ran: list[int] = []

    def throttled(_ctx: WorkerContext, payload: object) -> None:
        ran.append(1)
        if len(ran) <= 3:
            raise RetryTask("429 from the service", 0)
        raise RuntimeError("database blip")

    registry.add("t_throttled", throttled,
                 schedule=lambda _cfg, attempt: 0.0 if attempt < 2 else None)
    store = TaskStore(env.router)
    [task] = store.insert(5, "t_throttled", [msgpack.packb({"n": 3})], grace=60)
    ctx = WorkerContext(env.config, env.router, env.store, env.redis)
    assert [run_task(ctx, task, registry) for _ in range(3)] == ["retry"] * 3
    assert state(store, task) == ("pending", 0)
    assert run_task(ctx, task, registry) == "retry" and state(store, task) == ("pending", 1)
    assert run_task(ctx, task, registry) == "failed" and state(store, task) == ("failed", 2)


def test_an_outage_uses_up_no_attempt(env: Env) -> None:
    """A task that meets an unreachable Redis (a real client on a closed port) runs again
    later without counting an attempt, even for a kind that never retries a failure: an
    outage must not fail a fan-out chunk for good."""
    registry = TaskHandlers()
    gone = redis.Redis(port=free_port(), socket_connect_timeout=1)
    ran: list[int] = []

    def needs_redis(_ctx: WorkerContext, payload: object) -> None:
        ran.append(1)
        if len(ran) <= 2:
            gone.ping()

    registry.add("t_outage", needs_redis, schedule=lambda _cfg, attempt: None)
    store = TaskStore(env.router)
    [task] = store.insert(5, "t_outage", [msgpack.packb({})], grace=60)
    ctx = WorkerContext(env.config, env.router, env.store, env.redis)
    assert [run_task(ctx, task, registry) for _ in range(2)] == ["retry"] * 2
    assert state(store, task) == ("pending", 0)
    assert run_task(ctx, task, registry) == "done" and state(store, task) == ("done", 1)


def test_a_task_whose_worker_died_runs_again_after_its_lease(env: Env) -> None:
    """A worker killed (SIGKILL) while running a task leaves it leased; once the lease ends
    the relay's re-submission lets another worker lease and finish it."""
    env.redis.set(GATE, "closed")
    short = env.vars | {"SHUTTERLOG_WORKERS_TASK_LEASE": "1"}
    store = TaskStore(env.router)
    first = workers(short)
    procs = [relay(short)]
    ctx = WorkerContext.create(env.config, name="shutterlog-test")
    try:
        [task] = submit_tasks(ctx, "test_record", [{"name": "crash", "hold": True}], shard=3)
        wait_for(lambda: runs(env) == [b"crash"], 20, "the task to start")
        first.kill()
        env.redis.set(GATE, "open")
        procs.append(workers(short))
        wait_for(lambda: state(store, task)[0] == "done", 30, "the task to finish elsewhere")
        assert runs(env) == [b"crash", b"crash"] and state(store, task) == ("done", 2)
    finally:
        ctx.close()
        for p in procs:
            assert p.stop() == 0, p.output.text()


def test_one_scan_submits_every_task_due_not_just_a_batch(env: Env) -> None:
    """Delayed tasks are released by the relay's scan: 2,500 due at once all run after its
    first scan, though it takes them 1,000 at a time and its next scan is a minute away."""
    store = TaskStore(env.router)
    payloads = [msgpack.packb({"name": f"t{i}"}) for i in range(2_500)]
    assert len(store.insert(7, "test_record", payloads, grace=0.2)) == 2_500
    wait_for(lambda: due(env) == 2_500, 10, "the tasks due")
    procs = (relay(env.vars, SHUTTERLOG_RELAY_POLL_INTERVAL="60"), workers(env.vars))
    try:
        wait_for(lambda: len(runs(env)) == 2_500, 45, "every task run after one scan")
        assert sorted(runs(env)) == sorted(f"t{i}".encode() for i in range(2_500))
    finally:
        for p in procs:
            assert p.stop() == 0, p.output.text()


def due(env: Env) -> int:
    """Tasks of the test kind in shard 7's database whose due time has passed."""
    row = env.router.database(7).run_interaction("due", lambda txn: txn.fetchone(
        "SELECT count(*) FROM tasks WHERE kind = 'test_record' AND due_at < now()"))
    return int(row[0]) if row else 0
