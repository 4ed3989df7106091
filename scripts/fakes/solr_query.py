"""The part of Solr's schema and query language the local Solr server understands.

Field types come from the configset's ``managed-schema.xml`` (the one we ship), so a document
with a field the schema lacks is refused as Solr refuses it. Queries: local params
(``{!type k=v k='v' k=$param}body``, with ``$param`` dereferencing and ``cache``/``cost``
accepted), the parsers ``lucene`` (only ``*:*``, ``field:value``, ``field:"value"`` and
``field:[lo TO hi]`` with ``*`` for an open end), ``term``, ``terms``, ``bool`` and
``geofilt``; sorts on fields and ``geodist()``; ``fl`` with fields, ``*`` and
``alias:geodist()``. Anything else is a 400 that names what is not supported, never a silent
approximation.

Distances are Lucene's: points are quantized as ``LatLonPoint`` encodes them (32 bits per
coordinate, under 1 cm), and measured with the haversine formula on the sphere of radius
6,371,008.7714 m (``GeoUtils.EARTH_MEAN_RADIUS_METERS``), written here in Lucene's own form.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.domain.geo import bounding_boxes, within

EARTH_MEAN_RADIUS_M = 6_371_008.7714
_LAT_DECODE = 180.0 / (1 << 32)
_LON_DECODE = 360.0 / (1 << 32)

Doc = dict[str, Any]
Params = Mapping[str, list[str]]
Filter = Callable[[Doc], bool]

_KINDS = {
    "solr.StrField": "string",
    "solr.LongPointField": "long",
    "solr.BoolField": "boolean",
    "solr.LatLonPointSpatialField": "location",
}


class SolrRequestError(Exception):
    """What Solr would answer with an HTTP error ``code`` and ``msg``."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def bad(msg: str) -> SolrRequestError:
    return SolrRequestError(400, msg)


# --- schema ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # string, long, boolean, location
    multi: bool
    stored: bool


@dataclass(frozen=True)
class Schema:
    unique_key: str
    fields: dict[str, Field]

    @classmethod
    def load(cls, path: Path) -> Schema:
        root = ET.parse(path).getroot()
        kinds: dict[str, str] = {}
        for ft in root.iter("fieldType"):
            cls_name = ft.get("class", "")
            if cls_name not in _KINDS:
                raise ValueError(f"{path}: field type class {cls_name} is not supported here")
            kinds[ft.get("name", "")] = _KINDS[cls_name]
        fields = {
            f.get("name", ""): Field(
                f.get("name", ""), kinds[f.get("type", "")], f.get("multiValued") == "true",
                f.get("stored", "true") == "true",
            )
            for f in root.iter("field")
        }
        key = root.findtext("uniqueKey")
        if not key or key not in fields:
            raise ValueError(f"{path}: no uniqueKey field")
        return cls(key, fields)

    def field(self, name: str) -> Field:
        if name not in self.fields:
            raise bad(f"undefined field {name}")
        return self.fields[name]

    def coerce(self, name: str, value: Any, doc_id: Any = None) -> Any:
        """``value`` as the field stores it; 400 as Solr words it when it does not fit."""
        if name not in self.fields:
            raise bad(f"ERROR: [doc={doc_id}] unknown field '{name}'")
        f = self.fields[name]
        if isinstance(value, list):
            if not f.multi:
                raise bad(f"ERROR: [doc={doc_id}] multiple values encountered for non "
                          f"multiValued field {name}: {value}")
            return [self._one(f, v) for v in value]
        return [self._one(f, value)] if f.multi else self._one(f, value)

    def _one(self, f: Field, value: Any) -> Any:
        try:
            if f.kind == "long":
                if isinstance(value, bool) or isinstance(value, float):
                    raise ValueError(value)
                return int(value)
            if f.kind == "boolean":
                if isinstance(value, bool):
                    return value
                if str(value) in ("true", "false"):
                    return str(value) == "true"
                raise ValueError(value)
            if f.kind == "location":
                lat_s, lng_s = str(value).split(",")
                lat, lng = float(lat_s), float(lng_s)
                if not (-90 <= lat <= 90 and -180 <= lng <= 180):
                    raise ValueError(value)
                return str(value)
            return str(value)
        except ValueError:
            raise bad(f"Error while creating field '{f.name}' from value '{value}'") from None

    def term(self, name: str, text: str) -> Any:
        """A query term for field ``name``, typed like its values."""
        f = self.field(name)
        if f.kind == "long":
            try:
                return int(text)
            except ValueError:
                raise bad(f"Invalid Number: {text}") from None
        if f.kind == "boolean":
            return text == "true"
        return text


# --- geometry, as Lucene does it -------------------------------------------------------------


def quantized(point: str) -> tuple[float, float]:
    """The (lat, lng) that LatLonPoint keeps of ``"lat,lng"``."""
    lat, lng = (float(x) for x in point.split(","))
    lat = math.nextafter(lat, 0.0) if lat == 90.0 else lat
    lng = math.nextafter(lng, 0.0) if lng == 180.0 else lng
    return math.floor(lat / _LAT_DECODE) * _LAT_DECODE, math.floor(lng / _LON_DECODE) * _LON_DECODE


def haversin_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Lucene's ``SloppyMath.haversinMeters``, exactly rather than sloppily."""
    x1, x2 = math.radians(lat1), math.radians(lat2)
    h1 = 1 - math.cos(x1 - x2)
    h2 = 1 - math.cos(math.radians(lon1 - lon2))
    h = (h1 + math.cos(x1) * math.cos(x2) * h2) / 2
    return 2 * EARTH_MEAN_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True)
