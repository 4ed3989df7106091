"""The OpenAPI document and the Klein routes describe the same API."""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.task import Clock
from twisted.python.threadpool import ThreadPool
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyChannel

from server.api.openapi import document
from server.api.site import Request, Site, build_app
from server.config import load
from server.context import ServiceContext


def test_every_route_is_documented_and_nothing_else() -> None:
    """Each Klein rule (path and method) is an operation of the document, and the reverse."""
    cfg = load(env={"SHUTTERLOG_SECRETS_KEY": "k"}, search_default=False)
    ctx = ServiceContext.create(cfg, Clock(), ThreadPool())  # pools and clients are lazy
    app = build_app(ctx)
    routes = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules() for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    doc = document(app, ctx)
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert routes == documented
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["summary"] and op["responses"], (path, method)
            if path.startswith("/v1/users"):
                assert "default" in op["responses"], (path, method)
    ctx.close()


def test_an_oversized_body_is_never_buffered() -> None:
    """A request declaring a body over the limit gets a sink that keeps nothing."""

    def channel() -> DummyChannel:
        ch = DummyChannel()
        ch.site = Site(Resource())
        ch.site.max_body = 100
        return ch

    request = Request(channel())
    request.gotLength(10**9)
    assert request.too_large
    request.handleContentChunk(b"x" * 1000)
    assert _body(request) == b""
    chunked = Request(channel())
    chunked.gotLength(None)
    chunked.handleContentChunk(b"x" * 60)
    assert not chunked.too_large and _body(chunked) == b"x" * 60
    chunked.handleContentChunk(b"x" * 60)
    assert chunked.too_large and _body(chunked) == b""


def _body(request: Request) -> bytes:
    content: Any = request.content
    content.seek(0)
    return bytes(content.read())
