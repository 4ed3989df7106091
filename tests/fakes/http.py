"""A small, generic fake HTTP(S) server for tests of clients of outside services.

It runs in a thread on a free loopback port, routes requests by method and path pattern to
handlers that return ``Reply`` objects, records every request, and serves scripted replies
(``script``) ahead of the handlers: a 429 with its headers, a 503, a 401. The service fakes
(``tests/fakes/mastodon.py`` ...) build on it; nothing here is specific to one service.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


@dataclass
class Part:
    """One part of a multipart/form-data body."""

    data: bytes
    filename: str | None
    content_type: str


@dataclass
class Request:
    """A request as the fake server received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    at: float = field(default_factory=time.monotonic)  # when it arrived

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def bearer(self) -> str | None:
        """The token of an ``Authorization: Bearer`` header."""
        scheme, _, token = (self.header("Authorization") or "").partition(" ")
        return token if scheme.lower() == "bearer" and token else None

    @property
    def content_type(self) -> str:
        return (self.header("Content-Type") or "").split(";")[0].strip().lower()

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, list[str]]:
        """An application/x-www-form-urlencoded body's fields (each a list of values)."""
        return parse_qs(self.body.decode(), keep_blank_values=True)

    def multipart(self) -> dict[str, Part]:
        """A multipart/form-data body's parts by field name."""
        head = f"Content-Type: {self.header('Content-Type')}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + self.body)
        parts: dict[str, Part] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            parts[str(name)] = Part(data, part.get_filename(), part.get_content_type())
        return parts


@dataclass
class Reply:
    """What a handler answers: a status, a JSON document or raw bytes, headers."""

    status: int = 200
    json: Any = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[..., Reply]


class FakeHTTPServer:
    """Routes, records and answers requests; use as a context manager or start/stop."""

    def __init__(self, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.scripted: list[tuple[str, re.Pattern[str], Reply]] = []
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, 0), _handler_class(self))
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://{host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    def route(self, method: str, pattern: str, handler: Handler,
              guard: Callable[[Request], Reply | None] | None = None) -> None:
        """Answer ``method`` on paths matching ``pattern`` with ``handler(request, **groups)``;
        ``guard(request)`` runs first and answers instead when it returns a reply (auth)."""

        def guarded(request: Request, **groups: str) -> Reply:
            refused = guard(request) if guard is not None else None
            return refused if refused is not None else handler(request, **groups)

        self.routes.append((method, re.compile(pattern), guarded))

    def script(self, method: str, pattern: str, *replies: Reply) -> None:
        """Answer the next matching requests with ``replies``, in order, before any handler."""
        with self.lock:
            self.scripted.extend((method, re.compile(pattern), r) for r in replies)

    def received(self, method: str, pattern: str) -> list[Request]:
        """The recorded requests matching ``method`` and the path regex."""
        regex = re.compile(pattern)
        return [r for r in self.requests if r.method == method and regex.fullmatch(r.path)]

    def dispatch(self, request: Request) -> Reply:
        with self.lock:
            self.requests.append(request)
            for i, (method, pattern, reply) in enumerate(self.scripted):
                if method == request.method and pattern.fullmatch(request.path):
                    del self.scripted[i]
                    return reply
        for method, pattern, handler in self.routes:
            match = pattern.fullmatch(request.path)
            if method == request.method and match:
                return handler(request, **match.groupdict())
        return Reply(404, {"error": "Record not found"})

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler_class(fake: FakeHTTPServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def handle_any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            request = Request(self.command, parts.path, query, self.headers, body)
            try:
                reply = fake.dispatch(request)
            except Exception as e:  # a broken fake must show, not hang the client
                reply = Reply(500, {"error": f"fake server bug: {e!r}"})
            payload = reply.body if reply.json is None else json.dumps(reply.json).encode()
            self.send_response(reply.status)
            headers = {"Content-Length": str(len(payload))} | reply.headers
            if reply.json is not None:
                headers.setdefault("Content-Type", "application/json; charset=utf-8")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the test asserts on ``fake.requests``

    return Handler