class GeoParams:
    sfield: str
    lat: float
    lng: float
    d_km: float | None

    @classmethod
    def read(cls, schema: Schema, local: Params, params: Params, need_d: bool) -> GeoParams:
        def get(name: str) -> str | None:
            value = local.get(name) or params.get(name)
            return value[0] if value else None

        sfield, pt, d = get("sfield"), get("pt"), get("d")
        if not sfield or not pt or (need_d and d is None):
            raise bad("sfield, pt and d are required for geofilt; sfield and pt for geodist()")
        if schema.field(sfield).kind != "location":
            raise bad(f"{sfield} is not a spatial field")
        try:
            lat, lng = (float(x) for x in pt.split(","))
            km = None if d is None else float(d)
        except ValueError:
            raise bad(f"Bad point or distance: pt={pt} d={d}") from None
        return cls(sfield, lat, lng, km)

    def km(self, doc: Doc) -> float | None:
        """geodist(): the distance from ``pt`` to the document's point, in km."""
        value = doc.get(self.sfield)
        if value is None:
            return None
        lat, lng = quantized(value)
        return haversin_m(self.lat, self.lng, lat, lng) / 1000

    def circle(self) -> Filter:
        assert self.d_km is not None
        radius_m = self.d_km * 1000
        boxes = bounding_boxes(self.lat, self.lng, radius_m)

        def inside(doc: Doc) -> bool:
            value = doc.get(self.sfield)
            if value is None:
                return False
            lat, lng = quantized(value)
            return within(boxes, lat, lng) and \
                haversin_m(self.lat, self.lng, lat, lng) <= radius_m

        return inside


# --- queries ---------------------------------------------------------------------------------

_LOCAL = re.compile(r"\s*(?:([\w.]+)=)?('(?:\\.|[^'])*'|\"(?:\\.|[^\"])*\"|[^\s}]+)")
_RANGE = re.compile(r"^([\w.]+):\[(\S+) TO (\S+)\]$")
_TERM = re.compile(r'^([\w.]+):("(?:\\.|[^"])*"|(?:\\.|[^\s"()\[\]{}])+)$')
_UNESCAPE = re.compile(r"\\(.)")


def local_params(text: str, params: Params) -> tuple[dict[str, list[str]], str]:
    """Split ``{!type k=v ...}body`` into (local params, body), ``$refs`` dereferenced."""
    if not text.startswith("{!"):
        return {}, text
    local: dict[str, list[str]] = {}
    pos = 2
    while True:
        if text.startswith("}", pos):
            return local, text[pos + 1:]
        m = _LOCAL.match(text, pos)
        if not m or m.end() == pos:
            raise bad(f"Expected identifier at pos {pos} str='{text}'")
        key, value = m.group(1) or "type", m.group(2)
        if value[0] in "'\"":
            value = _UNESCAPE.sub(r"\1", value[1:-1])
        elif value.startswith("$"):
            if value[1:] not in params:
                raise bad(f"Missing param {value[1:]} while parsing '{text}'")
            value = params[value[1:]][0]
        local.setdefault(key, []).append(value)
        pos = m.end()
        while text.startswith(" ", pos):
            pos += 1


def compile_query(text: str, schema: Schema, params: Params) -> Filter:
    """A predicate over documents for the query string ``text``."""
    local, body = local_params(text.strip(), params)
    if "v" in local:
        body = local["v"][0]
    kind = local.get("type", ["lucene"])[0]
    if kind == "geofilt":
        return GeoParams.read(schema, local, params, need_d=True).circle()
    if kind == "bool":
        return _bool(local, schema, params)
    if kind == "terms":
        name = local.get("f", [""])[0]
        sep = local.get("separator", [","])[0]
        wanted = {schema.term(name, t) for t in body.split(sep) if t}
        return lambda doc: _values(doc, name) & wanted != set()
    if kind == "term":
        name = local.get("f", [""])[0]
        value = schema.term(name, body)
        return lambda doc: value in _values(doc, name)
    if kind == "lucene":
        return _lucene(body.strip(), schema)
    raise bad(f"Unknown query parser '{kind}' (this local Solr supports lucene, term, terms, "
              "bool and geofilt)")


def _values(doc: Doc, name: str) -> set[Any]:
    value = doc.get(name)
    if value is None:
        return set()
    return set(value) if isinstance(value, list) else {value}


def _bool(local: dict[str, list[str]], schema: Schema, params: Params) -> Filter:
    def subs(key: str) -> list[Filter]:
        return [compile_query(q, schema, params) for q in local.get(key, [])]

    must = subs("must") + subs("filter")
    should, must_not = subs("should"), subs("must_not")

    def match(doc: Doc) -> bool:
        return (
            all(f(doc) for f in must)
            and not any(f(doc) for f in must_not)
            and (not should or any(f(doc) for f in should))
        )

    return match


def _lucene(body: str, schema: Schema) -> Filter:
    if body == "*:*":
        return lambda doc: True
    m = _RANGE.match(body)
    if m:
        name = m.group(1)
        lo = None if m.group(2) == "*" else schema.term(name, m.group(2))
        hi = None if m.group(3) == "*" else schema.term(name, m.group(3))

        def in_range(doc: Doc) -> bool:
            return any((lo is None or lo <= v) and (hi is None or v <= hi)
                       for v in _values(doc, name))

        return in_range
    m = _TERM.match(body)
    if m:
        name, raw = m.group(1), m.group(2)
        text = raw[1:-1] if raw.startswith('"') else raw
        value = schema.term(name, _UNESCAPE.sub(r"\1", text))
        return lambda doc: value in _values(doc, name)
    raise bad(f"this local Solr supports only *:*, field:value and field:[lo TO hi] in the "
              f"lucene syntax, not {body!r}")
