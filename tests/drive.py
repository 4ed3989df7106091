"""Drive consumers to the head of the log, the way the worker pool does, minus Gearman.

``drive(env, "followers", "blocks")`` reads every shard's log after each consumer's
checkpoint with ``store.read_page`` (the one ordering contract), hands each page of wanted
events to the handler, and advances the checkpoint; it repeats until a whole pass over every
consumer and shard finds nothing more, so consumers whose events feed each other (``blocks``
appends removals that ``followers`` applies) all settle. Checkpoints live in the driver, one
per (consumer, shard), like the worker pool's checkpoint rows.

Tests will move to the real worker pool once it is merged; this helper is the same loop.
"""

from __future__ import annotations

from server.domain.log import ORIGIN, Position
from tests.integration.conftest import Env
from workers import handlers
from workers.consumers import CONSUMERS
from workers.context import WorkerContext


class Driver:
    """Checkpoints per (consumer, shard) for one test's world."""

    def __init__(self, env: Env) -> None:
        handlers.load()
        self.env = env
        self.ctx = WorkerContext(env.config, env.router, env.store, env.redis)
        self.checkpoints: dict[tuple[str, int], Position] = {}

    def advance(self, name: str, shard: int) -> int:
        """Apply every event of ``shard`` the consumer has not applied; returns how many."""
        c = CONSUMERS.get(name)
        applied = 0
        while True:
            after = self.checkpoints.get((name, shard), ORIGIN)
            page = self.env.store.read_page(shard, after, c.batch_size, c.types)
            if page.events:
                c.handle(self.ctx, page.events)
                applied += len(page.events)
            self.checkpoints[(name, shard)] = page.next
            if page.next == after or not page.more:
                return applied

    def drive(self, *names: str) -> int:
        """Run the consumers until none has anything left; returns the events applied."""
        total = 0
        while True:
            applied = sum(self.advance(n, s) for n in names for s in range(self.env.router.count))
            total += applied
            if applied == 0:
                return total


def drive(env: Env, *names: str) -> int:
    """One-shot: drive ``names`` from the origin to the head (a repeat re-applies, which
    consumers must tolerate: that is what re-applying a batch after a crash looks like)."""
    return Driver(env).drive(*names)
