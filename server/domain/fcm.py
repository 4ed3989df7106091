"""FCM HTTP v1's wire contract, the pure part: the message a notification becomes, what
answers mean.

A send is ``POST /v1/projects/{project}/messages:send`` with ``{"message": ...}`` from
``fcm_message``: the token, a ``notification`` (title, body), ``data``, an ``android`` section
(priority, ``collapse_key``, ``ttl``, localization keys, ``tag``) and an ``apns`` section
(``apns-collapse-id``, priority and expiration headers, the ``aps`` payload) for iOS devices
registered through FCM.

Errors come as ``{"error": {"code", "message", "status", "details": [...]}}``; the FCM error
code is in the ``details`` entry of type ``google.firebase.fcm.v1.FcmError`` (``errorCode``),
field problems in a ``google.rpc.BadRequest`` entry (``fieldViolations``). ``fcm_result``:
``UNREGISTERED``, ``SENDER_ID_MISMATCH`` and ``INVALID_ARGUMENT`` about the token unregister;
an ``INVALID_ARGUMENT`` naming another field of the message is a failure of this message
only; ``QUOTA_EXCEEDED``, ``UNAVAILABLE``, ``INTERNAL`` and any 429/5xx retry later,
honouring ``Retry-After``. A 401 other than ``THIRD_PARTY_AUTH_ERROR`` means our access token
was refused (``access_token_rejected``): get a new one and try once more.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from server.domain.apns import aps_dictionary, delivery_headers
from server.domain.push import (
    Delivered,
    Failed,
    Notification,
    PushResult,
    RetryLater,
    Unregistered,
)

FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
TOKEN_FIELD = "message.token"
MAX_DATA = 4096
RETRYABLE = frozenset({"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"})
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"


class DataTooLarge(ValueError):
    """The notification's data exceeds FCM's 4 KB payload limit."""


def fcm_message(n: Notification, now: float) -> dict[str, Any]:
    """The request body (``{"message": ...}``) for ``n``; ``now`` turns its expiration into
    Android's ``ttl``. Raises ``DataTooLarge`` for data over 4 KB."""
    if sum(len(k.encode()) + len(v.encode()) for k, v in n.data.items()) > MAX_DATA:
        raise DataTooLarge(f"data is over {MAX_DATA} bytes")
    message: dict[str, Any] = {"token": n.device_token}
    text = {k: v for k, v in (("title", n.title), ("body", n.body)) if v}
    if text:
        message["notification"] = text
    if n.data:
        message["data"] = dict(n.data)
    message["android"] = _android(n, now)
    message["apns"] = _apns(n)
    return {"message": message}


def _android(n: Notification, now: float) -> dict[str, Any]:
    android: dict[str, Any] = {"priority": "HIGH" if n.priority == "high" else "NORMAL"}
    if n.collapse_key:
        android["collapse_key"] = n.collapse_key
    if n.expiration is not None:
        android["ttl"] = f"{max(0, int(n.expiration - now))}s"
    shown: dict[str, Any] = {}
    if n.title_loc_key:
        shown["title_loc_key"] = n.title_loc_key
        shown["title_loc_args"] = list(n.title_loc_args)
    if n.body_loc_key:
        shown["body_loc_key"] = n.body_loc_key
        shown["body_loc_args"] = list(n.body_loc_args)
    if n.sound:
        shown["sound"] = n.sound
    if n.badge is not None:
        shown["notification_count"] = n.badge
    if n.collapse_key and n.push_type == "alert":
        shown["tag"] = n.collapse_key  # replaces the shown notification with the same tag
    if shown:
        android["notification"] = shown
    return android


def _apns(n: Notification) -> dict[str, Any]:
    return {"headers": delivery_headers(n),
            "payload": {"aps": aps_dictionary(n, with_text=False)}}


@dataclass(frozen=True)
class FcmError:
    """An FCM v1 error answer: the RPC status, the FCM error code from ``details`` (or ''),
    the fields that ``BadRequest`` details name, and the message."""

    status: str
    code: str
    fields: tuple[str, ...]
    message: str

    @property
    def about_token(self) -> bool:
        """An ``INVALID_ARGUMENT`` about the registration token rather than the message:
        a field violation on ``message.token``, or the FCM code with no other field named."""
        if TOKEN_FIELD in self.fields:
            return True
        return self.code == "INVALID_ARGUMENT" and not self.fields

    @property
    def kind(self) -> str:
        """The FCM error code, or the RPC status when details carry none."""
        return self.code or self.status


def error_of(body: bytes) -> FcmError:
    """Parse an error answer; unreadable bodies give an empty error."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        error = None
    if not isinstance(error, dict):
        return FcmError("", "", (), "")
    code = ""
    fields: list[str] = []
    for detail in error.get("details") or ():
        if not isinstance(detail, dict):
            continue
        if detail.get("@type") == FCM_ERROR_TYPE and isinstance(detail.get("errorCode"), str):
            code = detail["errorCode"]
        elif detail.get("@type") == BAD_REQUEST_TYPE:
            fields += [v.get("field", "") for v in detail.get("fieldViolations") or ()
                       if isinstance(v, dict)]
    status = error.get("status")
    message = error.get("message")
    return FcmError(status if isinstance(status, str) else "", code, tuple(fields),
                    message if isinstance(message, str) else "")


def access_token_rejected(status: int, error: FcmError) -> bool:
    """True when FCM refused our OAuth2 access token (get a new one, try once more)."""
    return status == 401 and error.code != "THIRD_PARTY_AUTH_ERROR"


def fcm_result(status: int, body: bytes, retry_after: float | None,
               backoff: Callable[[float | None], float]) -> PushResult:
    """What FCM's answer means. ``backoff(retry_after)`` gives the delay of a retry."""
    if status == 200:
        try:
            name = json.loads(body).get("name", "")
        except (ValueError, AttributeError):
            name = ""
        return Delivered(name if isinstance(name, str) else "")
    error = error_of(body)
    kind = error.kind or f"HTTP {status}"
    if kind in ("UNREGISTERED", "SENDER_ID_MISMATCH"):
        return Unregistered(kind)
    if kind == "INVALID_ARGUMENT":
        if error.about_token:
            return Unregistered(kind)
        return Failed(f"{kind}: {', '.join(error.fields) or error.message}")
    if kind in RETRYABLE or status == 429 or status >= 500:
        return RetryLater(kind, backoff(retry_after))
    return Failed(kind)
