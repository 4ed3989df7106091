"""Durable chunk tasks: work too big for one job, split into rows with a Gearman job each.

A feature declares a task kind and its handler, and submits payloads (msgpack-able values):

    @task_handler("fanout")
    def fanout(ctx: WorkerContext, payload: Any) -> None: ...

    ids = submit_tasks(ctx, "fanout", [{"media": m, "followers": chunk} for chunk in chunks])

``submit_tasks`` inserts the rows, then submits one background job per task (unique key: the
task id). A worker leases the task (no other worker runs it while the lease holds; a heartbeat
keeps the lease while the handler runs), runs it and marks it done; a failure is retried with
backoff up to ``workers.task_attempts`` times, then the task is marked failed. The relay
re-submits every task not done by its deadline, so a job lost with a gearmand, or a worker
killed mid-task, only delays it. Handlers must be idempotent: a task whose worker died after
the work but before marking it done runs again.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

import gevent
import msgpack

from server.domain.checkpoints import retry_delay
from server.store.tasks import Lease, TaskStore
from workers import metrics
from workers.context import WorkerContext
from workers.jobs import submit, task_job

log = logging.getLogger(__name__)

TaskHandler = Callable[[WorkerContext, Any], None]


class TaskHandlers:
    """Task handlers by kind."""

    def __init__(self) -> None:
        self._by_kind: dict[str, TaskHandler] = {}

    def add(self, kind: str, fn: TaskHandler) -> None:
        if kind in self._by_kind:
            raise ValueError(f"task kind {kind!r} declared twice")
        self._by_kind[kind] = fn

    def get(self, kind: str) -> TaskHandler:
        try:
            return self._by_kind[kind]
        except KeyError:
            raise KeyError(f"no task handler for kind {kind!r}") from None


#: Every task handler of this release.
TASKS = TaskHandlers()


def task_handler(kind: str, registry: TaskHandlers = TASKS) -> Callable[[TaskHandler], TaskHandler]:
    """Decorator: declare ``fn`` as the handler of tasks of ``kind``."""

    def register(fn: TaskHandler) -> TaskHandler:
        registry.add(kind, fn)
        return fn

    return register


class RetryAfter(Exception):
    """Raised by a task handler: run the task again, not sooner than ``delay`` seconds (a
    push service's Retry-After); the task's own backoff applies when it is longer."""

    def __init__(self, reason: str, delay: float) -> None:
        super().__init__(f"{reason} (retry after {delay:.1f} s)")
        self.delay = delay


def submit_tasks(ctx: WorkerContext, kind: str, payloads: Sequence[Any],
                 shard: int | None = None, registry: TaskHandlers = TASKS,
                 delay: float = 0.0) -> list[int]:
    """Store tasks of ``kind`` (in ``shard``'s database; any shard if None) and submit their
    jobs; returns the task ids. A submit that fails is logged; the relay re-submits it.
    With a ``delay`` (seconds) the tasks are stored due then and not submitted: the relay's
    scan of late tasks submits them once due (so they start up to ``relay.poll_interval``
    after it)."""
    registry.get(kind)  # an unknown kind fails here, not in a worker later
    if not payloads:
        return []
    if shard is None:
        shard = random.randrange(ctx.router.count)
    ids = TaskStore(ctx.router).insert(
        shard, kind, [msgpack.packb(p, use_bin_type=True) for p in payloads],
        grace=delay if delay > 0 else ctx.config.workers.task_lease,
    )
    if delay <= 0:
        submit(ctx.gearman, [task_job(ctx.config.gearman.namespace, i) for i in ids])
    return ids


def run_task(ctx: WorkerContext, task_id: int, registry: TaskHandlers = TASKS) -> str:
    """Lease and run one task; returns the outcome: done, retry, failed, or busy (leased by
    another worker, already done, or unknown)."""
    settings = ctx.config.workers
    store = TaskStore(ctx.router)
    lease = store.lease(task_id, settings.task_lease)
    if lease is None:
        return "busy"
    heartbeat = gevent.spawn(_keep, store, lease, settings.task_lease)
    error: Exception | None = None
    try:
        registry.get(lease.kind)(ctx, msgpack.unpackb(lease.payload, raw=False))
    except Exception as e:
        error = e
    finally:
        heartbeat.kill()
    if error is None:
        outcome = "done" if store.finish(lease) else "lost"
        if outcome == "lost":
            log.warning("task %d (%s) finished after its lease was lost", task_id, lease.kind)
    else:
        text = f"{type(error).__name__}: {error}"
        final = lease.attempt >= settings.task_attempts
        delay = None if final else retry_delay(lease.attempt, settings.retry_delay,
                                               settings.retry_max_delay)
        if delay is not None and isinstance(error, RetryAfter):
            delay = max(delay, error.delay)
        store.finish(lease, text, delay)
        outcome = "failed" if final else "retry"
        log.log(logging.ERROR if final else logging.WARNING,
                "task %d (%s) %s after attempt %d: %s", task_id, lease.kind, outcome,
                lease.attempt, text, exc_info=error if final else None)
    metrics.TASKS.labels(lease.kind, outcome).inc()
    return outcome


def _keep(store: TaskStore, lease: Lease, seconds: float) -> None:
    """Extend the lease every third of its length while the task runs."""
    while True:
        gevent.sleep(seconds / 3)
        if not store.extend(lease, seconds):
            log.warning("task %d: lease lost while running", lease.id)
            return
