"""Share-out to a Mastodon-compatible server (Mastodon, and the servers speaking its API).

``post``: ``POST /api/v2/media`` (multipart ``file``, ``description``): 200 when processed,
202 while processing, then ``GET /api/v1/media/:id`` on a ``PollSchedule`` until it answers
200 with a ``url`` (206 meanwhile); then ``POST /api/v1/statuses`` (``status``,
``media_ids[]``, ``visibility``) with ``Idempotency-Key: <ShareRequest.key>``. Mastodon keeps
idempotency keys for an hour and answers a repeated key with the status it already made, so
a job redone within the hour never double-posts; beyond it, the share ledger's record of the
remote id (``share_once``) is the guard. ``delete``: ``DELETE /api/v1/statuses/:id``.
``take_back`` (a lost attempt, its medium deleted since) posts again with the same key and
deletes the status answered.

Linked credentials: ``instance_url`` (a user-given URL, so every call goes through the
outbound-safe client), ``access_token`` (a user token with ``write:media write:statuses``),
optionally ``max_characters`` (learned by ``verify`` from ``GET /api/v2/instance``) and
``visibility`` (default ``public``).
"""

from __future__ import annotations

from typing import Any

import httpx

from zope.interface import implementer

from plugins.shareout import IShareTarget
from plugins.shareout.common import MB, HTTPTarget, filename_for, json_of, required
from server.domain.captions import MASTODON, TextRules, adapt_caption
from server.domain.outbound import OutboundPolicy, UnsafeURL
from server.domain.shareout import (
    Credentials,
    Deleted,
    Failed,
    InvalidCredentials,
    Outcome,
    PollSchedule,
    Posted,
    ShareRequest,
    Verified,
)

VISIBILITIES = ("public", "unlisted", "private", "direct")
DEFAULT_POLLS = PollSchedule()


@implementer(IShareTarget)
class MastodonTarget(HTTPTarget):
    """Posts to the linked account's own Mastodon instance."""

    name = "mastodon"
    can_delete = True

    def __init__(
        self,
        http: httpx.Client,
        policy: OutboundPolicy,
        default_max_characters: int = MASTODON.max_length,
        *,
        polls: PollSchedule = DEFAULT_POLLS,
        image_limit: int = 16 * MB,
        video_limit: int = 99 * MB,
        **kwargs: Any,
    ) -> None:
        super().__init__(http, **kwargs)
        self.policy = policy
        self.default_max_characters = default_max_characters
        self.polls = polls
        self.image_limit = image_limit
        self.video_limit = video_limit

    def check(self, credentials: Credentials) -> Credentials:
        required(credentials, "access_token", "instance_url")
        url = credentials["instance_url"].strip().rstrip("/")
        try:
            self.policy.check_url(url)
        except UnsafeURL as e:
            raise InvalidCredentials(f"instance_url: {e}") from None
        max_chars = credentials.get("max_characters")
        if max_chars is not None and not (max_chars.isdigit() and int(max_chars) > 0):
            raise InvalidCredentials("max_characters must be a positive integer")
        if credentials.get("visibility", "public") not in VISIBILITIES:
            raise InvalidCredentials(f"visibility must be one of {', '.join(VISIBILITIES)}")
        return credentials.with_fields(instance_url=url)

    # --- the calls -------------------------------------------------------------------------

    def _verify(self, credentials: Credentials) -> Outcome:
        base, auth = self._base(credentials)
        account = json_of(
            self.send("GET", f"{base}/api/v1/accounts/verify_credentials", credentials,
                      ok=(200,), headers=auth)
        )
        learned: dict[str, str] = {}
        instance = self.call("GET", f"{base}/api/v2/instance", headers=auth)
        if instance.status_code == 200:
            statuses = json_of(instance).get("configuration", {}).get("statuses", {})
            if isinstance(statuses.get("max_characters"), int):
                learned["max_characters"] = str(statuses["max_characters"])
        return Verified(f"@{account.get('acct', '?')}", learned)

    def _post(self, request: ShareRequest, credentials: Credentials) -> Outcome:
        base, auth = self._base(credentials)
        data = self.media_bytes(request, self.image_limit, self.video_limit)
        upload = self.send(
            "POST", f"{base}/api/v2/media", credentials, ok=(200, 202), headers=auth,
            files={"file": (filename_for(request), data, request.media.content_type)},
            data={"description": request.alt_text} if request.alt_text else None,
        )
        media = json_of(upload)
        media_id = str(media.get("id", ""))
        if not media_id:
            return Failed("the media upload answer has no id")
        if upload.status_code == 202 or not media.get("url"):
            self.wait_until(self.polls, lambda: self._processed(base, auth, media_id, credentials))
        limit = int(credentials.get("max_characters") or self.default_max_characters)
        status = self.send(
            "POST", f"{base}/api/v1/statuses", credentials, ok=(200,),
            headers=auth | {"Idempotency-Key": request.key},
            data={
                "status": adapt_caption(request.caption, request.permalink,
                                        TextRules(limit, url_length=MASTODON.url_length)),
                "media_ids[]": [media_id],
                "visibility": credentials.get("visibility") or "public",
            },
        )
        body = json_of(status)
        if not body.get("id"):
            return Failed("the status answer has no id")
        return Posted(str(body["id"]), body.get("url"))

    def made_by(self, request: ShareRequest, credentials: Credentials) -> Outcome | None:
        """Mastodon offers no look-up, but answers a key repeated within the hour with the
        status it made: the same post again (after the hour it makes one, deleted at once)."""
        return self.post(request, credentials)

    def _processed(
        self, base: str, auth: dict[str, str], media_id: str, credentials: Credentials
    ) -> tuple[bool, float | None]:
        r = self.send("GET", f"{base}/api/v1/media/{media_id}", credentials, ok=(200, 206),
                      headers=auth)
        return (r.status_code == 200 and bool(json_of(r).get("url"))), None

    def _delete(self, remote_id: str, credentials: Credentials) -> Outcome:
        base, auth = self._base(credentials)
        r = self.send("DELETE", f"{base}/api/v1/statuses/{remote_id}", credentials,
                      ok=(200, 404), headers=auth)
        return Deleted(remote_id, already_gone=r.status_code == 404)

    def _base(self, credentials: Credentials) -> tuple[str, dict[str, str]]:
        checked = self.check(credentials)
        return checked["instance_url"], {"Authorization": f"Bearer {checked['access_token']}"}
