"""The I/O seams of the core: shard routing, the event store, the geo index, push providers,
the blob store and the feed store.

Each is a ``zope.interface`` interface; implementations declare it with ``@implementer`` and a
test checks them with ``verifyObject``. Methods are synchronous: the service calls them from
its threadpool, workers call them directly under gevent.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from server.db import Database, Txn
    from server.domain.geo import GeoHit, GeoPoint, GeoQuery
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

    def replayed_txn(txn: Txn, shard: int, key: str) -> AppendResult | None:
        """The result of the append that used idempotency ``key`` in ``shard``, or None."""

    def stream_version_txn(txn: Txn, stream: str) -> int:
        """The current version of ``stream`` (0 when it has no events), inside ``txn``."""

    def read_stream(shard: int, stream: str, after_version: int = 0) -> list[RecordedEvent]:
        """The events of ``stream`` with versions above ``after_version``, in order."""

    def read_page(
        shard: int,
        after: Position,
        limit: int = 1000,
        types: Collection[str] | None = None,
        stop_at_unreadable: bool = False,
    ) -> Page:
        """Up to ``limit`` events of ``shard``'s log after ``after``, in log order.

        Only events below the snapshot's ``xmin`` are read, so no event can later appear
        behind the returned ``next`` position. ``types`` filters what is decoded and returned;
        ``next`` still passes over the events skipped. An event this release cannot decode
        raises ``UnreadableEvent``; with ``stop_at_unreadable`` the page instead ends before
        it and carries the error in ``Page.unreadable`` (consumers park such events).
        """

    def get(event_id: int) -> RecordedEvent | None:
        """The event with this id (its shard is in the id), or None."""

    def get_txn(txn: Txn, event_id: int) -> RecordedEvent | None:
        """``get`` inside the caller's transaction on the event's database."""

    def head(shard: int) -> Position | None:
        """The position of the newest committed event of ``shard``, or None if it has none."""


class GeoUnavailable(Exception):
    """The geo index's server cannot be reached now (refused, timed out, 502/503/504): an
    outage (``server.outages``), which a worker waits out, not a failure of the event. A
    server refusing what it was sent raises its client's own error instead."""


class IGeoIndex(Interface):
    """Where media were posted, for radius search (``plugins/geo``: PostGIS, or Solr to scale out).

    **Namespaces.** An index holds namespaces (generations): independent sets of points, of
    which exactly one is *live*; a fresh index has the live namespace ``main``. An object
    bound to a namespace (from ``open``/``create``) reads and writes that one; the object
    ``plugins.geo.open_index(config)`` returns is bound to none and reads and writes whichever
    namespace is live at the time of each call. A rebuild (``replay``) creates a namespace,
    fills it, and ``swap``s it live in one atomic step: searches see the old namespace or the
    new one, never a mix. The caller keeps writers of the live namespace away while swapping
    (the replay holds the geo consumer's checkpoints), so no write lands in the old one after.

    **Visibility.** A point is found by a search if it is not hidden, or if its owner is the
    viewer or one of ``visible_owners``: private accounts' media are not found by strangers.

    **Durability and freshness.** Writes are idempotent: applying the same call twice changes
    nothing, so a consumer may re-apply a batch after a crash. Removals, visibility changes,
    swaps and drops are visible to searches when the call returns; new points within the
    backend's commit delay (PostGIS: at once; Solr: ``geo.solr_commit_within_ms``), or at once
    after ``refresh()``.

    Methods are synchronous and thread-safe: the service calls them from its threadpool,
    workers directly under gevent. Backend failures propagate as the backend's errors
    (``psycopg2.Error``, ``pysolr.SolrError``); ``GeoValueError`` and ``NamespaceError``
    (``server.domain.geo``) are raised for bad arguments.
    """

    namespace = Attribute(
        "The namespace this object reads and writes, or None for whichever is live at each call."
    )

    def upsert(points: Iterable[GeoPoint]) -> None:
        """Insert the points, replacing any point with the same media id (all or none)."""

    def bulk_load(
        points: Iterable[GeoPoint], progress: Callable[[int], None] | None = None
    ) -> int:
        """Upsert a large stream of points as fast as the backend allows (a replay filling a
        fresh namespace), in chunks: ``progress(n)`` is called with the running total after
        each chunk. Returns how many points were read. Not atomic as a whole; ends with the
        points searchable and the backend's statistics refreshed."""

    def remove(media_ids: Iterable[int]) -> None:
        """Remove the points of these media; ids not in the index are ignored."""

    def set_owner_hidden(owner_id: int, hidden: bool) -> None:
        """Hide (the account went private) or show every point of ``owner_id``.

        Points added later carry their own ``hidden`` flag: the caller sets it from the
        owner's privacy at that time.
        """

    def search(
        query: GeoQuery, viewer_id: int | None = None, visible_owners: Collection[int] = ()
    ) -> list[GeoHit]:
        """The points matching ``query`` (see ``GeoQuery``) that ``viewer_id`` may see.

        Hidden points are returned only when their owner is ``viewer_id`` or in
        ``visible_owners`` (the private accounts that accepted the viewer as a follower;
        passing every account the viewer follows is correct too). ``viewer_id=None`` is an
        anonymous search: public points only.
        """

    def count() -> int:
        """How many points the namespace holds (hidden ones included)."""

    def refresh() -> None:
        """Make every write that has returned visible to searches now."""

    def live() -> str:
        """The name of the live namespace."""

    def namespaces() -> list[str]:
        """Every namespace, live or not, sorted by name."""

    def create(namespace: str) -> IGeoIndex:
        """Create an empty namespace and return an index bound to it; NamespaceError if it
        exists. It is not live until ``swap``."""

    def open(namespace: str) -> IGeoIndex:
        """An index bound to an existing namespace; NamespaceError if there is none."""

    def swap(namespace: str) -> str:
        """Make ``namespace`` the live one, atomically; returns the previously live name.
        NamespaceError if it does not exist."""

    def drop(namespace: str) -> None:
        """Delete a namespace and its points; NamespaceError if it is live or missing."""

    def close() -> None:
        """Release connections (the index shares the caller's pools where it can)."""


