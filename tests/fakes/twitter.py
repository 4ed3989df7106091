"""A fake X API v2: chunked media upload, tweets, the user's timeline, with X's checks."""

from __future__ import annotations

import itertools
import re
import unicodedata
from typing import Any

import regex

from tests.fakes.http import FakeHTTPServer, Reply, Request

_URL = re.compile(r"https?://\S+")


def problem(status: int, title: str, detail: str) -> Reply:
    """An X API v2 error: an RFC 7807 problem document."""
    return Reply(status, {"title": title, "detail": detail, "type": "about:blank",
                          "status": status})


def tweet_length(text: str) -> int:
    """twitter-text v3 weighted length: URLs 23, weight 1 below U+1100 and in the general
    punctuation ranges, 2 elsewhere, an emoji sequence 2 (counted in hundredths)."""
    text = _URL.sub("x" * 23, unicodedata.normalize("NFC", text))
    total = 0
    for cluster in regex.findall(r"\X", text):
        weights = [1 if (o < 0x1100 or 0x2000 <= o <= 0x200D or 0x2010 <= o <= 0x201F
                         or 0x2032 <= o <= 0x2037) else 2 for o in map(ord, cluster)]
        total += 2 if len(weights) > 1 and 2 in weights else sum(weights)
    return total


class FakeTwitter(FakeHTTPServer):
    """One user's X account; videos need ``processing_polls`` STATUS checks."""

    def __init__(self, token: str, processing_polls: int = 1,
                 image_limit: int = 5 * 1024 * 1024) -> None:
        super().__init__()
        self.token = token
        self.processing_polls = processing_polls
        self.image_limit = image_limit
        self.uploads: dict[str, dict[str, Any]] = {}
        self.tweets: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1_880_028_106_020_515_840)
        auth = self.check_token
        self.route("GET", "/2/users/me", self.me, auth)
        self.route("POST", "/2/media/upload/initialize", self.initialize, auth)
        self.route("POST", r"/2/media/upload/(?P<id>\d+)/append", self.append, auth)
        self.route("POST", r"/2/media/upload/(?P<id>\d+)/finalize", self.finalize, auth)
        self.route("GET", "/2/media/upload", self.status, auth)
        self.route("POST", "/2/tweets", self.create, auth)
        self.route("DELETE", r"/2/tweets/(?P<id>\d+)", self.delete, auth)
        self.route("GET", r"/2/users/42/tweets", self.timeline, auth)

    def check_token(self, request: Request) -> Reply | None:
        if request.bearer() != self.token:
            return problem(401, "Unauthorized", "Unauthorized")
        return None

    def me(self, request: Request) -> Reply:
        return Reply(200, {"data": {"id": "42", "name": "Alice", "username": "alice"}})

    def initialize(self, request: Request) -> Reply:
        if request.content_type != "application/json":
            return problem(400, "Invalid Request", "Content-Type must be application/json")
        body = request.json()
        missing = [f for f in ("media_type", "total_bytes", "media_category") if f not in body]
        if missing:
            return problem(400, "Invalid Request", f"missing {', '.join(missing)}")
        if body["media_category"] == "tweet_image" and body["total_bytes"] > self.image_limit:
            return problem(400, "Invalid Request", "File size exceeds 5242880 bytes.")
        media_id = str(next(self._ids))
        self.uploads[media_id] = {"total": body["total_bytes"], "chunks": {}, "state": "init",
                                  "video": body["media_category"] == "tweet_video"}
        return Reply(200, {"data": {"id": media_id, "media_key": f"3_{media_id}",
                                    "expires_after_secs": 86400}})

    def append(self, request: Request, id: str) -> Reply:
        upload = self.uploads.get(id)
        if upload is None or request.content_type != "multipart/form-data":
            return problem(400, "Invalid Request", "unknown media or not multipart")
        parts = request.multipart()
        if "media" not in parts or "segment_index" not in parts:
            return problem(400, "Invalid Request", "media and segment_index are required")
        upload["chunks"][int(parts["segment_index"].data)] = parts["media"].data
        return Reply(200, {"data": {"expires_at": 2_000_000_000}})

    def finalize(self, request: Request, id: str) -> Reply:
        upload = self.uploads.get(id)
        if upload is None:
            return problem(400, "Invalid Request", "unknown media id")
        data = b"".join(upload["chunks"][i] for i in sorted(upload["chunks"]))
        if len(data) != upload["total"]:
            return problem(400, "Invalid Request", "File size mismatch with total_bytes")
        upload["data"], upload["polls_left"] = data, (
            self.processing_polls if upload["video"] else 0)
        upload["state"] = "pending" if upload["polls_left"] else "succeeded"
        return Reply(200, self._media(id))

    def _media(self, media_id: str) -> dict[str, Any]:
        upload = self.uploads[media_id]
        data: dict[str, Any] = {"id": media_id, "media_key": f"3_{media_id}",
                                "size": len(upload.get("data", b"")), "expires_after_secs": 86400}
        if upload["video"]:
            data["processing_info"] = {"state": upload["state"], "check_after_secs": 1}
        return {"data": data}

    def status(self, request: Request) -> Reply:
        media_id = request.query.get("media_id", [""])[0]
        if request.query.get("command") != ["STATUS"] or media_id not in self.uploads:
            return problem(400, "Invalid Request", "command=STATUS and media_id required")
        upload = self.uploads[media_id]
        if upload["polls_left"]:
            upload["polls_left"] -= 1
            upload["state"] = "in_progress" if upload["polls_left"] else "succeeded"
        return Reply(200, self._media(media_id))

    def create(self, request: Request) -> Reply:
        body = request.json() if request.content_type == "application/json" else {}
        text, media_ids = body.get("text", ""), body.get("media", {}).get("media_ids", [])
        if not text and not media_ids:
            return problem(400, "Invalid Request", "text or media is required")
        if tweet_length(text) > 280:
            return problem(400, "Invalid Request", "Your Tweet text is too long.")
        for media_id in media_ids:
            if self.uploads.get(media_id, {}).get("state") != "succeeded":
                return problem(400, "Invalid Request", f"media {media_id} is not ready")
        if any(t["text"] == text for t in self.tweets.values()):
            return problem(403, "Forbidden",
                           "You are not allowed to create a Tweet with duplicate content.")
        tweet_id = str(next(self._ids))
        self.tweets[tweet_id] = {"id": tweet_id, "text": text, "media_ids": media_ids}
        return Reply(201, {"data": {"id": tweet_id, "text": text}})

    def delete(self, request: Request, id: str) -> Reply:
        if self.tweets.pop(id, None) is None:
            return problem(404, "Not Found Error", f"Could not find tweet with id: [{id}].")
        return Reply(200, {"data": {"deleted": True}})

    def timeline(self, request: Request) -> Reply:
        data = [
            {"id": t["id"], "text": t["text"],
             "entities": {"urls": [{"expanded_url": u} for u in _URL.findall(t["text"])]}}
            for t in reversed(self.tweets.values())
        ]
        return Reply(200, {"data": data, "meta": {"result_count": len(data)}})
