"""The I/O seams of the core: shard routing, the event store, push providers.

Each is a ``zope.interface`` interface; implementations declare it with ``@implementer`` and a
test checks them with ``verifyObject``. Methods are synchronous: the service calls them from
its threadpool, workers call them directly under gevent.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from server.db import Database, Txn
    from server.domain.log import (
        AppendRequest,
        AppendResult,
        NewEvent,
        Page,
        Position,
        RecordedEvent,
    )
    from server.domain.push import Notification, PushResult


class IShardRouter(Interface):
    """Maps logical shards to the physical databases that hold them."""

    count = Attribute("The number of logical shards.")

    def database(shard: int) -> Database:
        """The database holding ``shard``; ValueError for a shard outside the map."""

    def databases() -> list[Database]:
        """Every physical database, once each, in shard-map order."""

    def shards_of(database: Database) -> list[int]:
        """The logical shards that ``database`` holds."""

    def close() -> None:
        """Close every pool."""


class IEventStore(Interface):
    """The append-only event log, spread over the physical databases by logical shard.

    Events of a stream (an aggregate: a medium, a (medium, liker) pair, a user) live in one
    logical shard and carry consecutive versions starting at 1.
    """

    def append(
        shard: int,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: int = -1,
        idempotency_key: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> AppendResult:
        """Append ``events`` to ``stream`` in one transaction and return what was written.

        ``expected_version`` is the version the stream must be at (0: must not exist yet;
        -1: do not check). Raises ``StreamConflict`` when it is not. With an
        ``idempotency_key`` already used in this shard, nothing is written and the first
        append's result comes back with ``replayed=True``. Inline projections registered for
        the event types run in the same transaction; an exception from one rolls back all.
        """

    def append_txn(txn: Txn, requests: Sequence[AppendRequest]) -> list[AppendResult]:
        """Append inside the caller's transaction ``txn`` (all requests in its database).

        For handlers that read state, decide and append atomically. Same rules as ``append``.
        """

    def append_many(requests: Sequence[AppendRequest]) -> list[AppendResult]:
        """Append several streams' events, one transaction per physical database."""

    def read_stream(shard: int, stream: str, after_version: int = 0) -> list[RecordedEvent]:
        """The events of ``stream`` with versions above ``after_version``, in order."""

    def read_page(
        shard: int,
        after: Position,
        limit: int = 1000,
        types: Collection[str] | None = None,
    ) -> Page:
        """Up to ``limit`` events of ``shard``'s log after ``after``, in log order.

        Only events below the snapshot's ``xmin`` are read, so no event can later appear
        behind the returned ``next`` position. ``types`` filters what is decoded and returned;
        ``next`` still passes over the events skipped.
        """

    def get(event_id: int) -> RecordedEvent | None:
        """The event with this id (its shard is in the id), or None."""

    def head(shard: int) -> Position | None:
        """The position of the newest committed event of ``shard``, or None if it has none."""


class IPushProvider(Interface):
    """Delivers notifications through one push service (APNs, FCM), or only logs them.

    ``plugins.push.push_providers(config)`` builds one per platform. Call ``send`` from many
    greenlets at once (a gevent pool): the HTTP/2 providers multiplex concurrent sends as
    streams of one connection. Not from several OS threads at once: httpx's HTTP/2 client
    is not thread-safe (its HPACK encoder state gets corrupted; greenlets cannot be
    preempted inside it). Imports no event loop: the worker pool drives it under gevent.
    """

    name = Attribute("Short name for logs and metrics: 'apns', 'fcm' or 'log'.")

    def send(notification: Notification, attempt: int = 0) -> PushResult:
        """Send ``notification``; ``attempt`` is how many times it was tried before (0 the
        first time) and scales the backoff of a retry.

        Returns ``Delivered(provider_id)``, ``Unregistered(reason, at_ms)`` (the token is dead;
        ``at_ms``: when the service says it died), ``RetryLater(reason, delay)`` (429, 5xx,
        timeouts, lost connections: try again after ``delay`` seconds) or ``Failed(reason)``
        (do not retry: payload too large, credentials refused, a message the service
        rejects). The service's answers and network failures are results, never exceptions.
        Raises ``ValueError`` for a notification of a platform this provider does not serve.
        """

    def close() -> None:
        """Close the provider's connections; ``send`` must not be called afterwards."""
