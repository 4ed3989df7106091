"""Push notifications, the pure part: what a provider sends, what it answers, when to retry.

A ``Notification`` is one message to one device. Its ``id`` is derived from what caused it
(``notification_id(source, device_token)``: the event id, or a collapse group), so a batch
redone after a crash computes the same id, which is APNs' ``apns-id`` and the key a dedupe
record uses. A provider answers each send with one ``PushResult``:

- ``Delivered(provider_id)``: the service accepted it (APNs' ``apns-id``, FCM's message name);
- ``Unregistered(reason, at_ms)``: the token is dead (APNs 410 / ``BadDeviceToken`` /
  ``DeviceTokenNotForTopic``, FCM ``UNREGISTERED`` / ``INVALID_ARGUMENT`` about the token);
  ``should_unregister`` decides whether that unregisters the device, given when it registered;
- ``RetryLater(reason, delay)``: try again in ``delay`` seconds (429, 5xx, network errors);
- ``Failed(reason)``: this notification cannot be sent; do not retry it.

Time is always passed in.
"""

from __future__ import annotations

import email.utils
import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Platform = Literal["ios", "android"]
PushType = Literal["alert", "background"]
Priority = Literal["high", "normal"]
PLATFORMS: tuple[Platform, ...] = ("ios", "android")

#: APNs rejects an ``apns-collapse-id`` longer than this (bytes); FCM's collapse key is
#: held to the same bound so one key serves both.
MAX_COLLAPSE_ID = 64

_NAMESPACE = uuid.UUID("6f1c2b8e-3d4a-5b6c-8d7e-9f0a1b2c3d4e")


def notification_id(source: str | int, device_token: str) -> str:
    """The dedupe id of the notification about ``source`` to ``device_token``.

    ``source`` is what the notification is about: an event id, or a collapse group and its
    window. The id is a canonical UUID (the form of APNs' ``apns-id``), the same every time
    it is computed from the same inputs.
    """
    return str(uuid.uuid5(_NAMESPACE, f"{source}\x00{device_token}"))


def collapse_id(key: str) -> str:
    """``key`` if it fits ``apns-collapse-id`` (64 bytes), else a stable 64-character digest."""
    if len(key.encode()) <= MAX_COLLAPSE_ID:
        return key
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Notification:
    """One notification to one device, independent of the provider that sends it.

    The text is either literal (``title``/``body``) or localized on the device
    (``title_loc_key``/``body_loc_key`` with their args), or both. ``topic`` is the APNs
    topic (the app's bundle id); empty means the provider's configured one. ``expiration``
    is a UNIX time in seconds after which the service may drop it (None: the service's
    default). ``data`` holds extra string fields for the app.
    """

    device_token: str
    platform: Platform
    id: str
    title: str | None = None
    body: str | None = None
    title_loc_key: str | None = None
    title_loc_args: tuple[str, ...] = ()
    body_loc_key: str | None = None
    body_loc_args: tuple[str, ...] = ()
    badge: int | None = None
    sound: str | None = None
    collapse_key: str | None = None
    priority: Priority = "high"
    expiration: int | None = None
    push_type: PushType = "alert"
    topic: str = ""
    data: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise ValueError(f"invalid notification: {problem}")

    def _problem(self) -> str | None:
        if self.platform not in PLATFORMS:
            return f"platform must be one of {PLATFORMS}, got {self.platform!r}"
        if not self.device_token or not self.device_token.isprintable():
            return "device_token must be a non-empty printable string"
        try:
            if str(uuid.UUID(self.id)) != self.id:
                return "id must be a canonical lower-case UUID (see notification_id)"
        except ValueError:
            return "id must be a UUID (see notification_id)"
        if self.collapse_key is not None and not (
            0 < len(self.collapse_key.encode()) <= MAX_COLLAPSE_ID
        ):
            return f"collapse_key must be 1 to {MAX_COLLAPSE_ID} bytes (see collapse_id)"
        if self.priority not in ("high", "normal"):
            return f"priority must be 'high' or 'normal', got {self.priority!r}"
        if self.push_type not in ("alert", "background"):
            return f"push_type must be 'alert' or 'background', got {self.push_type!r}"
        has_text = bool(self.title or self.body or self.title_loc_key or self.body_loc_key)
        if self.push_type == "alert" and not has_text:
            return "an alert needs a title, a body or a localization key"
        if self.push_type == "background" and (has_text or self.sound or self.badge is not None):
            return "a background notification carries no text, sound or badge"
        if self.badge is not None and self.badge < 0:
            return "badge must not be negative"
        if self.expiration is not None and self.expiration < 0:
            return "expiration must be a UNIX time (seconds) or None"
        if "aps" in self.data or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.data.items()
        ):
            return "data must map strings to strings and must not use the key 'aps'"
        return None

    def describe(self) -> str:
        """A log-safe summary: the token shortened, no text of the message."""
        return f"{self.platform} device {self.device_token[:8]}… (notification {self.id})"


@dataclass(frozen=True)
class Delivered:
    """The service accepted the notification; ``provider_id`` is its id there."""

    provider_id: str


@dataclass(frozen=True)
class Unregistered:
    """The device token is no longer valid. ``at_ms`` is when the service learned so (APNs'
    ``timestamp``, milliseconds since the epoch), when it says."""

    reason: str
    at_ms: int | None = None


@dataclass(frozen=True)
class RetryLater:
    """Not sent now; try again after ``delay`` seconds (the service's Retry-After or our
    backoff, whichever is longer)."""

    reason: str
    delay: float


@dataclass(frozen=True)
class Failed:
    """This notification cannot be delivered (bad payload, credentials rejected ...): do not
    retry it."""

    reason: str


PushResult = Delivered | Unregistered | RetryLater | Failed


def should_unregister(result: Unregistered, registered_ms: int) -> bool:
    """Whether ``result`` unregisters a device whose token was (last) registered at
    ``registered_ms``: not when the token was registered again after the service's
    timestamp (Apple: stop pushing until the device registers with a later timestamp)."""
    return result.at_ms is None or registered_ms <= result.at_ms


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with deterministic jitter: the delay before retry ``attempt + 1``
    lies in [50%, 100%] of ``min(cap, base * factor ** attempt)``, never below what the
    service asked for, and the same for the same notification and attempt."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 900.0
    attempts: int = 8

    def delay(self, attempt: int, key: str, retry_after: float | None = None) -> float:
        ceiling = min(self.cap, self.base * self.factor ** max(0, attempt))
        digest = hashlib.blake2b(f"{key}:{attempt}".encode(), digest_size=8).digest()
        jitter = 0.5 + 0.5 * int.from_bytes(digest, "big") / 2**64
        return max(ceiling * jitter, retry_after or 0.0)

    def next_try(self, notification: Notification, attempt: int, result: RetryLater,
                 now: float) -> float | None:
        """When to try ``notification`` again after ``result`` on try ``attempt`` (0-based),
        as a UNIX time; None when the attempts are spent or it would expire first."""
        if attempt + 1 >= self.attempts:
            return None
        at = now + result.delay
        if notification.expiration is not None and at > notification.expiration > 0:
            return None
        return at


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` value (seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)
