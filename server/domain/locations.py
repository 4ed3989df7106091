"""Locations: named places media were posted at. Pure: no I/O.

A location is created by the first upload that names a place (``location_name`` with
``lat``/``lng``) not already known within ``SAME_PLACE_M`` under the same name
(case-insensitively): that upload's id mints the location id, and later uploads naming the
same place nearby, or giving its ``location_id``, share it. The ``geo_index`` consumer
records the place (``server/store/places.py``) from ``MediaPosted`` of public accounts only:
a private account's uploads publish no place. A recorded place is never removed (other
media may name it); its name and coordinates are those of the medium with the smallest id
that named it, so every replay builds the same table.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.domain.geo import GeoValueError, in_radius

#: Two uploads naming the same place (case-insensitively) this close share a location.
SAME_PLACE_M = 250.0
NAME_MAX = 100


@dataclass(frozen=True, slots=True)
class Location:
    """A place: its id, name and coordinates, and the medium that first named it."""

    id: int
    name: str
    lat: float
    lng: float
    first_media_id: int


def same_place(known: Location, name: str, lat: float, lng: float) -> bool:
    """Whether an upload naming ``name`` at (lat, lng) is at the ``known`` place."""
    return known.name.casefold() == name.casefold() and \
        in_radius(known.lat, known.lng, SAME_PLACE_M, lat, lng)


def parse_name_query(value: str | None) -> str:
    """The ``q`` of a location search: a name prefix, 1 to NAME_MAX characters."""
    text = (value or "").strip()
    if not text or len(text) > NAME_MAX or any(ord(c) < 32 for c in text):
        raise GeoValueError("q", f"must be 1-{NAME_MAX} characters of a place's name")
    return text
