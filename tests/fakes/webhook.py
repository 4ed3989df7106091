"""A webhook receiver that checks what a careful receiver checks: the signature over
``"<t>.<raw body>"``, the timestamp's age (300 s), the JSON body, and duplicate deliveries."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.fakes.http import FakeHTTPServer, Reply, Request

TOLERANCE = 300


class FakeReceiver(FakeHTTPServer):
    """Receives share events at ``/hooks/shutterlog``."""

    def __init__(self, secret: str, clock: Callable[[], float] = time.time,
                 barrier: threading.Barrier | None = None) -> None:
        super().__init__()
        self.secret, self.clock, self.barrier = secret, clock, barrier
        self.events: dict[str, dict[str, Any]] = {}
        self.hook_url = f"{self.url}/hooks/shutterlog"
        self.route("POST", "/hooks/shutterlog", self.receive, self.check_signature)

    def check_signature(self, request: Request) -> Reply | None:
        fields = dict(p.split("=", 1) for p in (request.header("X-Shutterlog-Signature") or
                                                "").split(",") if "=" in p)
        if "t" not in fields or "v1" not in fields or not fields["t"].isdigit():
            return Reply(400, {"error": "missing signature"})
        if abs(self.clock() - int(fields["t"])) > TOLERANCE:
            return Reply(400, {"error": "timestamp outside the tolerance"})
        expected = hmac.new(self.secret.encode(), fields["t"].encode() + b"." + request.body,
                            hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, fields["v1"]):
            return Reply(401, {"error": "bad signature"})
        return None

    def receive(self, request: Request) -> Reply:
        if request.content_type != "application/json":
            return Reply(415, {"error": "JSON only"})
        if self.barrier is not None:  # hold until that many deliveries are in flight at once
            self.barrier.wait()
        event = request.json()
        key = request.header("Idempotency-Key")
        if not key or key != event.get("id"):
            return Reply(400, {"error": "Idempotency-Key must be the event id"})
        with self.lock:
            first = key not in self.events
            self.events.setdefault(key, event)
        return Reply(200, {"id": f"r-{key}", "duplicate": not first})
