"""Share-out to a Facebook Page, through the Graph API, with a Page access token.

``post``: ``POST /{page-id}/photos`` (form ``url``: the medium's public rendition, which
Facebook fetches itself; ``caption``; ``published=true``) answers ``{"id", "post_id"}``.
``delete``: ``DELETE /{photo-id}``. The token travels in the ``Authorization`` header, never
in a URL (URLs are logged). Videos are not shared to Facebook (``Failed``, said plainly).

Graph errors are ``{"error": {"message", "type", "code", "error_subcode", ...}}``: code 190
(invalid or expired token), 102 (session), 10 and 200-299 (permission missing) mean the
credential is dead; 4, 17, 32, 613, 341, 80001-80014 (rate limits) and 1, 2 (transient) are
retried, after ``estimated_time_to_regain_access`` from ``X-Business-Use-Case-Usage`` when
given; anything else fails with Graph's message. No idempotency key exists: after a lost
outcome, ``find_existing`` looks for the permalink in the captions of the Page's latest
uploaded photos (same residual window as X: a photo not yet listed).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from zope.interface import implementer

from plugins.shareout import IShareTarget
from plugins.shareout.common import HTTPTarget, json_of, required
from server.domain.captions import FACEBOOK, adapt_caption
from server.domain.shareout import (
    CredentialDead,
    Credentials,
    Deleted,
    Failed,
    InvalidCredentials,
    Outcome,
    Posted,
    RetryLater,
    ShareRequest,
    Verified,
)

_DEAD = {190, 102, 10, *range(200, 300)}
_THROTTLED = {4, 17, 32, 341, 613, *range(80001, 80015)}
_TRANSIENT = {1, 2}
_GONE_SUBCODE = 33  # "Object with ID ... does not exist"


@implementer(IShareTarget)
class FacebookTarget(HTTPTarget):
    """Posts photos to one Facebook Page."""

    name = "facebook"
    can_delete = True

    def __init__(
        self,
        http: httpx.Client,
        graph_url: str = "https://graph.facebook.com/v23.0",
        *,
        web_url: str = "https://www.facebook.com",
        **kwargs: Any,
    ) -> None:
        super().__init__(http, **kwargs)
        self.graph = graph_url.rstrip("/")
        self.web = web_url.rstrip("/")

    def check(self, credentials: Credentials) -> Credentials:
        required(credentials, "access_token", "page_id")
        if not credentials["page_id"].strip().isdigit():
            raise InvalidCredentials("page_id must be the Page's numeric id")
        return credentials.with_fields(page_id=credentials["page_id"].strip())

    def failure(self, response: httpx.Response, credentials: Credentials) -> Outcome:
        """Graph's error object decides; the HTTP status only when there is none."""
        try:
            error = response.json().get("error")
        except (ValueError, AttributeError):
            error = None
        if not isinstance(error, dict) or not isinstance(error.get("code"), int):
            return super().failure(response, credentials)
        code, sub = error["code"], error.get("error_subcode")
        text = credentials.scrub(
            f"Graph error {code}{f'/{sub}' if sub else ''} ({error.get('type', '?')}): "
            f"{error.get('message', '')}"
        )
        if code in _DEAD:
            return CredentialDead(text)
        if code in _THROTTLED or code in _TRANSIENT or response.status_code >= 500:
            return RetryLater(text, self.hint(response) or _regain_access(response))
        return Failed(text)

    # --- the calls -------------------------------------------------------------------------

    def _auth(self, credentials: Credentials) -> dict[str, str]:
        return {"Authorization": f"Bearer {credentials['access_token']}"}

    def _verify(self, credentials: Credentials) -> Outcome:
        page = self.check(credentials)["page_id"]
        r = self.send("GET", f"{self.graph}/{page}", credentials, ok=(200,),
                      headers=self._auth(credentials), params={"fields": "id,name"})
        return Verified(str(json_of(r).get("name", page)), {})

    def _post(self, request: ShareRequest, credentials: Credentials) -> Outcome:
        if request.media.is_video:
            return Failed("videos are not shared to Facebook Pages, only photos")
        page = self.check(credentials)["page_id"]
        r = self.send(
            "POST", f"{self.graph}/{page}/photos", credentials, ok=(200,),
            headers=self._auth(credentials),
            data={
                "url": request.media.url,
                "caption": adapt_caption(request.caption, request.permalink, FACEBOOK),
                "published": "true",
            },
        )
        body = json_of(r)
        if not body.get("id"):
            return Failed("the photo answer has no id")
        return Posted(str(body["id"]), f"{self.web}/{body.get('post_id') or body['id']}")

    def _delete(self, remote_id: str, credentials: Credentials) -> Outcome:
        r = self.call("DELETE", f"{self.graph}/{remote_id}", headers=self._auth(credentials))
        if r.status_code == 200:
            return Deleted(remote_id)
        outcome = self.failure(r, credentials)
        if isinstance(outcome, Failed) and f"/{_GONE_SUBCODE} " in outcome.reason:
            return Deleted(remote_id, already_gone=True)
        return outcome

    def _find(self, request: ShareRequest, credentials: Credentials) -> Outcome | None:
        page = self.check(credentials)["page_id"]
        r = self.send("GET", f"{self.graph}/{page}/photos", credentials, ok=(200,),
                      headers=self._auth(credentials),
                      params={"type": "uploaded", "fields": "id,name,link", "limit": "25"})
        for photo in json_of(r).get("data") or []:
            if request.permalink in str(photo.get("name", "")):
                return Posted(str(photo["id"]), photo.get("link"))
        return None


def _regain_access(response: httpx.Response) -> float | None:
    """Seconds until Graph lifts a business-use-case throttle, from its usage header."""
    try:
        usage = json.loads(response.headers.get("x-business-use-case-usage", ""))
        minutes = [
            entry.get("estimated_time_to_regain_access", 0)
            for entries in usage.values()
            for entry in entries
        ]
    except (ValueError, AttributeError, TypeError):
        return None
    return 60.0 * max(minutes) if minutes and max(minutes) > 0 else None
