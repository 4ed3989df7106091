"""The ``geo_index`` consumer: the geo index (``IGeoIndex``, ``ctx.geo``) and the locations
projection (``ctx.locations``), from media and privacy events.

For every medium an event of the batch touches, the consumer reads the medium's row and its
owner's privacy and makes the index agree with them: a ready medium with a place is indexed
(hidden while its owner is private), a deleted one is removed.
An ``AccountPrivacyChanged`` hides or shows the owner's points as the users row says now.
Reading the current rows makes the result the same however often, and in whatever batches,
the events are applied; a replay gives the consumer a context whose ``geo`` is bound to a
fresh namespace (and ``locations`` to a fresh table) and gets the same index.

Places named by public accounts' uploads are recorded as locations (``MediaPosted`` carries
the id the upload resolved or minted, see ``server/domain/locations.py``).
"""

from __future__ import annotations

from server.domain.accounts import AccountPrivacyChanged
from server.domain.geo import GeoPoint
from server.domain.locations import Location
from server.domain.log import RecordedEvent
from server.domain.media import MediaPosted, State
from server.store import accounts, places
from workers.consumers import consumer
from workers.context import WorkerContext


@consumer("geo_index", "MediaPosted", "MediaRendered", "MediaDeleted", "AccountPrivacyChanged",
          batch_size=500)
def geo_index(ctx: WorkerContext, events: list[RecordedEvent]) -> None:
    media_ids: set[int] = set()
    owners: set[int] = set()
    named: list[Location] = []
    for e in events:
        data = e.data
        if isinstance(data, AccountPrivacyChanged):
            owners.add(data.user_id)
            continue
        media_ids.add(data.media_id)  # type: ignore[attr-defined]
        if isinstance(data, MediaPosted) and data.location_id is not None \
                and data.visibility == "public" and data.lat is not None \
                and data.lng is not None:
            named.append(Location(data.location_id, data.location_name, data.lat, data.lng,
                                  data.media_id))
    ctx.locations.record(named)
    rows = places.placed(ctx.router, media_ids)
    private = {u.id: u.is_private for u in accounts.users_by_id(
        ctx.router, sorted(owners | {r.owner for r in rows.values()})).values()}
    for owner in sorted(owners):
        if owner in private:
            ctx.geo.set_owner_hidden(owner, private[owner])
    placed = [r for r in rows.values() if r.lat is not None and r.lng is not None]
    points = [GeoPoint(r.id, r.owner, r.lat, r.lng, r.created_ms, r.location_id,
                       private.get(r.owner, False))
              for r in placed if r.lat is not None and r.lng is not None
              and r.state is State.READY]
    # Only deleted media can be in the index and have to leave it: a processing medium was
    # never indexed (it is ready before it is indexed, and never goes back). Calls are
    # skipped when empty: each costs a round trip (and Solr a soft commit for removals).
    gone = sorted(r.id for r in placed if r.state is State.DELETED)
    if points:
        ctx.geo.upsert(points)
    if gone:
        ctx.geo.remove(gone)
