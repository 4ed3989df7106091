"""The log relay: ``shutterlog relay``. It watches the log and hands gearmand the work.

- One listener per physical database: ``LISTEN shutterlog_events`` (the events table's
  statement trigger notifies the shard and the event types appended, at commit). A
  notification marks its shard with those types; the kicker gathers marks for
  ``relay.debounce`` seconds, then submits "advance C on S" for every consumer C that wants
  one of the types and is not stopped on S, in one pipelined batch. A consumer is not woken
  for events it does not read.
- A scanner, every ``relay.poll_interval`` seconds: creates missing checkpoints, compares
  every checkpoint with its shard's head (lag in events of the consumer's types: metrics),
  re-kicks every running pair that has such events waiting (this heals kicks lost with a
  gearmand, notifications lost while reconnecting, and jobs of a worker killed mid-batch) or
  ``SWEEP_AFTER`` events of other types (so its checkpoint moves past them), and submits
  every task due (delayed ones) or past its deadline (lost ones), ``TASK_BATCH`` at a time.

The relay holds no state that matters: several may run at once (unique keys make duplicate
kicks coalesce or find the pair locked), and a restarted one starts with a full scan.
Connections to PostgreSQL and gearmand are retried with backoff.
"""

from __future__ import annotations

import logging
import signal

import gevent
import gevent.event
import gevent.select
import psycopg2

from server.config import Config
from server.db import Database
from server.domain.checkpoints import NOTIFY_CHANNEL, kick_due, parse_notification, retry_delay
from server.shards import ShardRouter
from server.store.consumers import ConsumerStore, PairState
from server.store.tasks import TaskStore
from workers import metrics
from workers.consumers import Consumers
from workers.gearman import GearmanClient
from workers.jobs import advance_job, submit, task_job

log = logging.getLogger(__name__)

#: Tasks taken per statement when the scan submits those due (it takes batches until done).
TASK_BATCH = 1000


