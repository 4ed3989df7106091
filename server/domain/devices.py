"""Push devices: registration, the token's owner, and why a device goes away. Pure: no I/O.

A device token belongs to one user at a time. Its events live on the stream
``device:{digest}`` in the token's logical shard (``token_shard``: sha256 of the token, as
usernames are placed), so the token's claim is a primary key in one place, the same for every
user: of two users registering one token, the later one owns it and the earlier one gets a
``DeviceUnregistered`` with reason ``moved`` in the same append (a phone changed hands, or an
app was signed into another account).

``DeviceUnregistered.reason``: ``user`` (``DELETE /v1/users/self/devices/{token}``),
``provider`` (APNs or FCM said the token is dead; ``at_ms`` is the service's timestamp when it
gives one, ``detail`` its reason), ``moved`` (another user registered the token).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from server.domain.events import EVENTS, Event
from server.domain.push import PLATFORMS, Unregistered, should_unregister

#: Longest token accepted. APNs tokens are 64 hex digits today (Apple says they may grow);
#: FCM registration tokens are about 150-200 characters.
TOKEN_MAX = 512
APP_MAX = 255
LOCALE_MAX = 35
_IOS_TOKEN = re.compile(r"[0-9a-fA-F]+")
_ANDROID_TOKEN = re.compile(r"[A-Za-z0-9_:.\-]+")
_APP = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-_]*")
_LOCALE = re.compile(r"[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*")
REASONS = ("user", "provider", "moved")


class DeviceError(ValueError):
    """A registration the API refuses; the message names the field."""


@EVENTS.event("DeviceRegistered", version=1)
class DeviceRegistered(Event):
    """``user_id`` registered ``token`` (again): pushes for the user go to it."""

    token: str
    user_id: int
    platform: str
    app: str
    locale: str


@EVENTS.event("DeviceUnregistered", version=1)
class DeviceUnregistered(Event):
    """``token`` no longer receives ``user_id``'s pushes (``reason``: user, provider, moved)."""

    token: str
    user_id: int
    reason: str
    at_ms: int = 0  # provider: the service's timestamp (ms), 0 when it gave none
    detail: str = ""  # provider: the service's reason (Unregistered, BadDeviceToken, ...)


DEVICE_TYPES = ("DeviceRegistered", "DeviceUnregistered")


@dataclass(frozen=True)
class Device:
    """A registered device as stored (the inline projection of its stream)."""

    token: str
    user_id: int
    platform: str
    app: str
    locale: str
    registered_ms: int


def canonical_token(token: str) -> str:
    """The one spelling of a device token: an APNs token (hexadecimal digits, 64 or more) is
    bytes written in hex, so its case means nothing and it is lower-cased (one phone, one
    shard, stream and row, however the app wrote it); an FCM token, whose case matters, is
    kept as given."""
    if len(token) >= 64 and _IOS_TOKEN.fullmatch(token):
        return token.lower()
    return token


def token_shard(token: str, shard_count: int) -> int:
    """The logical shard holding ``token``'s stream and claim (fixed, unlike ``hash()``)."""
    return int.from_bytes(hashlib.sha256(token.encode()).digest()[:8], "big") % shard_count


def device_stream(token: str) -> str:
    """The stream of a token's events (a digest: tokens are long and need no reading here)."""
    return f"device:{hashlib.sha256(token.encode()).hexdigest()[:40]}"


def check_device(platform: str, token: str, app: str, locale: str) -> None:
    """``DeviceError`` naming what is wrong with a registration."""
    if platform not in PLATFORMS:
        raise DeviceError(f"platform must be one of: {', '.join(PLATFORMS)}")
    if not token:
        raise DeviceError("token must not be empty")
    if len(token) > TOKEN_MAX:
        raise DeviceError(f"token must be at most {TOKEN_MAX} characters")
    if platform == "ios" and not (_IOS_TOKEN.fullmatch(token) and len(token) % 2 == 0
                                  and len(token) >= 64):
        raise DeviceError("token of an ios device must be an APNs device token: an even "
                          "number (64 or more) of hexadecimal digits")
    if platform == "android" and not _ANDROID_TOKEN.fullmatch(token):
        raise DeviceError("token of an android device must be an FCM registration token: "
                          "letters, digits and - _ : . only")
    if len(app) > APP_MAX or (app and not _APP.fullmatch(app)):
        raise DeviceError(f"app must be a bundle id or package name (letters, digits, "
                          f". - _; at most {APP_MAX} characters)")
    if len(locale) > LOCALE_MAX or (locale and not _LOCALE.fullmatch(locale)):
        raise DeviceError("locale must be a language tag such as en, en-US or pt_BR")


def decide_register(owner: Device | None, user_id: int, platform: str, token: str, app: str,
                    locale: str) -> list[Event]:
    """The events of ``user_id`` registering ``token`` whose current claim is ``owner``.

    A registration is always recorded (even by the same owner, unchanged): its time is what
    a provider's "unregistered at" timestamp is compared with. A token held by another user
    moves: that user's device is unregistered first, in the same append.
    """
    events: list[Event] = []
    if owner is not None and owner.user_id != user_id:
        events.append(DeviceUnregistered(token=token, user_id=owner.user_id, reason="moved"))
    events.append(DeviceRegistered(token=token, user_id=user_id, platform=platform, app=app,
                                   locale=locale))
    return events


def decide_unregister(owner: Device | None, user_id: int) -> list[Event]:
    """The caller removing their device; nothing when the token is not theirs (the API then
    answers 404: it does not say whether someone else holds it)."""
    if owner is None or owner.user_id != user_id:
        return []
    return [DeviceUnregistered(token=owner.token, user_id=user_id, reason="user")]


def decide_dead(owner: Device | None, user_id: int, result: Unregistered) -> list[Event]:
    """A provider's verdict that the token of ``user_id``'s device is dead: unregister it,
    unless the token has moved on or was registered again after the service's timestamp."""
    if owner is None or owner.user_id != user_id:
        return []
    if not should_unregister(result, owner.registered_ms):
        return []
    return [DeviceUnregistered(token=owner.token, user_id=user_id, reason="provider",
                               at_ms=result.at_ms or 0, detail=result.reason[:100])]
