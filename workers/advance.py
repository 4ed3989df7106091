"""The job "advance consumer C on shard S": read after the checkpoint, apply, save, repeat.

The worker sends WORK_COMPLETE as soon as it takes the job, so gearmand forgets the unique key
``C:S`` at once: a kick arriving while we work becomes a new job instead of coalescing into
ours and being lost. Exclusion comes from PostgreSQL instead: a session-level advisory lock
for (C, S), taken with ``pg_try_advisory_lock`` on a session connection of our own (not a row
lock in a long transaction: that would assign an xid and hold back every reader's snapshot
xmin for the whole batch). A job that finds the lock taken returns at once; the holder, after
releasing the lock, looks once more for events after its checkpoint, so a kick answered by
"busy" is never lost:

    lock held by A ... B's try-lock fails ... A unlocks ... A checks for new events

Anything committed before B's kick is visible to A's check. Between batches the job saves
its checkpoint (one short autocommit UPDATE). Taking the lock with reading the checkpoint,
and unlocking with that last check, are one round trip each (the PL/pgSQL functions
``consumer_lock`` and ``consumer_release`` of migration 0005, whose statements take their
own snapshots after the lock changed hands); so a job that applies one page costs four round
trips: lock, page, save, release. A page shorter than the batch does not look ahead for
more events: the release does. After ``job_budget`` seconds it re-submits
itself, so one busy pair cannot hold a worker slot forever.

Failures: a handler exception retries the batch with exponential backoff; then the events
are tried one by one, each up to ``event_attempts`` times; an event that still fails is
parked in ``dead_letters`` and the consumer's policy decides: SKIP goes on after it, STOP
stops the pair there (the relay no longer kicks it) until ``deadletters retry``. An event the
registry cannot decode is handled the same way.

Outages are not failures of an event: a handler that raises because Redis or PostgreSQL is
unreachable (``outage``) is called again with the same backoff while the job's budget lasts,
counting no attempt; then the job leaves the pair at its checkpoint (no look-again as it
unlocks) and the relay's next scan kicks it again, since its events are still waiting. So an
outage delays events, however long it lasts, and never parks them.
"""

from __future__ import annotations

import itertools
import logging
import time
import traceback
from collections.abc import Callable

import gevent

from server.config import WorkersConfig
from server.db import Database, Txn
from server.domain.checkpoints import Checkpoint, lock_key, retry_delay
from server.domain.log import Position, RecordedEvent
from server.outages import outage
from server.store import consumers as cstore
from server.store.consumers import ConsumerStore, DeadLetter
from server.store.events import UnreadableEvent
from workers import metrics
from workers.consumers import Consumer, Consumers, OnFailure
from workers.context import WorkerContext
from workers.jobs import advance_job, submit

log = logging.getLogger(__name__)

#: Longest pause while an older open transaction hides the events that follow (seconds).
MAX_BLOCKED_PAUSE = 0.2

class Abandoned(Exception):
    """The worker is stopping in the middle of retries: the batch is left for later."""


class Stopped(Exception):
    """The consumer stopped on this shard (STOP policy)."""


class Unavailable(Abandoned):
    """Redis or PostgreSQL stayed unreachable for the job's budget: the batch is left for
    the relay's next kick."""


