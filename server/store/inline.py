"""Inline projections: state written in the same transaction as the events it comes from.

Used where an invariant needs it (one like per (medium, user), the follower-side edge, the
medium row, counters). A feature module registers a hook for the event types it projects:

    @INLINE.on("MediaLiked", "MediaUnliked")
    def _likes(txn: Txn, events: list[RecordedEvent]) -> None: ...

The event store calls every hook once per append with that append's events of its types, in
log order, before the transaction commits; an exception from a hook rolls the append back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from server.db import Txn
from server.domain.log import RecordedEvent

Hook = Callable[[Txn, list[RecordedEvent]], None]


class InlineProjections:
    """Hooks by event type."""

    def __init__(self) -> None:
        self._hooks: list[tuple[frozenset[str], Hook]] = []

    def on(self, *types: str) -> Callable[[Hook], Hook]:
        """Decorator: run the hook for appends that contain events of ``types``."""

        def register(fn: Hook) -> Hook:
            self._hooks.append((frozenset(types), fn))
            return fn

        return register

    def apply(self, txn: Txn, events: Sequence[RecordedEvent]) -> None:
        """Run each hook on the events of its types (in the order given)."""
        if not events:
            return
        for types, hook in self._hooks:
            mine = [e for e in events if e.type in types]
            if mine:
                hook(txn, mine)


#: The hooks every feature module registers on.
INLINE = InlineProjections()
