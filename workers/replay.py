"""The replay engine behind ``shutterlog replay``: rebuild projections from the log into fresh
namespaces while the live system runs, then swap them in atomically; or verify them.

A run, per projection (README, "Replay"):

1. **Plan.** Take the projection's replay lock (one replay of a projection at a time). An
   unfinished run of the same projection, shards and bound whose namespace still exists is
   **resumed** from its checkpoints (``replay_checkpoints``); otherwise any leftovers are
   dropped and a new run **starts over** from the origin of the log.
2. **Build.** Read each logical shard's log once for every projection of the command, with
   ``read_page`` (the one ordering contract), and hand each projection's build the events it
   wants; save the run's positions after every page. Live consumers keep running.
3. **Swap.** Take the live consumer's session advisory lock for every shard (no worker
   advances it meanwhile), catch up to the head, swap the namespace in atomically (MULTI/EXEC
   of RENAMEs for Redis, one transaction per database for tables, the geo index's catalog
   swap), set the live checkpoints to the run's positions, release the locks and kick the
   consumer. A crash anywhere before the swap leaves the live projection untouched; a crash
   between the swap and the checkpoints only makes the live consumer apply again events the
   rebuild already had (handlers are idempotent).

``--verify`` builds the same way into a scratch namespace, then under the live locks brings
the live consumer to the head (as a worker would) and the scratch build to exactly the same
positions, compares, and drops the scratch namespace.

Plain synchronous code (no gevent): the CLI runs it in an ordinary process.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from server.db import Database, Txn
from server.domain.checkpoints import lock_key
from server.domain.ids import MAX_ID
from server.domain.log import ORIGIN, Position, RecordedEvent
from server.domain.replay import Difference, Progress, ReplayUsageError, Spec
from server.store import consumers as cstore
from server.store import replay as store
from workers.consumers import Consumer, Consumers
from workers.context import WorkerContext
from workers.jobs import advance_job, submit
from workers.rebuilds import Build, FollowersBuild, build_for

log = logging.getLogger(__name__)

#: Events per page read by a replay (larger than a worker's batches: throughput over latency).
PAGE = 5000
#: Shards built at once.
PARALLEL = 4
#: Longest pause while an older open transaction hides the events that follow (seconds).
MAX_BLOCKED_PAUSE = 0.2


def _wanted(events: list[RecordedEvent], after: Position, mine: frozenset[str],
            read: frozenset[str]) -> list[RecordedEvent]:
    """The events of a page (in log order) after ``after`` of the types ``mine`` (a build's),
    the page having been read for the types ``read``."""
    k = 0
    while k < len(events) and events[k].position <= after:
        k += 1
    if mine >= read:
        return events[k:] if k else events
    return [e for e in events[k:] if e.type in mine]


class Reporter(Protocol):
    """Where a run tells what it does (the CLI: a progress bar, plain lines or JSON)."""

    def say(self, message: str, **fields: object) -> None: ...

    def progress(self, progress: Progress) -> None: ...


class ReplayBusy(RuntimeError):
    """Another replay of the projection is running."""


@dataclass
class Item:
    """One projection of the command: its run, build and positions."""

    spec: Spec
    run: int
    build: Build
    resumed: bool
    positions: dict[int, Position]
    events: int = 0
    seconds: float = 0.0
    status: str = "building"
    message: str = ""
    differences: list[Difference] = field(default_factory=list)  # the first ``limit``
    found: int = 0  # differences found, all of them

    def summary(self) -> dict[str, object]:
        return {
            "projection": self.spec.name, "run": self.run,
            "started": "resumed" if self.resumed else "from the origin",
            "events": self.events, "seconds": round(self.seconds, 3),
            "events_per_second": round(self.events / self.seconds, 1) if self.seconds else 0,
            "status": self.status, "message": self.message,
            "differences_found": self.found,
            "differences": [d.as_dict() for d in self.differences],
        }


@dataclass(frozen=True)
class Request:
    """What the command asked for."""

    specs: Sequence[Spec]
    shards: Sequence[int] | None = None
    until_id: int | None = None
    verify: bool = False
    dry_run: bool = False
    fresh: bool = False
    limit: int = 100  # differences reported per projection


class Replayer:
    """Runs replay requests against one deployment (``ctx``: the live context)."""

    def __init__(self, ctx: WorkerContext, consumers: Consumers, reporter: Reporter,
                 lock_timeout: float = 60.0) -> None:
        self.ctx = ctx
        self.consumers = consumers
        self.reporter = reporter
        self.lock_timeout = lock_timeout
        self.router = ctx.router
        self.control = store.control_database(ctx.router.databases())
        self.sessions = {db.dsn: Database(db.dsn, pool_size=4, name="shutterlog-replay",
                                          autocommit=True) for db in ctx.router.databases()}
        #: Reads the next page of the log while the current one is applied.
        self._reader = ThreadPoolExecutor(PARALLEL, thread_name_prefix="replay-read")
        self._stopping = False
        self._counting = threading.Lock()

    def close(self) -> None:
        self._reader.shutdown()
        for db in self.sessions.values():
            db.close()

    # --- the command ----------------------------------------------------------------------

    def execute(self, request: Request) -> list[Item]:
        if request.verify and request.until_id is not None:
            raise ReplayUsageError("--verify compares with the live head: --until does not apply")
        if request.until_id is not None and not 0 < request.until_id <= MAX_ID:
            raise ReplayUsageError(f"--until {request.until_id} is not an event id (ids run "
                                   f"from 1 to {MAX_ID})")
        for spec in request.specs:
            self._check_consumer(spec)
            if request.until_id is not None and spec.consumer is None:
                raise ReplayUsageError(
                    f"--until: {spec.name} has no live consumer to apply the events after it "
                    "once swapped; replay it whole")
        kind = "verify" if request.verify else "replay"
        with contextlib.ExitStack() as stack:
            lock_conn = stack.enter_context(self.sessions[self.control.dsn].lease())
            cur = stack.enter_context(lock_conn.cursor())
            # Session locks outlive a transaction: released before the connection goes back.
            stack.callback(store.unlock_all_txn, Txn(cur))
            for spec in request.specs:
                if not store.try_lock_projection_txn(Txn(cur), spec.name):
                    raise ReplayBusy(f"another replay of {spec.name} is running")
            items = [self._plan(spec, kind, request) for spec in request.specs]
            try:
                shards = self._shards(request)
                total = self._total(items, shards)
                for item in items:
                    self.reporter.say(
                        f"{kind} {item.spec.name}: run {item.run} "
                        + (f"resumes where it stopped ({item.events:,} events already applied)"
                           if item.resumed else "starts from the origin of the log"),
                        projection=item.spec.name, run=item.run, resumed=item.resumed)
                if request.dry_run:
                    self.reporter.say(f"dry run: about {total:,} events to apply; nothing "
                                      "changed", events=total)
                    for item in items:
                        item.status = "dry-run"
                    return items
                self._build(items, shards, request.until_id, total)
                for item in items:
                    started = time.monotonic()
                    if request.verify:
                        self._verify(item, shards, request.limit)
                    else:
                        self._swap(item, shards, request.until_id)
                    item.seconds += time.monotonic() - started
                    self.reporter.say(f"{item.spec.name}: {item.status}: {item.message}",
                                      projection=item.spec.name, status=item.status)
            finally:
                for item in items:
                    item.build.close()
        return items

    def _check_consumer(self, spec: Spec) -> None:
        if spec.consumer is None:
            return
        c = self.consumers.get(spec.consumer)
        # The realtime history is rebuilt with publishing off; no other side effect runs.
        if c.side_effect and spec.name != "realtime":
            raise ReplayUsageError(f"{spec.name}: consumer {c.name} is a side effect: never "
                                   "replayed")

    def _shards(self, request: Request) -> list[int]:
        return list(request.shards) if request.shards is not None else list(
            range(self.router.count))

    # --- planning: resume or start over -------------------------------------------------------

    def _plan(self, spec: Spec, kind: str, request: Request) -> Item:
        consumer = self.consumers.get(spec.consumer) if spec.consumer else None
        shards = request.shards if spec.by_shard else None
        found = self.control.run_interaction("open_run", store.open_run_txn, kind, spec.name,
                                             shards, request.until_id)
        if found is not None and not request.fresh:
            build = self._build_of(spec, found.id, consumer, shards)
            if build.exists():
                positions = self.control.run_interaction("run_positions",
                                                         store.run_positions_txn, found.id)
                return Item(spec, found.id, build, True, positions, found.events)
            build.close()
        if request.dry_run:
            return Item(spec, 0, self._build_of(spec, 0, consumer, shards), False, {})
        for old in self.control.run_interaction("old_runs", store.other_open_runs_txn,
                                                kind, spec.name):
            leftover = self._build_of(spec, old.id, consumer, old.shards)
            with contextlib.suppress(Exception):  # a namespace already gone is fine
                leftover.drop()
            leftover.close()
            self.control.run_interaction("abandon", store.finish_run_txn, old.id, "abandoned")
        run = self.control.run_interaction("new_run", store.new_run_txn, kind, spec.name,
                                           shards, request.until_id)
        build = self._build_of(spec, run.id, consumer, shards)
        build.create()
        return Item(spec, run.id, build, False, {})

    def _build_of(self, spec: Spec, run: int, consumer: Consumer | None,
                  shards: Sequence[int] | None) -> Build:
        return build_for(spec, run, self.ctx, consumer, shards)

    def _total(self, items: list[Item], shards: list[int]) -> int:
        """The events the build reads and counts: those of each of its passes over a shard."""
        total = 0
        for s in shards:
            for mine, bound in self._passes(items, s):
                after = min(i.positions.get(s, ORIGIN) for i in mine)
                types = frozenset().union(*(i.build.types for i in mine))
                total += self.router.database(s).run_interaction(
                    "count_events", store.count_after_txn, s, after, types, bound)
        return total

    def _passes(self, items: list[Item], shard: int
                ) -> list[tuple[list[Item], Position | None]]:
        """How a build reads ``shard``: one pass for every item but side effects, to the
        head; then one per side effect, up to its live checkpoint (the bound: the live
        consumer has yet to publish what follows it)."""
        mine = [i for i in items if self._covers(i, shard)]
        plain = [i for i in mine if not self._side_effect(i)]
        passes: list[tuple[list[Item], Position | None]] = [(plain, None)] if plain else []
        for i in mine:
            if self._side_effect(i):
                assert i.spec.consumer is not None
                passes.append(([i], self._live_positions(i.spec.consumer, [shard])[shard]))
        return passes

    @staticmethod
    def _covers(item: Item, shard: int) -> bool:
        b = item.build
        return not isinstance(b, FollowersBuild) or b.only is None or shard in b.only

    # --- building ----------------------------------------------------------------------------

    def _build(self, items: list[Item], shards: list[int], until_id: int | None,
               total: int) -> None:
        """Every shard's log into the builds, ``PARALLEL`` shards at a time (shards are
        independent, as they are for the worker pool; one thread decodes while others wait
        on PostgreSQL or Redis)."""
        started = time.monotonic()
        done = [0]
        lock = threading.Lock()

        def tick(n: int) -> None:
            with lock:
                done[0] += n
                self.reporter.progress(Progress(done[0], max(total, done[0]),
                                                time.monotonic() - started))

        def shard(s: int) -> None:
            for mine, bound in self._passes(items, s):
                self._advance(mine, s, bound=bound, until_id=until_id, wait=False, tick=tick)

        with ThreadPoolExecutor(PARALLEL, thread_name_prefix="replay-shard") as pool:
            try:
                for future in [pool.submit(shard, s) for s in shards]:
                    future.result()
            except BaseException:
                self._stopping = True  # the other shards stop at their next page
                raise
        for i in items:
            i.seconds += time.monotonic() - started
        tick(0)

    def _side_effect(self, item: Item) -> bool:
        return item.spec.consumer is not None and self.consumers.get(
            item.spec.consumer).side_effect

    def _advance(self, items: list[Item], shard: int, *, bound: Position | None = None,
                 until_id: int | None = None, wait: bool = True,
                 tick: Callable[[int], None] = lambda n: None) -> None:
        """Apply to every item's build the events of ``shard`` after its position, in log
        order, reading the log once: up to ``bound`` (a live checkpoint), or before the
        first event above ``until_id``, or to the head (``wait``: even past events an older
        open transaction hides for now; otherwise stop there, the swap catches up)."""
        types = frozenset().union(*(i.build.types for i in items))
        blocked = 0
        deadline = time.monotonic() + self.lock_timeout
        start = min(i.positions.get(shard, ORIGIN) for i in items)
        if bound is not None and start >= bound:
            return
        ahead = self._reader.submit(self.ctx.store.read_page_bulk, shard, start, PAGE, types)
        while True:
            page = ahead.result()
            if self._stopping:
                raise RuntimeError("replay interrupted")
            events, nxt, finished = page.events, page.next, not page.more
            if bound is not None:
                events = [e for e in events if e.position <= bound]
                if nxt >= bound:
                    nxt, finished = bound, True
            if until_id is not None:
                cut = next((k for k, e in enumerate(events) if e.id > until_id), None)
                if cut is not None:
                    events = events[:cut]
                    nxt = events[-1].position if events else start
                    finished = True
            if not finished and page.scanned:
                # Read the next page while this one is applied (PostgreSQL works meanwhile).
                ahead = self._reader.submit(self.ctx.store.read_page_bulk, shard, nxt, PAGE,
                                            types)
            for i in items:
                wanted = _wanted(events, i.positions.get(shard, ORIGIN), i.build.types, types)
                if wanted:
                    i.build.apply(wanted)
                    with self._counting:
                        i.events += len(wanted)
            moved = {i.run: max(i.positions.get(shard, ORIGIN), nxt) for i in items}
            counts = {i.run: i.events for i in items}
            self.control.run_interaction("save_run", store.save_run_txn, shard, moved, counts)
            for i in items:
                i.positions[shard] = moved[i.run]
            tick(len(events))
            start = nxt
            if finished:
                return
            if page.scanned == 0:  # an older transaction is still open: not safe to read yet
                if not wait:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"shard {shard}: an open transaction kept the log's "
                                       f"head hidden for {self.lock_timeout:.0f} s")
                blocked += 1
                time.sleep(min(MAX_BLOCKED_PAUSE, 0.001 * 2 ** min(blocked, 10)))
                ahead = self._reader.submit(self.ctx.store.read_page_bulk, shard, nxt, PAGE,
                                            types)
            else:
                blocked = 0

    # --- the live consumers' locks --------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, consumer: str, shards: list[int]) -> Iterator[None]:
        """Hold ``consumer``'s advisory locks for ``shards`` (waiting for running batches)."""
        with contextlib.ExitStack() as stack:
            by_db: dict[str, list[int]] = {}
            for s in shards:
                by_db.setdefault(self.router.database(s).dsn, []).append(s)
            for dsn, mine in by_db.items():
                conn = stack.enter_context(self.sessions[dsn].lease())
                cur = stack.enter_context(conn.cursor())
                txn = Txn(cur)
                for s in sorted(mine):
                    store.lock_live_txn(txn, lock_key(consumer, s), int(self.lock_timeout * 1000))
                    stack.callback(txn.execute, "SELECT pg_advisory_unlock(%s)",
                                   (lock_key(consumer, s),))
            yield
        self._kick(consumer, shards)

    def _kick(self, consumer: str, shards: list[int]) -> None:
        """Workers found the pairs busy while we held them: kick them (the relay's scan
        would, a little later)."""
        try:
            submit(self.ctx.gearman, [advance_job(self.ctx.config.gearman.namespace, consumer,
                                                  s) for s in shards])
        except Exception as e:  # no gearmand reachable: the relay's next scan kicks them
            log.warning("could not kick %s after the replay: %s", consumer, e)

    def _live_positions(self, consumer: str, shards: list[int]) -> dict[int, Position]:
        out: dict[int, Position] = {}
        for db in self.router.databases():
            mine = [s for s in shards if self.router.database(s) is db]
            if mine:
                out.update(db.run_interaction("live_positions", store.live_positions_txn,
                                              consumer, mine))
        return out

    def _set_live(self, consumer: str, positions: dict[int, Position]) -> None:
        for db in self.router.databases():
            mine = {s: p for s, p in positions.items() if self.router.database(s) is db}
            if mine:
                db.run_interaction("set_checkpoints", store.set_live_checkpoints_txn,
                                   consumer, mine)

    def _advance_live(self, consumer: str, shard: int) -> Position:
        """Bring the live consumer to the head of ``shard`` as a worker would (the caller
        holds its lock); returns where it stands. A stopped pair is left where it stopped."""
        c = self.consumers.get(consumer)
        db = self.router.database(shard)
        cp = db.run_interaction("checkpoint", cstore.checkpoint_txn, consumer, shard,
                                c.from_head)
        position = cp.position
        if cp.stopped:
            return position
        deadline = time.monotonic() + self.lock_timeout
        while True:
            page = self.ctx.store.read_page(shard, position, c.batch_size, c.types)
            if page.events:
                c.handle(self.ctx, page.events)
            if page.next != position:
                position = page.next
                db.run_interaction("save_checkpoint", store.set_live_checkpoints_txn, consumer,
                                   {shard: position})
            if not page.more:
                return position
            if page.scanned == 0:  # an older open transaction hides what follows, for now
                if time.monotonic() > deadline:
                    raise TimeoutError(f"shard {shard}: an open transaction kept the log's "
                                       f"head hidden for {self.lock_timeout:.0f} s")
                time.sleep(0.01)

    # --- swap and verify -------------------------------------------------------------------

    def _swap(self, item: Item, shards: list[int], until_id: int | None) -> None:
        b = item.build
        if isinstance(b, FollowersBuild):
            mine = [s for s in shards if self._covers(item, s)]
            item.message = b.swap({s: item.positions.get(s, ORIGIN) for s in mine})
        else:
            assert item.spec.consumer is not None
            consumer = self.consumers.get(item.spec.consumer)
            with self._locked(consumer.name, shards):
                if consumer.side_effect:
                    # Never past the live checkpoint: the live consumer still publishes the
                    # events after it, and the rebuilt histories must not have them yet.
                    live = self._live_positions(consumer.name, shards)
                    for s in shards:
                        self._advance([item], s, bound=live[s], until_id=until_id)
                else:
                    for s in shards:
                        self._advance([item], s, until_id=until_id)
                b.finish()
                item.message = b.swap(item.positions)
                if not consumer.side_effect:
                    self._set_live(consumer.name, {s: item.positions.get(s, ORIGIN)
                                                   for s in shards})
        item.status = "swapped"
        self.control.run_interaction("finish_run", store.finish_run_txn, item.run, "swapped")

    def _verify(self, item: Item, shards: list[int], limit: int) -> None:
        b = item.build
        if isinstance(b, FollowersBuild):
            mine = [s for s in shards if self._covers(item, s)]
            found = b.compare({s: item.positions.get(s, ORIGIN) for s in mine})
        else:
            assert item.spec.consumer is not None
            consumer = self.consumers.get(item.spec.consumer)
            with self._locked(consumer.name, shards):
                for s in shards:
                    # Both at the same positions, read at about the same time (handlers
                    # read current rows): the live consumer advanced as a worker would, the
                    # scratch build up to exactly there. A side effect is never advanced.
                    live = (self._live_positions(consumer.name, [s])[s] if consumer.side_effect
                            else self._advance_live(consumer.name, s))
                    self._advance([item], s, bound=live)
                found = b.compare(item.positions)
        b.drop()
        item.found, item.differences = len(found), found[:limit]
        item.status = "different" if found else "verified"
        shown = f" (the first {limit} shown)" if len(found) > limit else ""
        item.message = (f"{len(found)} difference(s){shown}" if found
                        else "the live projection equals the log's")
        self.control.run_interaction("finish_run", store.finish_run_txn, item.run, item.status)
