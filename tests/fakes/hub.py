"""A receiver of Instagram real-time updates, as an app would run it: it answers the
subscription challenge (``GET`` with ``hub.mode=subscribe``, ``hub.challenge``,
``hub.verify_token``) when the verify token is its own, and accepts ``POST``s of JSON arrays
of updates only with a valid ``X-Hub-Signature`` (hex HMAC-SHA1 of the raw body, keyed with
the app's client secret, recomputed here), keeping each update once by its ``id``."""

from __future__ import annotations

import hashlib
import hmac
import threading
from typing import Any

from tests.fakes.http import FakeHTTPServer, Reply, Request


class FakeHub(FakeHTTPServer):
    """Receives at ``/hook``; ``echo`` picks how it answers challenges: ``right``, ``wrong``
    (a different string), or ``status`` (with ``challenge_status``)."""

    def __init__(self, secret: str = "", verify_token: str = "hub-token",
                 host: str = "127.0.0.1") -> None:
        super().__init__(host=host)
        self.secret, self.verify_token = secret, verify_token
        self.echo, self.challenge_status = "right", 200
        self.stalls = 0  # POSTs to hold (unrecorded) until ``release`` is set: a hung receiver
        self.release = threading.Event()
        self.updates: dict[str, dict[str, Any]] = {}
        self.repeats = 0
        self.hook_url = f"{self.url}/hook"
        self.route("GET", "/hook", self.challenge)
        self.route("POST", "/hook", self.receive, self.check_signature)

    def challenge(self, request: Request) -> Reply:
        q = {k: v[0] for k, v in request.query.items()}
        if q.get("hub.mode") != "subscribe" or q.get("hub.verify_token") != self.verify_token:
            return Reply(403, body=b"unknown verify token")
        if self.echo == "wrong":
            return Reply(200, body=b"not-the-challenge")
        return Reply(self.challenge_status, body=q.get("hub.challenge", "").encode())

    def check_signature(self, request: Request) -> Reply | None:
        expected = hmac.new(self.secret.encode(), request.body, hashlib.sha1).hexdigest()
        if not hmac.compare_digest(expected, request.header("X-Hub-Signature") or ""):
            return Reply(401, {"error": "bad signature"})
        return None

    def receive(self, request: Request) -> Reply:
        if request.content_type != "application/json":
            return Reply(415, {"error": "JSON only"})
        with self.lock:
            stall, self.stalls = self.stalls > 0, max(0, self.stalls - 1)
        if stall:
            self.release.wait(30)
            return Reply(200, body=b"")
        for item in request.json():
            with self.lock:
                if item["id"] in self.updates:
                    self.repeats += 1
                self.updates.setdefault(item["id"], item)
        return Reply(200, body=b"")

    def of(self, subscription_id: str) -> list[str]:
        """The media ids received for a subscription, sorted."""
        with self.lock:
            return sorted(u["data"]["media_id"] for u in self.updates.values()
                          if u["subscription_id"] == subscription_id)

    def posts(self) -> list[Request]:
        return self.received("POST", "/hook")
