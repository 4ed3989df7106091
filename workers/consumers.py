"""Consumers: named projections and side effects of the log, and their registry.

A consumer declares the event types it wants and a handler. The worker pool hands the handler
batches of one logical shard's events, in log order, and saves the consumer's checkpoint for
that shard after the handler returns. A handler must be idempotent (a batch may be applied
again after a crash between "apply" and "save checkpoint") and raises to report failure; the
pool retries with backoff and parks an event that keeps failing in the dead-letter table.

Feature modules declare their consumers with the decorator:

    @consumer("followers", "UserFollowed", "UserUnfollowed", batch_size=500)
    def followers(ctx: WorkerContext, events: list[RecordedEvent]) -> None: ...
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from server.domain.log import RecordedEvent

if TYPE_CHECKING:
    from workers.context import WorkerContext

Handler = Callable[["WorkerContext", list[RecordedEvent]], None]


class OnFailure(enum.Enum):
    """What a consumer does with an event that failed every retry."""

    SKIP = "skip"  # park it in dead letters and go on with the next events
    STOP = "stop"  # park it and stop this shard for this consumer until it is re-driven


@dataclass(frozen=True)
class Consumer:
    """A projection or side effect of the log."""

    name: str  # stable: checkpoints and Gearman unique keys use it
    types: frozenset[str]
    handle: Handler
    batch_size: int = 500
    on_failure: OnFailure = OnFailure.STOP
    from_head: bool = False  # a new consumer starts at the log's head, not its beginning
    side_effect: bool = False  # talks to the outside world: replay never runs it

    def wants(self, event_type: str) -> bool:
        return event_type in self.types


class Consumers:
    """The consumers of this release, by name."""

    def __init__(self) -> None:
        self._by_name: dict[str, Consumer] = {}

    def add(self, c: Consumer) -> Consumer:
        if c.name in self._by_name:
            raise ValueError(f"consumer {c.name!r} declared twice")
        if not c.name.replace("_", "").isalnum():
            raise ValueError(f"consumer name {c.name!r}: use letters, digits and underscores")
        self._by_name[c.name] = c
        return c

    def get(self, name: str) -> Consumer:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no consumer named {name!r} (known: {sorted(self._by_name)})") from None

    def all(self) -> list[Consumer]:
        return sorted(self._by_name.values(), key=lambda c: c.name)

    def wanted(self, *names: str) -> dict[str, frozenset[str]]:
        """The event types of each consumer (of ``names``, if given), by name: what lag is
        counted in."""
        return {n: self.get(n).types for n in names or self._by_name}


#: Every consumer of this release.
CONSUMERS = Consumers()


def consumer(
    name: str,
    *types: str,
    batch_size: int = 500,
    on_failure: OnFailure = OnFailure.STOP,
    from_head: bool = False,
    side_effect: bool = False,
    registry: Consumers = CONSUMERS,
) -> Callable[[Handler], Handler]:
    """Decorator: declare ``fn`` as the handler of consumer ``name`` for ``types``."""

    def register(fn: Handler) -> Handler:
        registry.add(Consumer(name, frozenset(types), fn, batch_size, on_failure, from_head,
                              side_effect))
        return fn

    return register
