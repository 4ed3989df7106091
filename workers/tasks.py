"""Durable chunk tasks: work too big for one job, split into rows with a Gearman job each.

A feature declares a task kind and its handler, and submits payloads (msgpack-able values):

    @task_handler("fanout")
    def fanout(ctx: WorkerContext, payload: Any) -> None: ...

    ids = submit_tasks(ctx, "fanout", [{"media": m, "followers": chunk} for chunk in chunks])

``submit_tasks`` inserts the rows, then submits one background job per task (unique key: the
task id). A worker leases the task (no other worker runs it while the lease holds; a heartbeat
keeps the lease while the handler runs), runs it and marks it done; a failure is retried with
backoff up to ``workers.task_attempts`` times, then the task is marked failed (a kind may
declare its own schedule, and a ``give_up`` hook that runs before a task is marked failed; a
handler raising ``TaskRefused`` fails at once, without retries; one raising ``RetryTask`` runs
again after the delay it names, without using up its attempts). The relay re-submits every task
not done by its deadline, so a job lost with a gearmand, or a worker killed mid-task, only
delays it. Handlers must be idempotent: a task whose worker died after the work but before
marking it done runs again.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gevent
import msgpack

from server.config import Config
from server.domain.checkpoints import retry_delay
from server.outages import outage
from server.store.tasks import Lease, TaskStore
from workers import metrics
from workers.context import WorkerContext
from workers.jobs import submit, task_job

log = logging.getLogger(__name__)

TaskHandler = Callable[[WorkerContext, Any], None]
#: Seconds before a task that met a Redis or PostgreSQL outage runs again (no attempt counted).
OUTAGE_DELAY = 5.0
#: Seconds before the next try after failed attempt N (1, 2, ...); None: no more tries.
Schedule = Callable[[Config, int], float | None]
#: Called with the payload and the last error (the exception itself, so that a hook can
#: tell the failures it owns from ours, e.g. a database outage) before a task is marked failed.
GiveUp = Callable[[WorkerContext, Any, Exception], None]


class TaskRefused(Exception):
    """Raised by a handler for a failure that retrying cannot mend: the task fails at once."""


class RetryTask(Exception):  # noqa: N818 (a request, not an error)
    """Raised by a task handler: run the task again in ``delay`` seconds. The handler owns
    the decision to give up (e.g. ``server.domain.shareout.next_attempt``), so this retry
    does not count against ``workers.task_attempts``."""

    def __init__(self, reason: str, delay: float) -> None:
        super().__init__(reason)
        self.delay = delay


class RetryAfter(Exception):
    """Raised by a task handler: run the task again, not sooner than ``delay`` seconds (a
    push service's Retry-After); the task's own backoff applies when it is longer."""

    def __init__(self, reason: str, delay: float) -> None:
        super().__init__(f"{reason} (retry after {delay:.1f} s)")
        self.delay = delay


def backoff(attempt: int, attempts: int, base: float, cap: float) -> float | None:
    """Seconds before the try after failed ``attempt`` of ``attempts``: ``base`` doubling up
    to ``cap``; None after the last."""
    return None if attempt >= attempts else retry_delay(attempt, base, cap)


def default_schedule(config: Config, attempt: int) -> float | None:
    """``workers.task_attempts`` tries, ``workers.retry_delay`` doubling between them."""
    w = config.workers
    return backoff(attempt, w.task_attempts, w.retry_delay, w.retry_max_delay)


@dataclass(frozen=True)
class TaskKind:
    """A task kind's handler, retry schedule and give-up hook."""

    run: TaskHandler
    schedule: Schedule = default_schedule
    give_up: GiveUp | None = None


class TaskHandlers:
    """Task handlers by kind."""

    def __init__(self) -> None:
        self._by_kind: dict[str, TaskKind] = {}

    def add(self, kind: str, fn: TaskHandler, schedule: Schedule = default_schedule,
            give_up: GiveUp | None = None) -> None:
        if kind in self._by_kind:
            raise ValueError(f"task kind {kind!r} declared twice")
        self._by_kind[kind] = TaskKind(fn, schedule, give_up)

    def get(self, kind: str) -> TaskHandler:
        return self.kind(kind).run

    def kind(self, kind: str) -> TaskKind:
        try:
            return self._by_kind[kind]
        except KeyError:
            raise KeyError(f"no task handler for kind {kind!r}") from None


#: Every task handler of this release.
TASKS = TaskHandlers()


def task_handler(kind: str, registry: TaskHandlers = TASKS, schedule: Schedule = default_schedule,
                 give_up: GiveUp | None = None) -> Callable[[TaskHandler], TaskHandler]:
    """Decorator: declare ``fn`` as the handler of tasks of ``kind`` (retried on
    ``schedule``; ``give_up`` runs before a task is marked failed, and must be idempotent:
    a worker dying right after it runs it again)."""

    def register(fn: TaskHandler) -> TaskHandler:
        registry.add(kind, fn, schedule, give_up)
        return fn

    return register


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
        shard, kind, packed(payloads),
        grace=delay if delay > 0 else ctx.config.workers.task_lease,
    )
    if delay <= 0:
        submit_jobs(ctx, ids)
    return ids


def submit_jobs(ctx: WorkerContext, task_ids: Sequence[int]) -> None:
    """Submit the jobs of tasks already stored (e.g. by ``server.store.tasks.insert_txn`` in
    the transaction that decided them); one lost here is re-submitted by the relay."""
    if task_ids:
        submit(ctx.gearman, [task_job(ctx.config.gearman.namespace, i) for i in task_ids])


def packed(payloads: Sequence[Any]) -> list[bytes]:
    """Task payloads as stored (msgpack)."""
    return [msgpack.packb(p, use_bin_type=True) for p in payloads]


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
    kind: TaskKind | None = None
    payload: Any = None
    try:
        kind = registry.kind(lease.kind)
        payload = msgpack.unpackb(lease.payload, raw=False)
        kind.run(ctx, payload)
    except Exception as e:
        error = e
    finally:
        heartbeat.kill()
    if isinstance(error, RetryTask) or (error is not None and outage(error)):
        # Asked to run again later, or Redis or PostgreSQL was unreachable: not a failure of
        # the task, so no attempt is counted (an outage must not use up a fan-out chunk's
        # attempts and lose its posts)
        later = max(0.0, error.delay) if isinstance(error, RetryTask) else OUTAGE_DELAY
        text = str(error) if isinstance(error, RetryTask) else f"{type(error).__name__}: {error}"
        store.finish(lease, text, later, count_attempt=False)
        log.log(logging.INFO if isinstance(error, RetryTask) else logging.WARNING,
                "task %d (%s) again in %.1fs: %s", task_id, lease.kind, later, error)
        metrics.TASKS.labels(lease.kind, "retry").inc()
        return "retry"
    if error is None:
        outcome = "done" if store.finish(lease) else "lost"
        if outcome == "lost":
            log.warning("task %d (%s) finished after its lease was lost", task_id, lease.kind)
    else:
        text = f"{type(error).__name__}: {error}"
        schedule = kind.schedule if kind is not None else default_schedule
        delay = None if isinstance(error, TaskRefused) else schedule(ctx.config, lease.attempt)
        if delay is not None and isinstance(error, RetryAfter):
            delay = max(delay, error.delay)
        final = delay is None
        if final and kind is not None and kind.give_up is not None:
            try:
                kind.give_up(ctx, payload, error)
            except Exception:
                log.exception("task %d (%s): giving up failed", task_id, lease.kind)
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