class Advancer:
    """Runs advance jobs in one worker process; ``stopping()`` says the process is stopping."""

    def __init__(
        self,
        ctx: WorkerContext,
        consumers: Consumers,
        settings: WorkersConfig,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.ctx = ctx
        self.consumers = consumers
        self.settings = settings
        self.stopping = stopping
        self.namespace = ctx.config.gearman.namespace
        # Session connections (advisory locks, pages, checkpoints), apart from the handlers'
        # pools, so handlers never wait for a connection that a job holds.
        self._sessions = {
            db.dsn: Database(db.dsn, pool_size=settings.concurrency, name="shutterlog-advance",
                             autocommit=True)
            for db in ctx.router.databases()
        }

    def close(self) -> None:
        for db in self._sessions.values():
            db.close()

    def run(self, name: str, shard: int) -> None:
        """Advance consumer ``name`` on ``shard`` as far as the budget allows."""
        try:
            consumer = self.consumers.get(name)
        except KeyError:
            log.warning("advance job for unknown consumer %r (another release?): ignored", name)
            return
        key = lock_key(name, shard)
        with self._sessions[self.ctx.router.database(shard).dsn].lease() as conn:
            txn = Txn(conn.cursor())
            try:
                while True:
                    checkpoint = cstore.lock_txn(txn, key, name, shard, consumer.from_head)
                    if checkpoint is None:
                        metrics.BUSY.labels(name).inc()
                        return  # the holder checks for new events as it unlocks
                    unlocked = False
                    try:
                        position, more = self._advance_locked(txn, consumer, shard, checkpoint)
                        if not more and not self.stopping():
                            waiting = cstore.release_txn(txn, key, shard, position)
                            unlocked = True
                            if waiting:
                                continue  # appended while we held the lock: their kicks
                            return        # found it taken
                    except (Stopped, Abandoned):
                        return
                    finally:
                        if not unlocked:
                            cstore.unlock_txn(txn, key)
                    if more:
                        submit(self.ctx.gearman, [advance_job(self.namespace, name, shard)])
                    return
            finally:
                txn.cursor.close()

    def _advance_locked(self, txn: Txn, consumer: Consumer, shard: int,
                        checkpoint: Checkpoint) -> tuple[Position, bool]:
        """Apply pages until caught up (returns more=False) or out of budget (more=True)."""
        if checkpoint.stopped:
            raise Stopped
        position = checkpoint.position
        deadline = time.monotonic() + self.settings.job_budget
        blocked = 0
        while True:
            started = time.perf_counter()
            page = self.ctx.store.read_page_txn(txn, shard, position, consumer.batch_size,
                                                consumer.types, stop_at_unreadable=True,
                                                lookahead=False)
            if page.events:
                self._apply(txn, consumer, shard, position, page.events, deadline)
                metrics.BATCHES.labels(consumer.name).inc()
                metrics.EVENTS.labels(consumer.name).inc(len(page.events))
            nxt = page.next
            if isinstance(page.unreadable, UnreadableEvent):
                nxt = self._unreadable(txn, consumer, shard, nxt, page.unreadable)
            if nxt != position:
                cstore.save_txn(txn, consumer.name, shard, nxt)
                position = nxt
                metrics.BATCH_SECONDS.labels(consumer.name).observe(time.perf_counter() - started)
            if not page.more:
                return position, False
            if self.stopping() or time.monotonic() > deadline:
                return position, True
            if page.scanned == 0 and page.unreadable is None:
                # Events follow, but an older transaction is still open: not safe to read yet.
                blocked += 1
                gevent.sleep(min(MAX_BLOCKED_PAUSE, 0.001 * 2 ** min(blocked, 10)))
            else:
                blocked = 0

    # --- failures ---------------------------------------------------------------------------

    def _apply(self, txn: Txn, consumer: Consumer, shard: int, start: Position,
               events: list[RecordedEvent], deadline: float) -> None:
        """Apply a batch; retry, isolate, park; raise Stopped if the consumer stops here, and
        Unavailable if an outage outlasts the ``deadline``."""
        if len(events) > 1:
            for attempt in range(1, self.settings.batch_attempts + 1):
                try:
                    self._handle(consumer, shard, events, deadline)
                    return
                except Abandoned:  # stopping, or an outage outlasting the job
                    raise
                except Exception as e:
                    self._failed(txn, consumer, shard, e, attempt, len(events))
                    if attempt < self.settings.batch_attempts:
                        self._pause(attempt)
        for i, event in enumerate(events):  # one by one, to find the failing event(s)
            first_failed_ms = int(time.time() * 1000)
            for attempt in range(1, self.settings.event_attempts + 1):
                try:
                    self._handle(consumer, shard, [event], deadline)
                    break
                except Abandoned:  # stopping, or an outage outlasting the job
                    raise
                except Exception as e:
                    self._failed(txn, consumer, shard, e, attempt, 1)
                    if attempt == self.settings.event_attempts:
                        before = events[i - 1].position if i else start
                        self._park(txn, consumer, shard, event.id, event.position, before, e,
                                   first_failed_ms)
                    else:
                        self._pause(attempt)

    def _handle(self, consumer: Consumer, shard: int, events: list[RecordedEvent],
                deadline: float) -> None:
        """Call the handler; an outage is waited out with backoff, without counting an
        attempt, until ``deadline`` (monotonic), then raises Unavailable."""
        for attempt in itertools.count(1):
            try:
                consumer.handle(self.ctx, events)
                return
            except Exception as e:
                if not outage(e):
                    raise
                metrics.OUTAGES.labels(consumer.name).inc()
                delay = retry_delay(attempt, self.settings.retry_delay,
                                    self.settings.retry_max_delay)
                if time.monotonic() + delay > deadline:
                    log.warning("%s on shard %d: Redis or PostgreSQL unreachable (%d tries): "
                                "left at its checkpoint for the next kick: %s",
                                consumer.name, shard, attempt, _describe(e))
                    raise Unavailable from e
                self._pause(attempt)

    def _unreadable(self, txn: Txn, consumer: Consumer, shard: int, before: Position,
                    error: UnreadableEvent) -> Position:
        """An event that cannot be decoded: read it again with backoff (a newer worker of a
        rolling deploy may be needed), then park it. Returns the position to save."""
        event_id, position = error.event_id, error.position
        first_failed_ms = int(time.time() * 1000)
        for attempt in range(1, self.settings.event_attempts + 1):
            self._failed(txn, consumer, shard, error, attempt, 1)
            if attempt == self.settings.event_attempts:
                break
            self._pause(attempt)
            again = self.ctx.store.read_page_txn(txn, shard, before, 1, consumer.types,
                                                 stop_at_unreadable=True)
            if not isinstance(again.unreadable, UnreadableEvent):
                return before  # readable now: the next page applies it
            error = again.unreadable
        self._park(txn, consumer, shard, event_id, position, before, error, first_failed_ms)
        return position

    def _park(self, txn: Txn, consumer: Consumer, shard: int, event_id: int, position: Position,
              before: Position, error: Exception, first_failed_ms: int) -> None:
        """Park an event; STOP stops the pair just before it (raises Stopped)."""
        stop = consumer.on_failure is OnFailure.STOP
        letter = cstore.park_txn(
            txn, consumer.name, shard, event_id, position, _describe(error),
            "".join(traceback.format_exception(error)), self.settings.event_attempts,
            first_failed_ms, blocking=stop,
        )
        metrics.PARKED.labels(consumer.name).inc()
        if stop:
            cstore.stop_txn(txn, consumer.name, shard, before,
                            f"event {event_id} failed (dead letter {letter}): {_describe(error)}")
            log.error(
                "CONSUMER STOPPED: %s on shard %d stopped at event %d, parked as dead letter "
                "%d after %d attempts: %s. Fix the cause, then: shutterlog deadletters retry %d",
                consumer.name, shard, event_id, letter, self.settings.event_attempts,
                _describe(error), letter,
            )
            raise Stopped
        log.error("%s on shard %d: event %d parked as dead letter %d and skipped: %s",
                  consumer.name, shard, event_id, letter, _describe(error))

    def _failed(self, txn: Txn, consumer: Consumer, shard: int, error: Exception, attempt: int,
                size: int) -> None:
        metrics.FAILURES.labels(consumer.name).inc()
        log.warning("%s on shard %d: %d event(s) failed (attempt %d): %s",
                    consumer.name, shard, size, attempt, _describe(error))
        cstore.failed_txn(txn, consumer.name, shard, _describe(error))

    def _pause(self, attempt: int) -> None:
        """Back off before the next retry; a stopping worker abandons the batch instead."""
        deadline = time.monotonic() + retry_delay(attempt, self.settings.retry_delay,
                                                  self.settings.retry_max_delay)
        while time.monotonic() < deadline:
            if self.stopping():
                raise Abandoned
            gevent.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def resolve_letter(ctx: WorkerContext, consumers: Consumers, letter: DeadLetter,
                   apply: bool = True) -> bool:
    """Re-apply a dead letter's event through its consumer's handler (``apply``; raises what
    the handler or the decoding raises), or give it up. Then the letter is deleted, and a
    consumer stopped at it moves past it, resumes and is kicked; returns whether it resumed."""
    if apply:
        consumer = consumers.get(letter.consumer)
        event = ctx.store.get(letter.event_id)
        if event is None:
            raise LookupError(f"event {letter.event_id} of dead letter {letter.id} is gone")
        consumer.handle(ctx, [event])
    resumed = ConsumerStore(ctx.router).resolved(letter)
    if resumed:
        submit(ctx.gearman, [advance_job(ctx.config.gearman.namespace, letter.consumer,
                                         letter.shard)])
    return resumed
