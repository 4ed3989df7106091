"""A fake Facebook Graph API: a Page's photos, with Graph's error objects."""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import urlsplit

from tests.fakes.http import FakeHTTPServer, Reply, Request

VERSION = "v23.0"


def graph_error(status: int, code: int, message: str, kind: str = "OAuthException",
                subcode: int | None = None) -> Reply:
    """A Graph API error object (developers.facebook.com/docs/graph-api/guides/error-handling)."""
    error: dict[str, Any] = {"message": message, "type": kind, "code": code,
                             "fbtrace_id": "AbCdEf123"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return Reply(status, {"error": error})


class FakeGraph(FakeHTTPServer):
    """One Page with one Page access token."""

    def __init__(self, page_id: str, token: str) -> None:
        super().__init__()
        self.page_id, self.token = page_id, token
        self.photos: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(10_150_000_000_000_001)
        self.base = f"{self.url}/{VERSION}"
        auth = self.check_token
        self.route("GET", rf"/{VERSION}/{page_id}", self.page, auth)
        self.route("POST", rf"/{VERSION}/(?P<page>\d+)/photos", self.upload, auth)
        self.route("GET", rf"/{VERSION}/{page_id}/photos", self.list_photos, auth)
        self.route("DELETE", rf"/{VERSION}/(?P<id>\d+)", self.delete, auth)

    def check_token(self, request: Request) -> Reply | None:
        token = request.bearer() or request.query.get("access_token", [""])[0]
        if token != self.token:
            return graph_error(400, 190, "Error validating access token: The session has "
                                         "been invalidated because the user changed their "
                                         "password.", subcode=460)
        return None

    def page(self, request: Request) -> Reply:
        return Reply(200, {"id": self.page_id, "name": "Alice's Photos"})

    def upload(self, request: Request, page: str) -> Reply:
        if page != self.page_id:
            return graph_error(403, 200, "(#200) Permissions error", kind="OAuthException")
        if request.content_type != "application/x-www-form-urlencoded":
            return graph_error(400, 100, "(#100) unsupported content type",
                               kind="GraphMethodException")
        form = {k: v[0] for k, v in request.form().items()}
        url = form.get("url", "")
        if urlsplit(url).scheme not in ("http", "https"):
            return graph_error(400, 100, "(#100) Invalid parameter: url", kind="OAuthException")
        caption = form.get("caption", "")
        if len(caption) > 63206:
            return graph_error(400, 100, "(#100) caption too long", kind="OAuthException")
        photo_id = str(next(self._ids))
        post_id = f"{self.page_id}_{photo_id}"
        self.photos[photo_id] = {"id": photo_id, "name": caption, "url": url,
                                 "published": form.get("published", "true"),
                                 "link": f"https://www.facebook.com/photo/?fbid={photo_id}"}
        return Reply(200, {"id": photo_id, "post_id": post_id})

    def list_photos(self, request: Request) -> Reply:
        photos = [{k: p[k] for k in ("id", "name", "link")} for p in self.photos.values()]
        return Reply(200, {"data": list(reversed(photos))})

    def delete(self, request: Request, id: str) -> Reply:
        if self.photos.pop(id, None) is None:
            return graph_error(400, 100, f"Unsupported delete request. Object with ID '{id}' "
                               "does not exist", kind="GraphMethodException", subcode=33)
        return Reply(200, {"success": True})
