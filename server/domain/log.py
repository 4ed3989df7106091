"""The shapes of the event log: positions, recorded events, pages, append results.

A position is ``(txid, id)``: the writing transaction's ``xid8`` and the event id. The log is
read in position order and only below the reader's snapshot ``xmin``, so a reader never skips an
event whose transaction commits late (DESIGN.md, "Tailing the log"). Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from server.domain.events import Event, EventSchemaError


class Position(NamedTuple):
    """A place in one shard's log; tuples compare in log order."""

    txid: int
    id: int

    def __str__(self) -> str:
        return f"{self.txid}.{self.id}"

    @classmethod
    def parse(cls, text: str) -> Position:
        """Read the ``txid.id`` form; ValueError if it is not one."""
        txid, sep, id_ = text.partition(".")
        if not sep or not txid.isdigit() or not id_.isdigit():
            raise ValueError(f"not a log position: {text!r}")
        return cls(int(txid), int(id_))


#: Before the first event of any shard.
ORIGIN = Position(0, 0)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append: the payload and who caused it."""

    data: Event
    actor: int | None = None


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as the log holds it."""

    id: int
    shard: int
    stream: str
    version: int
    type: str
    actor: int | None
    data: Event
    metadata: dict[str, Any]
    created_ms: int  # milliseconds since the Unix epoch
    txid: int

    @property
    def position(self) -> Position:
        """Where this event stands in its shard's log."""
        return Position(self.txid, self.id)


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append wrote: event ids and the stream's new version.

    ``replayed`` is true when an idempotency key matched an earlier append: nothing was
    written and the ids are the first append's.
    """

    stream: str
    shard: int
    event_ids: tuple[int, ...]
    version: int
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Page:
    """A page of one shard's log after a checkpoint.

    ``events`` holds the wanted events in log order; ``next`` is the position to read after
    next time (it passes over unwanted events too); ``more`` says events are known to wait
    beyond ``next``: either the page was full, or later events exist that are not yet safe to
    read because an older transaction is still open.

    ``unreadable`` is set only when the reader asked to stop at an event this release cannot
    decode (``stop_at_unreadable``): the page then ends just before that event, and this is
    the decoding error (``server.store.events.UnreadableEvent``, naming the event).
    """

    events: list[RecordedEvent]
    next: Position
    more: bool
    scanned: int = 0
    unreadable: EventSchemaError | None = None


class StreamConflict(Exception):
    """The stream's version is not the one the writer expected: someone else wrote first."""

    def __init__(self, stream: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream!r} is at version {actual}, expected {expected}")
        self.stream = stream
        self.expected = expected
        self.actual = actual


#: ``expected_version`` for an append that does not check the stream's version.
ANY_VERSION = -1


@dataclass(frozen=True, slots=True)
class AppendRequest:
    """One stream's append in a batch."""

    shard: int
    stream: str
    events: tuple[NewEvent, ...]
    expected_version: int = ANY_VERSION
    idempotency_key: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