class IPushProvider(Interface):
    """Delivers notifications through one push service (APNs, FCM), or only logs them.

    ``plugins.push.push_providers(config)`` builds one per platform. Call ``send`` from many
    greenlets at once (a gevent pool): the HTTP/2 providers multiplex concurrent sends as
    streams of one connection. Not from several OS threads at once: httpx's HTTP/2 client (FCM's)
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


class IBlobStore(Interface):
    """Content-addressed storage of uploaded media and their renditions
    (``plugins.blobs``: local files by default).

    A blob's name is ``<sha256 of its bytes>.<ext>`` (``ext``: jpg, png, webp, mp4): the same
    bytes are stored once, and a name never changes meaning, so blobs are served with
    year-long cache headers. Writes are atomic and durable (a temporary file, fsync,
    rename): a blob exists whole or not at all. Methods are synchronous and thread-safe.
    """

    def writer() -> BlobWriter:
        """A temporary blob being written (``write``), then ``commit(ext)`` or ``discard()``."""

    def put(data: bytes, ext: str) -> str:
        """Store ``data`` durably; returns its name."""

    def path(name: str) -> Path | None:
        """The local file of blob ``name`` to serve or read, or None if ``name`` is not a
        blob name (anything else: a traversal attempt) or no such blob exists."""

    def delete(name: str, older_than_s: float) -> bool:
        """Remove a blob (garbage collection) unless it was written or re-stored less than
        ``older_than_s`` seconds ago, as an upload re-using its bytes may have done since
        the blob was listed; a re-store racing the removal either keeps the blob or stores
        it again. Returns whether it was removed."""

    def listing(older_than_s: float) -> Iterator[str]:
        """Names of blobs last written or re-stored more than ``older_than_s`` seconds ago
        (candidates for garbage collection)."""

    def remove_leftovers() -> int:
        """Remove the temporary files of writes that crashed; returns how many."""


class BlobWriter(Interface):
    """A blob being written: bytes go to a temporary file while their sha256 is computed."""

    size = Attribute("Bytes written so far.")
    file = Attribute("The temporary file's path (for probing before commit).")

    def write(data: bytes) -> None:
        """Append bytes."""

    def commit(ext: str) -> str:
        """fsync and move the file to its content address (or drop it when those bytes are
        stored already, refreshing that blob's time); returns the name."""

    def discard() -> None:
        """Remove the temporary file (nothing is stored)."""

    def stream() -> BinaryIO:
        """The written bytes, from the start, for reading (before commit)."""


class IFeedStore(Interface):
    """Home feeds and users' recent media: ids, newest first, capped; a projection that can
    be lost and is rebuilt from PostgreSQL (``server/store/feeds.py`` over Redis).

    A page says whether its set is complete: an incomplete one (lost, then partly refilled
    by pushes) is rebuilt by its reader, who first takes the rebuild lease.
    """

    def push(media_id: int, users: Sequence[int]) -> None:
        """Add a medium to each user's feed (trimmed to the feed size)."""

    def merge(user: int, media_ids: Iterable[int], complete: bool = False) -> None:
        """Add media to one feed; ``complete`` marks the feed rebuilt."""

    def remove(media_ids: Sequence[int], users: Sequence[int]) -> None:
        """Remove media from each user's feed."""

    def add_own(owner: int, media_id: int) -> None:
        """Add a ready medium to its owner's recent media."""

    def remove_own(owner: int, media_id: int) -> None:
        """Remove a medium from its owner's recent media."""

    def set_own(owner: int, media_ids: Iterable[int]) -> None:
        """Fill an owner's recent media (rebuilt from PostgreSQL) and mark it complete."""

    def mark_pulled(owner: int) -> None:
        """Remember that ``owner``'s posts are merged at read time, not pushed."""

    def page(user: int, max_id: int | None, min_id: int | None, limit: int
             ) -> tuple[list[int], bool]:
        """Up to ``limit`` ids of the feed between the bounds (exclusive), newest first, and
        whether the feed is complete."""

    def own(owner: int, max_id: int | None, min_id: int | None, limit: int
            ) -> tuple[list[int], bool]:
        """The same for an owner's recent media."""

    def owns(owners: Sequence[int], max_id: int | None, min_id: int | None, limit: int
             ) -> dict[int, tuple[list[int], bool]]:
        """``own`` for several owners in one round trip."""

    def pulled(owners: Sequence[int]) -> set[int]:
        """Which of ``owners`` are merged at read time."""

    def take_rebuild(user: int, lease_ms: int) -> bool:
        """Take the lease to rebuild ``user``'s feed; False if someone holds it."""

    def drop_rebuild(user: int) -> None:
        """Release the rebuild lease."""