class Relay:
    """Kicks the consumers of shards that have new events."""

    def __init__(self, config: Config, consumers: Consumers) -> None:
        self.config = config
        self.consumers = consumers.all()
        self.wanted = consumers.wanted()  # name -> event types: what the scan counts lag in
        self.router = ShardRouter(config.shard_map, pool_size=4, name="shutterlog-relay")
        self.checkpoints = ConsumerStore(self.router)
        self.tasks = TaskStore(self.router)
        self.gearman = GearmanClient(config.gearman.servers)
        self.namespace = config.gearman.namespace
        # Shards with new events -> the types appended (None: unknown, kick every consumer).
        self._dirty: dict[int, set[str] | None] = {}
        self._wake = gevent.event.Event()
        self._stopping = gevent.event.Event()
        self._stopped_pairs: set[tuple[str, int]] = set()

    def run(self) -> int:
        """Relay until SIGTERM/SIGINT; returns the exit status."""
        gevent.signal_handler(signal.SIGTERM, self._stopping.set)
        gevent.signal_handler(signal.SIGINT, self._stopping.set)
        greenlets = [gevent.spawn(self._listen, db) for db in self.router.databases()]
        greenlets += [gevent.spawn(self._kicker), gevent.spawn(self._scanner)]
        log.info("relay up: %d consumer(s) over %d shard(s) in %d database(s)",
                 len(self.consumers), self.router.count, len(self.router.databases()))
        self._stopping.wait()
        # A kill that lands inside psycopg2 comes back as a psycopg2 error, which the loops
        # catch: they also check _stopping, and we do not wait for them for long.
        gevent.killall(greenlets, timeout=5)
        self.gearman.close()
        self.router.close()
        log.info("relay stopped")
        return 0

    def mark(self, shard: int, types: frozenset[str] | None = None) -> None:
        """``shard`` has new events of ``types`` (None: of any type): kick the consumers that
        want them soon."""
        known = self._dirty.get(shard, set())
        self._dirty[shard] = None if known is None or types is None else known | types
        self._wake.set()

    # --- notifications ----------------------------------------------------------------------

    def _listen(self, db: Database) -> None:
        failures = 0
        while not self._stopping.is_set():
            conn = None
            try:
                conn = db.connect(autocommit=True)
                with conn.cursor() as cur:
                    cur.execute(f"LISTEN {NOTIFY_CHANNEL}")
                if failures:
                    log.info("listening to %s again", db.dsn_label)
                failures = 0
                for shard in self.router.shards_of(db):  # whatever was missed while away
                    self.mark(shard)
                while not self._stopping.is_set():
                    gevent.select.select([conn], [], [], self.config.relay.poll_interval)
                    conn.poll()
                    metrics.NOTIFICATIONS.inc(len(conn.notifies))
                    while conn.notifies:
                        self._notified(conn.notifies.pop().payload)
            except (psycopg2.Error, OSError) as e:
                failures += 1
                delay = retry_delay(failures, 0.2, 10.0)
                log.warning("LISTEN on %s failed: %s; reconnecting in %.1fs",
                            db.dsn_label, str(e).strip(), delay)
                gevent.sleep(delay)
            finally:
                if conn is not None:
                    conn.close()

    def _notified(self, payload: str) -> None:
        try:
            self.mark(*parse_notification(payload))
        except ValueError as e:
            log.warning("ignoring a notification on %s: %s", NOTIFY_CHANNEL, e)

    def _kicker(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait()
            if self.config.relay.debounce:
                gevent.sleep(self.config.relay.debounce)
            self._wake.clear()
            dirty, self._dirty = self._dirty, {}
            self._kick([(c.name, s) for s, types in sorted(dirty.items()) for c in self.consumers
                        if (types is None or not c.types.isdisjoint(types))
                        and (c.name, s) not in self._stopped_pairs])

    def _kick(self, pairs: list[tuple[str, int]]) -> None:
        if not pairs:
            return
        submit(self.gearman, [advance_job(self.namespace, c, s) for c, s in pairs])
        for c, _s in pairs:
            metrics.KICKS.labels(c).inc()

    # --- the periodic scan ------------------------------------------------------------------

    def _scanner(self) -> None:
        known = [(c.name, c.from_head) for c in self.consumers]
        ensured: set[str] = set()
        while not self._stopping.is_set():
            letters = dict.fromkeys((c.name for c in self.consumers), 0)
            for db in self.router.databases():
                try:
                    if db.dsn not in ensured:
                        self.checkpoints.ensure(db, known)
                        ensured.add(db.dsn)
                    self._scan(db)
                    for consumer, count in self.checkpoints.letter_counts(db).items():
                        letters[consumer] = letters.get(consumer, 0) + count
                except psycopg2.Error as e:
                    log.warning("scan of %s failed: %s", db.dsn_label, str(e).strip())
            for consumer, count in letters.items():
                metrics.DEAD_LETTERS.labels(consumer).set(count)
            gevent.sleep(self.config.relay.poll_interval)

    def _scan(self, db: Database) -> None:
        states = self.checkpoints.scan(db, self.wanted, only_wanted=True)
        lagging = []
        for state in states:
            cp = state.checkpoint
            pair = (cp.consumer, cp.shard)
            _export(state)
            if cp.stopped:
                self._stopped_pairs.add(pair)
                continue
            self._stopped_pairs.discard(pair)
            if kick_due(state.lag, state.scanned):
                lagging.append(pair)
        self._kick(lagging)
        while True:  # every task due, in batches: delayed tasks are released here too
            late = self.tasks.overdue(db, again_in=self.config.workers.task_lease,
                                      limit=TASK_BATCH)
            if late:
                log.info("submitting %d task(s) due or not done in time", len(late))
                metrics.TASKS_RESUBMITTED.inc(len(late))
                submit(self.gearman, [task_job(self.namespace, t) for t in late])
            if len(late) < TASK_BATCH:
                break


def _export(state: PairState) -> None:
    labels = (state.checkpoint.consumer, str(state.checkpoint.shard))
    metrics.LAG_EVENTS.labels(*labels).set(state.lag.events)
    metrics.LAG_SECONDS.labels(*labels).set(state.lag.seconds)
    metrics.STOPPED.labels(*labels).set(1 if state.checkpoint.stopped else 0)
