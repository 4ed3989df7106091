"""Share-out to a signed webhook: a JSON POST to a URL the user gave.

Body (``application/json``)::

    {"id": "<idempotency key>", "type": "medium.shared", "created": <unix seconds>,
     "data": {"medium_id": "...", "owner_id": "...", "caption": "...", "permalink": "...",
              "media_url": "...", "media_type": "image/jpeg"}}

(ids are strings: 64-bit integers do not survive JavaScript). ``delete`` sends
``"type": "medium.unshared"`` with ``data.remote_id`` (after a lost delivery of a medium
deleted since, the event id: ``made_by``). Headers: ``Idempotency-Key`` (the same
on every redelivery: receivers deduplicate on it), ``X-Shutterlog-Signature: t=...,v1=...``
(HMAC-SHA256 of ``"<t>.<raw body>"`` with the link's secret, as
``server.domain.shareout.webhook_signature`` documents; receivers reject ``t`` older than 300
seconds). A 2xx answer is success; its JSON ``id`` and ``url``, if any, are the remote post's.
401, 403 and 410 mean the receiver refuses us for good: the link is dead.

The URL is the user's, so the outbound-safe client refuses private, loopback and link-local
destinations, before and after redirects (which are not followed: a webhook must answer).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from zope.interface import implementer

from plugins.shareout import IShareTarget
from plugins.shareout.common import HTTPTarget, required
from server.domain.outbound import OutboundPolicy, UnsafeURL
from server.domain.shareout import (
    CredentialDead,
    Credentials,
    Deleted,
    InvalidCredentials,
    Outcome,
    Posted,
    ShareRequest,
    Verified,
    webhook_signature,
)

MIN_SECRET = 16


@implementer(IShareTarget)
class WebhookTarget(HTTPTarget):
    """Delivers share events to the linked URL, signed with the link's secret."""

    name = "webhook"
    can_delete = True

    def __init__(self, http: httpx.Client, policy: OutboundPolicy, **kwargs: Any) -> None:
        super().__init__(http, **kwargs)
        self.policy = policy

    def check(self, credentials: Credentials) -> Credentials:
        required(credentials, "url", "secret")
        try:
            self.policy.check_url(credentials["url"].strip())
        except UnsafeURL as e:
            raise InvalidCredentials(f"url: {e}") from None
        if len(credentials["secret"]) < MIN_SECRET:
            raise InvalidCredentials(f"secret must be at least {MIN_SECRET} characters")
        return credentials.with_fields(url=credentials["url"].strip())

    def _verify(self, credentials: Credentials) -> Outcome:
        return self._deliver(credentials, "ping", "ping", {})

    def _post(self, request: ShareRequest, credentials: Credentials) -> Outcome:
        data = {
            "medium_id": str(request.medium_id),
            "owner_id": str(request.owner_id),
            "caption": request.caption,
            "permalink": request.permalink,
            "media_url": request.media.url,
            "media_type": request.media.content_type,
        }
        return self._deliver(credentials, request.key, "medium.shared", data)

    def _delete(self, remote_id: str, credentials: Credentials) -> Outcome:
        return self._deliver(credentials, f"{remote_id}-unshared", "medium.unshared",
                             {"remote_id": remote_id})

    def made_by(self, request: ShareRequest, credentials: Credentials) -> Outcome | None:
        """Whether the receiver got the lost delivery is unknown and its own id with it:
        ``take_back`` sends ``medium.unshared`` naming the event id (receivers drop ids they
        do not know), rather than deliver the deleted medium again."""
        return Posted(request.key)

    def failure(self, response: httpx.Response, credentials: Credentials) -> Outcome:
        if response.status_code == 410:
            return CredentialDead("HTTP 410: the receiver is gone")
        return super().failure(response, credentials)

    def _deliver(
        self, credentials: Credentials, key: str, kind: str, data: dict[str, str]
    ) -> Outcome:
        checked = self.check(credentials)
        now = int(self.clock())
        body = json.dumps(
            {"id": key, "type": kind, "created": now, "data": data}, separators=(",", ":")
        ).encode()
        r = self.send(
            "POST", checked["url"], credentials, ok=tuple(range(200, 300)), content=body,
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": key,
                "X-Shutterlog-Signature": webhook_signature(checked["secret"], now, body),
            },
        )
        if kind == "ping":
            return Verified(httpx.URL(checked["url"]).host, {})
        if kind == "medium.unshared":
            return Deleted(data["remote_id"])
        try:
            answer = r.json()
        except ValueError:
            answer = None
        answer = answer if isinstance(answer, dict) else {}
        remote_id, url = answer.get("id"), answer.get("url")
        return Posted(
            str(remote_id) if remote_id else key, url if isinstance(url, str) else None
        )
