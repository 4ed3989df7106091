"""A fake Mastodon server: the parts of its REST API that share-out uses, checked the way
Mastodon checks them (see docs.joinmastodon.org, methods/media and methods/statuses)."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from typing import Any

import regex

from tests.fakes.http import FakeHTTPServer, Reply, Request

INVALID_TOKEN = Reply(401, {"error": "The access token is invalid"})
_URL = re.compile(r"https?://\S+")
_MENTION = re.compile(r"@(\w+)@[\w.-]+")


def mastodon_length(text: str) -> int:
    """Mastodon's StatusLengthValidator: graphemes, URLs as 23, remote mentions as local."""
    text = _MENTION.sub(r"@\1", _URL.sub("x" * 23, text))
    return len(regex.findall(r"\X", text))


class FakeMastodon(FakeHTTPServer):
    """One instance with one account; media needs ``processing_polls`` polls to be ready."""

    def __init__(self, token: str, max_characters: int = 500, processing_polls: int = 2,
                 image_limit: int = 16 * 1024 * 1024) -> None:
        super().__init__()
        self.token = token
        self.max_characters = max_characters
        self.processing_polls = processing_polls
        self.image_limit = image_limit
        self.media: dict[str, dict[str, Any]] = {}
        self.statuses: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, str] = {}
        self.created: Counter[str] = Counter()  # statuses created per Idempotency-Key
        self._ids = itertools.count(1000)
        auth = self.check_token
        self.route("GET", "/api/v1/accounts/verify_credentials", self.verify, auth)
        self.route("GET", "/api/v2/instance", self.instance)
        self.route("POST", "/api/v2/media", self.upload, auth)
        self.route("GET", r"/api/v1/media/(?P<id>\d+)", self.get_media, auth)
        self.route("POST", "/api/v1/statuses", self.create_status, auth)
        self.route("DELETE", r"/api/v1/statuses/(?P<id>\d+)", self.delete_status, auth)

    def check_token(self, request: Request) -> Reply | None:
        return None if request.bearer() == self.token else INVALID_TOKEN

    def verify(self, request: Request) -> Reply:
        return Reply(200, {"id": "1", "username": "alice", "acct": "alice"})

    def instance(self, request: Request) -> Reply:
        limits = {"max_characters": self.max_characters, "characters_reserved_per_url": 23}
        return Reply(200, {"domain": "fake.example", "configuration": {"statuses": limits}})

    def upload(self, request: Request) -> Reply:
        if request.content_type != "multipart/form-data":
            return Reply(422, {"error": "Validation failed: File can't be blank"})
        part = request.multipart().get("file")
        if part is None or not part.data:
            return Reply(422, {"error": "Validation failed: File can't be blank"})
        if not part.content_type.startswith(("image/", "video/")):
            return Reply(422, {"error": "Validation failed: File content type is invalid"})
        if len(part.data) > self.image_limit:
            return Reply(422, {"error": "Validation failed: File file size must be less "
                                        "than 16 MB"})
        media_id = str(next(self._ids))
        self.media[media_id] = {"id": media_id, "type": "image", "data": part.data,
                                "polls_left": self.processing_polls}
        ready = self.processing_polls == 0
        return Reply(200 if ready else 202, self._media_json(media_id))

    def _media_json(self, media_id: str) -> dict[str, Any]:
        m = self.media[media_id]
        url = None if m["polls_left"] else f"{self.url}/files/{media_id}.jpg"
        return {"id": media_id, "type": m["type"], "url": url,
                "preview_url": f"{self.url}/files/small/{media_id}.jpg"}

    def get_media(self, request: Request, id: str) -> Reply:
        m = self.media.get(id)
        if m is None:
            return Reply(404, {"error": "Record not found"})
        if m["polls_left"]:
            m["polls_left"] -= 1
            return Reply(206, body=b"")
        return Reply(200, self._media_json(id))

    def create_status(self, request: Request) -> Reply:
        key = request.header("Idempotency-Key")
        if key and key in self.keys:
            return Reply(200, self.statuses[self.keys[key]])
        if request.content_type == "application/json":
            body = request.json()
            text, media_ids = body.get("status", ""), body.get("media_ids", [])
            visibility = body.get("visibility", "public")
        else:
            form = request.form()
            text = form.get("status", [""])[0]
            media_ids = form.get("media_ids[]", [])
            visibility = form.get("visibility", ["public"])[0]
        if not text and not media_ids:
            return Reply(422, {"error": "Validation failed: Text can't be blank"})
        if mastodon_length(text) > self.max_characters:
            return Reply(422, {"error": "Validation failed: Text character limit of "
                                        f"{self.max_characters} exceeded"})
        if visibility not in ("public", "unlisted", "private", "direct"):
            return Reply(422, {"error": "Validation failed: Visibility is not included"})
        for media_id in media_ids:
            if media_id not in self.media:
                return Reply(422, {"error": "Validation failed: media not found"})
            if self.media[media_id]["polls_left"]:
                return Reply(422, {"error": "Cannot attach files that have not finished "
                                            "processing. Try again in a moment!"})
        status_id = str(next(self._ids))
        self.statuses[status_id] = {
            "id": status_id, "url": f"{self.url}/@alice/{status_id}", "text": text,
            "visibility": visibility, "media_attachments": [{"id": m} for m in media_ids],
        }
        if key:
            self.keys[key] = status_id
            self.created[key] += 1
        return Reply(200, self.statuses[status_id])

    def delete_status(self, request: Request, id: str) -> Reply:
        status = self.statuses.pop(id, None)
        if status is None:
            return Reply(404, {"error": "Record not found"})
        return Reply(200, status)
