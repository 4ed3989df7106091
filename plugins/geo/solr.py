"""The geo index in Apache Solr, through pysolr: the scale-out backend.

The core's schema ships in ``etc/solr/shutterlog-geo/conf`` (README, "Geo index"). One
document per point, ``id`` = ``NAMESPACE:MEDIA_ID``, with ``point`` a
``LatLonPointSpatialField`` (``"lat,lng"``):

- radius filter ``fq={!geofilt cache=false}`` with ``sfield=point``, ``pt=lat,lng`` and
  ``d`` in km as request parameters (not local params, so ``geodist()`` sees them too),
  newest first (``sort=created_ms desc,media_id desc``) or nearest first
  (``sort=geodist() asc,media_id asc``); the distance comes back as ``fl=dist:geodist()``,
  in km;
- the time range is ``fq=created_ms:[min TO max]``; visibility is ``fq=hidden:false`` for an
  anonymous viewer, else ``{!bool should=$vis_public should=$vis_owners}`` with
  ``vis_owners={!terms f=owner_id}...``, which has no clause limit;
- namespaces are the ``ns`` field; the live one is named by the catalog document ``_catalog``
  (``live``, ``namespaces``), read with real-time get (``/get``, which sees writes before
  any commit) and written whole under optimistic concurrency (``_version_``), so a swap is one
  atomic document update. Every search reads it first: two requests, no cache to go stale.

Commits: new points are sent with ``commitWithin`` (``geo.solr_commit_within_ms``; 0 means
a soft commit on every write), so a burst of posts costs one searcher reopen. Removals,
visibility changes, swaps and drops end with a soft commit: a deleted or newly private
medium must vanish from search when the call returns, and they are rare. Durability comes
from the update log and the configset's hard ``autoCommit``.

Visibility changes are atomic updates (``{"hidden": {"set": true}}``) of the owner's points,
found with a cursor after a soft commit (so points still waiting for their commitWithin are
found too), each guarded by ``_version_: 1`` (the document must exist): a point removed
meanwhile is not resurrected as a fragment. Re-indexing whole documents would need every
field read back; the atomic update sends one field.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pysolr
import requests

from zope.interface import implementer

from plugins.geo import chunks
from server.config import Config
from server.domain.geo import (
    DEFAULT_NAMESPACE,
    GeoHit,
    GeoPoint,
    GeoQuery,
    NamespaceError,
    parse_namespace,
)
from server.interfaces import GeoUnavailable, IGeoIndex

# pysolr logs every request at INFO with its URL, which carries the searched coordinates.
logging.getLogger("pysolr").setLevel(logging.WARNING)

CATALOG_ID = "_catalog"
#: Documents per update request of ``bulk_load`` and per cursor page of visibility changes.
BATCH = 5_000
_ATTEMPTS = 5  # optimistic-concurrency retries of catalog writes and visibility changes
#: What a Solr that cannot answer now raises inside pysolr, and the statuses it (or a proxy
#: in front of it) answers then.
_UNREACHABLE = (requests.ConnectionError, requests.Timeout)
_UNAVAILABLE_STATUSES = {502, 503, 504}
_STATUS = re.compile(r"Solr responded with an error \(HTTP (\d+)\)")


def _status(error: pysolr.SolrError) -> int | None:
    """The HTTP status of a Solr error answer (pysolr only puts it in the message)."""
    match = _STATUS.match(str(error))
    return int(match.group(1)) if match else None


def _conflict(error: pysolr.SolrError) -> bool:
    return _status(error) == 409


class _Solr(pysolr.Solr):
    """pysolr's client, raising ``GeoUnavailable`` when Solr cannot be reached or answers
    that it cannot serve now; a refusal (400 for a bad document, 409) stays a SolrError.
    pysolr wraps connection failures and timeouts in a bare SolrError (the requests error is
    its ``__context__``); every request goes through ``_send_request``, cursor pages too."""

    def _send_request(self, *args: Any, **kwargs: Any) -> str:
        try:
            return super()._send_request(*args, **kwargs)
        except pysolr.SolrError as e:
            if isinstance(e.__context__, _UNREACHABLE) or _status(e) in _UNAVAILABLE_STATUSES:
                raise GeoUnavailable(f"Solr is unavailable: {e}") from e
            raise


def solr_client(url: str, timeout_ms: int) -> pysolr.Solr:
    """A pysolr client for the core at ``url``; credentials in the URL become basic auth, so
    they are never logged with the URL. Solr unreachable raises ``GeoUnavailable``."""
    parts = urlsplit(url)
    auth = None
    if parts.username is not None:
        auth = (parts.username, parts.password or "")
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        url = urlunsplit(parts._replace(netloc=netloc))
    return _Solr(url.rstrip("/"), timeout=timeout_ms / 1000, auth=auth, always_commit=False)


def document(namespace: str, p: GeoPoint) -> dict[str, Any]:
    """The Solr document of point ``p`` in ``namespace``."""
    doc: dict[str, Any] = {
        "id": f"{namespace}:{p.media_id}",
        "ns": namespace,
        "media_id": p.media_id,
        "owner_id": p.owner_id,
        "created_ms": p.created_ms,
        "hidden": p.hidden,
        "point": f"{p.lat!r},{p.lng!r}",
    }
    if p.location_id is not None:
        doc["location_id"] = p.location_id
    return doc


def search_params(namespace: str, q: GeoQuery, owners: list[int]) -> dict[str, Any]:
    """The ``/select`` parameters of ``q`` (besides ``q`` itself and ``wt``)."""
    # Filters that differ from search to search are not cached (cache=false): they would only
    # push the namespace filter, which every search shares, out of the filter cache.
    fq = [f"ns:{namespace}", "{!geofilt cache=false}"]
    if q.min_ms is not None or q.max_ms is not None:
        lo = "*" if q.min_ms is None else q.min_ms
        hi = "*" if q.max_ms is None else q.max_ms
        fq.append(f"{{!cache=false}}created_ms:[{lo} TO {hi}]")
    params: dict[str, Any] = {}
    if owners:
        fq.append("{!bool cache=false should=$vis_public should=$vis_owners}")
        params["vis_public"] = "hidden:false"
        params["vis_owners"] = "{!terms f=owner_id}" + ",".join(map(str, owners))
    else:
        fq.append("hidden:false")
    sort = "geodist() asc,media_id asc" if q.order == "distance" else \
        "created_ms desc,media_id desc"
    return {
        "fq": fq, "sfield": "point", "pt": f"{q.lat!r},{q.lng!r}", "d": repr(q.radius_m / 1000),
        "sort": sort, "fl": "media_id,created_ms,dist:geodist()", "rows": q.limit, **params,
    }


@implementer(IGeoIndex)
class SolrGeoIndex:
    """``IGeoIndex`` over one Solr core (or SolrCloud collection) at ``solr.url``."""

    def __init__(
        self, solr: pysolr.Solr, *, namespace: str | None = None, commit_within_ms: int = 1000
    ) -> None:
        self.solr = solr
        self.namespace = None if namespace is None else parse_namespace(namespace)
        self.commit_within_ms = commit_within_ms

    @classmethod
    def from_config(cls, config: Config) -> SolrGeoIndex:
        return cls(
            solr_client(config.geo.solr_url, config.geo.timeout_ms),
            commit_within_ms=config.geo.solr_commit_within_ms,
        )

    def __repr__(self) -> str:
        return f"<SolrGeoIndex {self.solr.url} {self.namespace or '(live)'}>"

    def _ns(self) -> str:
        return self.namespace if self.namespace is not None else self.live()

    def _add(self, docs: list[dict[str, Any]], **kwargs: Any) -> None:
        if self.commit_within_ms == 0:
            self.solr.add(docs, softCommit=True, **kwargs)
        else:
            self.solr.add(docs, commitWithin=self.commit_within_ms, **kwargs)

    # --- points ----------------------------------------------------------------------------

    def upsert(self, points: Iterable[GeoPoint]) -> None:
        ns = self._ns()
        docs = [document(ns, p) for p in points]
        if docs:
            self._add(docs)

    def bulk_load(
        self, points: Iterable[GeoPoint], progress: Callable[[int], None] | None = None
    ) -> int:
        ns = self._ns()
        total = 0
        for chunk in chunks(points, BATCH):
            self._add([document(ns, p) for p in chunk])
            total += len(chunk)
            if progress is not None:
                progress(total)
        self.refresh()
        return total

    def remove(self, media_ids: Iterable[int]) -> None:
        ns = self._ns()
        ids = [f"{ns}:{m}" for m in media_ids]
        if ids:
            self.solr.delete(id=ids, softCommit=True)

    def set_owner_hidden(self, owner_id: int, hidden: bool) -> None:
        ns = self._ns()
        for attempt in range(1, _ATTEMPTS + 1):
            self.refresh()  # points still waiting for their commitWithin must be found too
            try:
                self._set_hidden(ns, owner_id, hidden)
                break
            except pysolr.SolrError as e:  # a point was removed meanwhile: look again
                if not _conflict(e) or attempt == _ATTEMPTS:
                    raise
        self.refresh()

    def _set_hidden(self, ns: str, owner_id: int, hidden: bool) -> None:
        results = self.solr.search(
            "*:*", fq=[f"ns:{ns}", f"owner_id:{owner_id}", f"hidden:{str(not hidden).lower()}"],
            fl="id", sort="id asc", rows=BATCH, cursorMark="*",
        )
        ids = (d["id"] for d in results)  # pysolr follows the cursor from page to page
        for page in chunks(ids, BATCH):
            updates = [{"id": i, "hidden": hidden, "_version_": 1} for i in page]
            self._add(updates, fieldUpdates={"hidden": "set"})

    def search(
        self, query: GeoQuery, viewer_id: int | None = None, visible_owners: Collection[int] = ()
    ) -> list[GeoHit]:
        owners = sorted({*visible_owners, *([viewer_id] if viewer_id is not None else [])})
        results = self.solr.search("*:*", **search_params(self._ns(), query, owners))
        return [
            GeoHit(int(d["media_id"]), float(d["dist"]) * 1000, int(d["created_ms"]))
            for d in results.docs
        ]

    def count(self) -> int:
        return int(self.solr.search("*:*", fq=f"ns:{self._ns()}", rows=0).hits)

    def refresh(self) -> None:
        self.solr.commit(softCommit=True)

    # --- namespaces ------------------------------------------------------------------------

    def _catalog(self) -> tuple[str, list[str], int]:
        """(live namespace, all namespaces, the catalog's _version_ or -1 if it has none)."""
        docs = self.solr.search("*:*", search_handler="get", ids=CATALOG_ID).docs
        if not docs:
            return DEFAULT_NAMESPACE, [DEFAULT_NAMESPACE], -1
        doc = docs[0]
        return str(doc["live"]), sorted(doc["namespaces"]), int(doc["_version_"])

    def _update_catalog(self, change: Callable[[str, list[str]], tuple[str, list[str]]]) -> None:
        """Rewrite the catalog as ``change(live, namespaces)`` says, retrying if it changed
        under us (``_version_`` must still be the one read; -1: must not exist yet)."""
        for attempt in range(1, _ATTEMPTS + 1):
            live, names, version = self._catalog()
            new_live, new_names = change(live, names)
            doc = {"id": CATALOG_ID, "live": new_live, "namespaces": sorted(new_names),
                   "_version_": version}
            try:
                self.solr.add([doc], softCommit=True)
                return
            except pysolr.SolrError as e:
                if not _conflict(e) or attempt == _ATTEMPTS:
                    raise

    def live(self) -> str:
        return self._catalog()[0]

    def namespaces(self) -> list[str]:
        return self._catalog()[1]

    def _bound(self, namespace: str) -> SolrGeoIndex:
        return SolrGeoIndex(self.solr, namespace=namespace, commit_within_ms=self.commit_within_ms)

    def create(self, namespace: str) -> SolrGeoIndex:
        name = parse_namespace(namespace)

        def add(live: str, names: list[str]) -> tuple[str, list[str]]:
            if name in names:
                raise NamespaceError(f"geo namespace {name!r} already exists")
            return live, [*names, name]

        self._update_catalog(add)
        return self._bound(name)

    def open(self, namespace: str) -> SolrGeoIndex:
        name = parse_namespace(namespace)
        if name not in self.namespaces():
            raise NamespaceError(f"no geo namespace {name!r}")
        return self._bound(name)

    def swap(self, namespace: str) -> str:
        name = parse_namespace(namespace)
        previous: list[str] = []

        def point_at(live: str, names: list[str]) -> tuple[str, list[str]]:
            if name not in names:
                raise NamespaceError(f"no geo namespace {name!r}")
            previous[:] = [live]
            return name, names

        self.refresh()  # everything written to the new namespace is searchable once it is live
        self._update_catalog(point_at)
        return previous[0]

    def drop(self, namespace: str) -> None:
        name = parse_namespace(namespace)
        live, names, _ = self._catalog()
        if name not in names:
            raise NamespaceError(f"no geo namespace {name!r}")
        if name == live:
            raise NamespaceError(f"geo namespace {name!r} is live: swap another in first")
        # Points first: a crash before the catalog write leaves a namespace to drop again,
        # never points that no namespace names.
        self.solr.delete(q=f"ns:{name}", softCommit=True)

        def forget(live: str, names: list[str]) -> tuple[str, list[str]]:
            if name == live:
                raise NamespaceError(f"geo namespace {name!r} is live: swap another in first")
            return live, [n for n in names if n != name]

        self._update_catalog(forget)

    def close(self) -> None:
        session = self.solr.session
        if session is not None:
            session.close()
