"""Share-out to X (Twitter), API v2, with an OAuth 2.0 user access token (``Bearer``).

``post`` uploads with the v2 chunked media upload (the v1.1 ``upload.twitter.com`` endpoint
is retired): ``POST /2/media/upload/initialize`` (JSON ``media_type``, ``total_bytes``,
``media_category`` ``tweet_image``/``tweet_video``), ``POST /2/media/upload/{id}/append``
(multipart ``media``, ``segment_index``) per chunk, ``POST /2/media/upload/{id}/finalize``,
then ``GET /2/media/upload?command=STATUS&media_id=`` while ``processing_info.state`` is
``pending``/``in_progress`` (waiting at least its ``check_after_secs``); then ``POST
/2/tweets`` with ``{"text", "media": {"media_ids": [...]}}``. ``delete``: ``DELETE
/2/tweets/:id``.

X accepts no idempotency key. A redone job does not double-post because ``share_once``
records the attempt before the create call and the tweet id after it; when a job died in
between (the create's outcome lost), ``find_existing`` looks through the account's recent
tweets (``GET /2/users/:id/tweets``, ``entities.urls[].expanded_url``) for the medium's
permalink before posting again. Residual window: a tweet created but not yet visible in the
user's timeline when the redo looks (X's timelines are eventually consistent) would be
posted twice, though X itself refuses identical text as "duplicate content" (403), which
``post`` maps to ``Failed``, not to a dead credential.
"""

from __future__ import annotations

from typing import Any

import httpx

from zope.interface import implementer

from plugins.shareout import IShareTarget
from plugins.shareout.common import MB, HTTPTarget, Stop, json_of, required
from server.domain.captions import TWITTER, adapt_caption
from server.domain.shareout import (
    CredentialDead,
    Credentials,
    Deleted,
    Failed,
    Outcome,
    PollSchedule,
    Posted,
    ShareRequest,
    Verified,
)

DEFAULT_POLLS = PollSchedule()


@implementer(IShareTarget)
class TwitterTarget(HTTPTarget):
    """Posts tweets with one photo or video."""

    name = "twitter"
    can_delete = True

    def __init__(
        self,
        http: httpx.Client,
        api_url: str = "https://api.x.com",
        *,
        polls: PollSchedule = DEFAULT_POLLS,
        chunk_size: int = 4 * MB,
        image_limit: int = 5 * MB,
        video_limit: int = 512 * MB,
        web_url: str = "https://x.com",
        **kwargs: Any,
    ) -> None:
        super().__init__(http, **kwargs)
        self.api = api_url.rstrip("/")
        self.polls = polls
        self.chunk_size = chunk_size
        self.image_limit = image_limit
        self.video_limit = video_limit
        self.web = web_url.rstrip("/")

    def check(self, credentials: Credentials) -> Credentials:
        required(credentials, "access_token")
        return credentials

    def failure(self, response: httpx.Response, credentials: Credentials) -> Outcome:
        outcome = super().failure(response, credentials)
        if isinstance(outcome, CredentialDead) and "duplicate" in outcome.reason:
            return Failed(outcome.reason)  # 403 for duplicate content: the token is fine
        return outcome

    # --- the calls -------------------------------------------------------------------------

    def _auth(self, credentials: Credentials) -> dict[str, str]:
        return {"Authorization": f"Bearer {credentials['access_token']}"}

    def _verify(self, credentials: Credentials) -> Outcome:
        me = self._me(credentials)
        return Verified(f"@{me.get('username', '?')}", {"user_id": str(me["id"])})

    def _me(self, credentials: Credentials) -> dict[str, Any]:
        r = self.send("GET", f"{self.api}/2/users/me", credentials, ok=(200,),
                      headers=self._auth(credentials))
        data = json_of(r).get("data")
        if not isinstance(data, dict) or "id" not in data:
            return {"id": "", "username": "?"}
        return data

    def _post(self, request: ShareRequest, credentials: Credentials) -> Outcome:
        media_id = self._upload(request, credentials)
        r = self.send(
            "POST", f"{self.api}/2/tweets", credentials, ok=(200, 201),
            headers=self._auth(credentials),
            json={
                "text": adapt_caption(request.caption, request.permalink, TWITTER),
                "media": {"media_ids": [media_id]},
            },
        )
        data = json_of(r).get("data") or {}
        if not data.get("id"):
            return Failed("the tweet answer has no id")
        return Posted(str(data["id"]), f"{self.web}/i/web/status/{data['id']}")

    def _upload(self, request: ShareRequest, credentials: Credentials) -> str:
        auth = self._auth(credentials)
        data = self.media_bytes(request, self.image_limit, self.video_limit)
        init = self.send(
            "POST", f"{self.api}/2/media/upload/initialize", credentials, headers=auth,
            json={
                "media_type": request.media.content_type,
                "total_bytes": len(data),
                "media_category": "tweet_video" if request.media.is_video else "tweet_image",
            },
        )
        media_id = str((json_of(init).get("data") or {}).get("id", ""))
        for index, at in enumerate(range(0, len(data), self.chunk_size)):
            self.send(
                "POST", f"{self.api}/2/media/upload/{media_id}/append", credentials,
                ok=(200, 201, 202, 204), headers=auth,
                files={"media": ("chunk", data[at : at + self.chunk_size],
                                 "application/octet-stream")},
                data={"segment_index": str(index)},
            )
        final = self.send("POST", f"{self.api}/2/media/upload/{media_id}/finalize",
                          credentials, headers=auth)
        pending, hint = self._processing(json_of(final), credentials)
        if pending:
            self.wait_until(
                self.polls, lambda: self._status(media_id, credentials), hint
            )
        return media_id

    def _status(self, media_id: str, credentials: Credentials) -> tuple[bool, float | None]:
        r = self.send("GET", f"{self.api}/2/media/upload", credentials, ok=(200,),
                      headers=self._auth(credentials),
                      params={"command": "STATUS", "media_id": media_id})
        pending, hint = self._processing(json_of(r), credentials)
        return not pending, hint

    def _processing(
        self, body: dict[str, Any], credentials: Credentials
    ) -> tuple[bool, float | None]:
        """(still processing?, seconds to wait) from an answer's ``processing_info``."""
        info = (body.get("data") or {}).get("processing_info") or {}
        state = info.get("state", "succeeded")
        if state == "failed":
            error = info.get("error") or {}
            message = credentials.scrub(str(error.get("message") or "media processing failed"))
            raise Stop(Failed(message))
        return state in ("pending", "in_progress"), info.get("check_after_secs")

    def _delete(self, remote_id: str, credentials: Credentials) -> Outcome:
        r = self.send("DELETE", f"{self.api}/2/tweets/{remote_id}", credentials,
                      ok=(200, 404), headers=self._auth(credentials))
        return Deleted(remote_id, already_gone=r.status_code == 404)

    def _find(self, request: ShareRequest, credentials: Credentials) -> Outcome | None:
        user_id = credentials.get("user_id") or self._me(credentials)["id"]
        r = self.send("GET", f"{self.api}/2/users/{user_id}/tweets", credentials, ok=(200,),
                      headers=self._auth(credentials),
                      params={"max_results": "20", "tweet.fields": "entities"})
        for tweet in json_of(r).get("data") or []:
            urls = (tweet.get("entities") or {}).get("urls") or []
            if any(u.get("expanded_url") == request.permalink for u in urls):
                return Posted(str(tweet["id"]), f"{self.web}/i/web/status/{tweet['id']}")
        return None
