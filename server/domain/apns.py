"""APNs' wire contract, the pure part: the request a notification becomes, what answers mean.

A request is ``POST /3/device/<token>`` with the headers of ``apns_headers`` and the JSON
body of ``apns_body`` (the ``aps`` dictionary plus the app's data), at most 4 KB: a body
that is too long is shortened, then refused (``PayloadTooLarge``). ``apns_result`` maps an
answer to a ``PushResult``: 200 delivered; 410 and 400 ``BadDeviceToken`` /
``DeviceTokenNotForTopic`` unregistered (410 with Apple's timestamp); 429 and 5xx retry
later; anything else failed. 403 ``ExpiredProviderToken`` / ``InvalidProviderToken``
(``provider_token_rejected``) is the provider's cue to make a new JWT and try once more.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from server.domain.push import (
    Delivered,
    Failed,
    Notification,
    PushResult,
    RetryLater,
    Unregistered,
)

MAX_PAYLOAD = 4096
TOKEN_REJECTIONS = frozenset({"ExpiredProviderToken", "InvalidProviderToken"})
DEAD_TOKEN_REASONS = frozenset({"BadDeviceToken", "DeviceTokenNotForTopic"})
_ELLIPSIS = "…"


class PayloadTooLarge(ValueError):
    """The notification does not fit APNs' payload limit even with its body shortened."""


def aps_dictionary(n: Notification, *, with_text: bool = True) -> dict[str, Any]:
    """The ``aps`` dictionary of ``n`` (``with_text=False`` leaves out the literal title and
    body, which FCM places there itself from its ``notification`` object)."""
    alert: dict[str, Any] = {}
    if with_text and n.title:
        alert["title"] = n.title
    if with_text and n.body:
        alert["body"] = n.body
    if n.title_loc_key:
        alert["title-loc-key"] = n.title_loc_key
        alert["title-loc-args"] = list(n.title_loc_args)
    if n.body_loc_key:
        alert["loc-key"] = n.body_loc_key
        alert["loc-args"] = list(n.body_loc_args)
    aps: dict[str, Any] = {}
    if alert:
        aps["alert"] = alert
    if n.badge is not None:
        aps["badge"] = n.badge
    if n.sound:
        aps["sound"] = n.sound
    if n.push_type == "background":
        aps["content-available"] = 1
    return aps


def _encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def apns_body(n: Notification, limit: int = MAX_PAYLOAD) -> bytes:
    """The JSON body for ``n``, at most ``limit`` bytes: a literal body too long for it is cut
    (with an ellipsis); raises ``PayloadTooLarge`` when even that cannot make it fit."""
    payload: dict[str, Any] = {"aps": aps_dictionary(n), **n.data}
    body = _encode(payload)
    if len(body) <= limit:
        return body
    text = n.body or ""
    excess = len(body) - limit + len(_ELLIPSIS.encode())
    if excess >= len(text.encode()):
        raise PayloadTooLarge(f"payload is {len(body)} bytes, the limit is {limit}")
    cut = text.encode()[: len(text.encode()) - excess].decode("utf-8", "ignore")
    payload["aps"]["alert"]["body"] = cut + _ELLIPSIS
    body = _encode(payload)
    if len(body) > limit:  # JSON escapes made the cut text longer than counted
        raise PayloadTooLarge(f"payload is {len(body)} bytes, the limit is {limit}")
    return body


def delivery_headers(n: Notification) -> dict[str, str]:
    """The ``apns-*`` headers about delivery: push type, priority, collapse id, expiration
    (also what FCM's apns section carries). Background notifications always go at priority
    5, as Apple requires."""
    high = n.priority == "high" and n.push_type == "alert"
    headers = {"apns-push-type": n.push_type, "apns-priority": "10" if high else "5"}
    if n.collapse_key:
        headers["apns-collapse-id"] = n.collapse_key
    if n.expiration is not None:
        headers["apns-expiration"] = str(n.expiration)
    return headers


def apns_headers(n: Notification, default_topic: str) -> dict[str, str]:
    """Every ``apns-*`` header for ``n`` (authorization is the provider's business)."""
    return {"apns-topic": n.topic or default_topic, "apns-id": n.id} | delivery_headers(n)


def error_of(body: bytes) -> tuple[str, int | None]:
    """(reason, timestamp in ms or None) of an APNs error body; reason '' if unreadable."""
    try:
        data = json.loads(body)
    except ValueError:
        return "", None
    if not isinstance(data, dict):
        return "", None
    reason = data.get("reason")
    timestamp = data.get("timestamp")
    return (
        reason if isinstance(reason, str) else "",
        timestamp if isinstance(timestamp, int) and not isinstance(timestamp, bool) else None,
    )


def provider_token_rejected(status: int, reason: str) -> bool:
    """True when APNs refused the provider token itself (make a new one, try once more)."""
    return status == 403 and reason in TOKEN_REJECTIONS


def apns_result(status: int, body: bytes, apns_id: str | None,
                backoff: Callable[[float | None], float]) -> PushResult:
    """What APNs' answer means. ``backoff(retry_after)`` gives the delay of a retry."""
    if status == 200:
        return Delivered(apns_id or "")
    reason, timestamp = error_of(body)
    label = reason or f"HTTP {status}"
    if status == 410:
        return Unregistered(label, timestamp)
    if status == 400 and reason in DEAD_TOKEN_REASONS:
        return Unregistered(reason)
    if status == 429 or status >= 500:
        return RetryLater(label, backoff(None))
    return Failed(label)
