"""``/v1/locations`` and ``/v1/media/search``: places and media near a point (the geo index,
``IGeoIndex`` as ``ctx.geo``, and the locations projection, ``ctx.locations``).

Visibility: the index finds a private account's media only for the owner and the accounts
the caller follows (a private account's approved followers see its media everywhere else,
so they find them here too); every result is then hydrated and checked like any media read
(deleted, not ready, private and not followed, owner blocking the caller: dropped), and
media of accounts the caller blocks are dropped as well. The index is eventually consistent
(the ``geo_index`` consumer), the checks are not: a medium deleted or made private a moment
ago is never shown to a stranger, it may only leave a page short.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from klein import Klein

from server.api.endpoint import API, Call, Reply
from server.api.envelope import invalid, not_found
from server.api.media import COUNT_MEDIA, MAX_ID, MIN_ID, id_param
from server.api.mediaview import MEDIA_LIST, objects
from server.api.pagination import next_url
from server.api.params import Param
from server.context import ServiceContext
from server.db import Txn
from server.domain import geo
from server.domain.geo import GeoValueError
from server.domain.ids import shard_of
from server.domain.locations import Location, parse_name_query
from server.store import graph, places

LOCATION: dict[str, Any] = {
    "type": "object", "required": ["id", "name", "latitude", "longitude"],
    "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                   "latitude": {"type": "number"}, "longitude": {"type": "number"}},
}
LOCATION_ID = Param("location_id", where="path", required=True, pattern=r"^[0-9]{1,19}$",
                    description="a location id")
LAT = Param("lat", description="latitude in degrees, -90 to 90")
LNG = Param("lng", description="longitude in degrees, -180 to 180")
DISTANCE = Param("distance", description="radius in meters, above 0, at most 5,000 "
                 "(default 1,000)")
MIN_TS = Param("min_timestamp", description="media posted at or after this Unix time")
MAX_TS = Param("max_timestamp", description="media posted at or before this Unix time")
COUNT = Param("count", description="how many results, 1 to 100 (default 20)")


def location_json(loc: Location) -> dict[str, Any]:
    return {"id": str(loc.id), "name": loc.name, "latitude": loc.lat, "longitude": loc.lng}


def geo_params(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` of the geo domain; its GeoValueError as a 400 naming the parameter."""
    try:
        return fn(*args)
    except GeoValueError as e:
        raise invalid(str(e)) from None


def relations(call: Call) -> tuple[set[int], set[int]]:
    """(whom the caller follows, whom the caller blocks): one transaction on its shard."""
    def txn_fn(txn: Txn) -> tuple[set[int], set[int]]:
        return (set(graph.active_followees(txn, call.user_id)),
                set(graph.blocked_users(txn, call.user_id)))

    return call.ctx.router.database(shard_of(call.user_id)).run_interaction("relations", txn_fn)


def shown(call: Call, ids: list[int], follows: set[int], blocks: set[int]
          ) -> list[dict[str, Any]]:
    """The media objects of ``ids`` the caller may see, without those of accounts it blocks."""
    return [o for o in objects(call, ids, follows) if int(o["user"]["id"]) not in blocks]


def routes(app: Klein, ctx: ServiceContext) -> None:
    api = API(app, ctx)

    @api.endpoint(
        "GET", "/v1/media/search", "Media posted near a point", scope="public_content",
        tag="locations", data=MEDIA_LIST,
        params=(Param("lat", required=True, description=LAT.description),
                Param("lng", required=True, description=LNG.description),
                DISTANCE, MIN_TS, MAX_TS, COUNT,
                Param("order", enum=("time", "distance"), default="time",
                      description="newest first (default) or nearest first")),
        description="Media within `distance` meters (great-circle, on the sphere) of "
        "(lat, lng), optionally between two Unix times, newest first. A private account's "
        "media are found by the owner and its followers only; deleted media never.")
    def media_search(call: Call) -> Reply:
        p = call.params
        q = geo_params(geo.search_query, p["lat"], p["lng"], p["distance"], p["min_timestamp"],
                       p["max_timestamp"], p["count"], p["order"])
        follows, blocks = relations(call)
        # Ask for more than a page: hits the checks drop (stale, blocked) leave room.
        wider = replace(q, limit=min(geo.MAX_LIMIT, 2 * q.limit + 10))
        hits = ctx.geo.search(wider, call.user_id, follows)
        found = shown(call, [h.media_id for h in hits], follows, blocks)
        return Reply(found[:q.limit])

    @api.endpoint(
        "GET", "/v1/locations/search", "Locations near a point, or by name",
        scope="public_content", tag="locations", data={"type": "array", "items": LOCATION},
        params=(LAT, LNG, DISTANCE, COUNT,
                Param("q", max_length=100, description="the start of the place's name")),
        description="Give lat and lng (nearest first within distance), q (by name), or "
        "both (places near the point whose name starts with q).")
    def search_locations(call: Call) -> Reply:
        p = call.params
        count = geo_params(geo.parse_count, p["count"])
        prefix = geo_params(parse_name_query, p["q"]) if p["q"] is not None else None
        if p["lat"] is None and p["lng"] is None:
            if prefix is None:
                raise invalid("lat and lng, or q, are required")
            return Reply([location_json(x) for x in ctx.locations.named(prefix, count)])
        if p["lat"] is None or p["lng"] is None:
            raise invalid("lat and lng go together: give both or neither")
        lat = geo_params(geo.parse_latitude, p["lat"])
        lng = geo_params(geo.parse_longitude, p["lng"])
        radius = geo_params(geo.parse_distance, p["distance"])
        return Reply([location_json(x)
                      for x in ctx.locations.near(lat, lng, radius, count, prefix)])

    def location(call: Call) -> Location:
        found = ctx.locations.get(int(call.params["location_id"]))
        if found is None:
            raise not_found("this location does not exist")
        return found

    @api.endpoint("GET", "/v1/locations/{location_id}", "A location", scope="public_content",
                  tag="locations", params=(LOCATION_ID,), data=LOCATION)
    def get_location(call: Call) -> Reply:
        return Reply(location_json(location(call)))

    @api.endpoint(
        "GET", "/v1/locations/{location_id}/media/recent", "Recent media at a location",
        scope="public_content", tag="locations", data=MEDIA_LIST, paginated=True,
        params=(LOCATION_ID, COUNT_MEDIA, MAX_ID, MIN_ID, MIN_TS, MAX_TS),
        description="Newest first; pagination.next_max_id pages on. Media the caller may "
        "see only (a page may hold fewer than count).")
    def location_recent(call: Call) -> Reply:
        loc = location(call)
        p = call.params
        lo = geo_params(geo.parse_timestamp_ms, p["min_timestamp"], "min_timestamp")
        hi = geo_params(geo.parse_timestamp_ms, p["max_timestamp"], "max_timestamp", True)
        count = p["count"]
        ids = places.location_media(ctx.router, loc.id, id_param(call, "max_id"),
                                    id_param(call, "min_id"), lo, hi, count + 1)
        follows, blocks = relations(call)
        page = ids[:count]
        pagination: dict[str, Any] = {}
        if len(ids) > count and page:
            pagination = {"next_url": next_url(call, str(page[-1]), "max_id"),
                          "next_max_id": str(page[-1])}
        return Reply(shown(call, page, follows, blocks), pagination=pagination)
