"""Media: the events of a medium's stream, upload rules, short codes and visibility. Pure.

A medium's id comes from its owner's shard's ``next_id()``, so ``shard_of(media_id)`` is the
owner's shard and the stream ``media:{id}`` lives there, next to the owner's followers-side
events: the ``fanout`` consumer sees a post and a new follower of its owner in log order.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from server.domain import tags as tagging
from server.domain.events import EVENTS, Event
from server.domain.geo import GeoValueError, parse_latitude, parse_longitude

CAPTION_MAX = 2200
CAPTION_TAGS_MAX = 30
FILTER_MAX = 50
LOCATION_NAME_MAX = 100
#: Services a medium may be shared to at upload (share-out itself is a later consumer).
SHARE_TARGETS = ("twitter", "facebook", "mastodon", "webhook")
#: Short code alphabet: base64url, the digits of Instagram's codes.
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}
SHORTCODE_MAX = 11  # 64 bits in base 64


class State(enum.Enum):
    PROCESSING = "processing"  # uploaded; renditions not made yet: the owner alone sees it
    READY = "ready"
    DELETED = "deleted"


class MediaError(ValueError):
    """A refused upload or medium operation; ``error_type`` is the API's name for it and
    ``code`` the HTTP status."""

    def __init__(self, message: str, error_type: str = "APIInvalidParametersError",
                 code: int = 400) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.code = code


@EVENTS.event("MediaPosted", version=1)
class MediaPosted(Event):
    """A medium was uploaded: everything later features need (real-time, push, share-out,
    geo) is here. ``visibility`` is ``public`` or ``private`` (the owner's account at the
    time); ``share_to`` the services the owner asked to share it to."""

    media_id: int
    owner: int
    type: str  # image | video
    blob: str  # the original's blob name: <sha256>.<ext>
    width: int
    height: int
    duration_ms: int  # 0 for images
    caption: str
    tags: tuple[str, ...]
    mentions: tuple[str, ...]
    filter: str
    lat: float | None
    lng: float | None
    location_name: str
    location_id: int | None
    share_to: tuple[str, ...]
    visibility: str


@EVENTS.event("MediaRendered", version=1)
class MediaRendered(Event):
    """Renditions are made; the medium is ready. ``images``/``videos`` map the v1 names
    (thumbnail, low_resolution, standard_resolution) to blob names."""

    media_id: int
    owner: int
    images: dict[str, str]
    videos: dict[str, str]


@EVENTS.event("MediaDeleted", version=1)
class MediaDeleted(Event):
    """The owner deleted the medium: it leaves every feed, tag, location and search."""

    media_id: int
    owner: int


MEDIA_TYPES = ("MediaPosted", "MediaRendered", "MediaDeleted")


def media_stream(media_id: int) -> str:
    return f"media:{media_id}"


# --- upload rules ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Details:
    """What the uploader said about a medium, checked."""

    caption: str = ""
    filter: str = "Normal"
    lat: float | None = None
    lng: float | None = None
    location_name: str = ""
    location_id: int | None = None
    share_to: tuple[str, ...] = ()


def check_details(fields: dict[str, str]) -> Details:
    """The upload's form fields as ``Details``; MediaError naming the first bad one."""
    caption = fields.get("caption", "")
    if len(caption) > CAPTION_MAX:
        raise MediaError(f"caption must be at most {CAPTION_MAX} characters")
    if any(ord(c) < 32 and c not in "\n\t" for c in caption):
        raise MediaError("caption must not contain control characters")
    if tagging.count_hashtags(caption) > CAPTION_TAGS_MAX:
        raise MediaError(f"caption must hold at most {CAPTION_TAGS_MAX} hashtags")
    filter_ = fields.get("filter", "") or "Normal"
    if len(filter_) > FILTER_MAX or not filter_.replace(" ", "").replace("-", "").isalnum():
        raise MediaError(f"filter must be a name of at most {FILTER_MAX} letters or digits")
    lat_text, lng_text = fields.get("lat", ""), fields.get("lng", "")
    lat = lng = None
    if lat_text or lng_text:
        if not (lat_text and lng_text):
            raise MediaError("lat and lng go together: give both or neither")
        try:
            lat, lng = parse_latitude(lat_text), parse_longitude(lng_text)
        except GeoValueError as e:
            raise MediaError(str(e)) from None
    name = fields.get("location_name", "")
    if len(name) > LOCATION_NAME_MAX or any(ord(c) < 32 for c in name):
        raise MediaError(f"location_name must be at most {LOCATION_NAME_MAX} characters "
                         "without control characters")
    location_id = None
    if fields.get("location_id"):
        text = fields["location_id"]
        if not text.isdigit() or len(text) > 18 or int(text) == 0:
            raise MediaError("location_id must be a positive integer")
        location_id = int(text)
    if (name or location_id) and lat is None:
        raise MediaError("a location needs lat and lng")
    return Details(caption, filter_, lat, lng, name, location_id,
                   parse_share_to(fields.get("share_to", "")))


def parse_share_to(text: str) -> tuple[str, ...]:
    """``share_to``: service names separated by commas, each once, each known."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SHARE_TARGETS))
    if unknown:
        raise MediaError(f"share_to: unknown service {', '.join(unknown)} (known: "
                         f"{', '.join(SHARE_TARGETS)})")
    return tuple(dict.fromkeys(names))


#: File signatures (magic numbers): the type is decided from the bytes, never the name.
def sniff(head: bytes) -> str | None:
    """``jpeg``, ``png``, ``webp`` or ``mp4`` from a file's first bytes (at least 12), or
    None when they are none of those."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        return "mp4"
    return None


EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "mp4": "mp4"}


# --- short codes -------------------------------------------------------------------------------


def shortcode(media_id: int) -> str:
    """The medium's short code: its id in base 64 (base64url digits), as Instagram's links."""
    if media_id <= 0:
        raise ValueError(f"not a media id: {media_id}")
    digits = []
    while media_id:
        media_id, r = divmod(media_id, 64)
        digits.append(_ALPHABET[r])
    return "".join(reversed(digits))


def permalink(public_url: str, media_id: int) -> str:
    """The medium's page: ``{public_url}/p/{shortcode}/`` (the v1 ``link``)."""
    return f"{public_url.rstrip('/')}/p/{shortcode(media_id)}/"


def from_shortcode(code: str) -> int:
    """The id a short code stands for; ValueError if it is not one."""
    if not 0 < len(code) <= SHORTCODE_MAX or any(c not in _INDEX for c in code):
        raise ValueError(f"not a short code: {code!r}")
    value = 0
    for c in code:
        value = value * 64 + _INDEX[c]
    if value >= 1 << 64 or value == 0:
        raise ValueError(f"not a short code: {code!r}")
    return value


# --- visibility --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Viewer:
    """What decides whether a viewer sees an owner's media."""

    viewer: int
    owner: int
    owner_private: bool
    follows_owner: bool  # an active (approved) edge viewer -> owner
    blocked: bool  # the owner blocks the viewer


def may_see(v: Viewer, state: State) -> bool:
    """The owner sees their media in any state but deleted; others see ready media of public
    accounts, or of private ones that approved them, unless the owner blocks them."""
    if state is State.DELETED:
        return False
    if v.viewer == v.owner:
        return True
    if state is not State.READY or v.blocked:
        return False
    return not v.owner_private or v.follows_owner

