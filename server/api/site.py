"""The web site: the Klein app with every feature's routes, error handling in the envelope,
request ids, access logs without secrets, and request metrics."""

from __future__ import annotations

import itertools
import re
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from prometheus_client import Counter, Histogram
from werkzeug.exceptions import MethodNotAllowed, NotFound

from klein import Klein
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.iweb import IRequest

from server.api import (
    blobs,
    comments,
    feeds,
    health,
    likes,
    links,
    locations,
    media,
    metrics,
    oauth,
    openapi,
    push,
    relationships,
    stream,
    subscriptions,
    tags,
    users,
)
from server.api.endpoint import declared
from server.api.envelope import APIError, render_error
from server.context import ServiceContext
from server.logs import redact_uri
from server.outages import outage
from server.realtime import Hub

log = Logger()

REQUESTS = Counter(
    "shutterlog_http_requests_total", "HTTP requests answered", ["method", "code"]
)
LATENCY = Histogram(
    "shutterlog_http_request_seconds",
    "Time from request received to response finished",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

#: Each feature module's ``routes(app, ctx)``; later features append theirs.
ROUTE_MODULES: list[Callable[[Klein, ServiceContext], None]] = [
    health.routes, metrics.routes, users.routes, relationships.routes, oauth.routes,
    media.routes, likes.routes, comments.routes, feeds.routes, tags.routes, locations.routes,
    blobs.routes, subscriptions.routes, links.routes, push.routes, openapi.routes,
]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
#: Request ids: a random per-process prefix and a counter (unique without a syscall each).
_ID_PREFIX = secrets.token_hex(6) + "-"
_ID_COUNTER = itertools.count(1)


class _Discard:
    """Where the body of a request over the size limit goes: nowhere."""

    def write(self, data: bytes) -> None:
        pass

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def tell(self) -> int:
        return 0

    def read(self, size: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        pass


class Request(server.Request):
    """A request that knows its id and when it started, and refuses a body over the site's
    ``max_body`` with 413 without keeping any of it: a declared Content-Length over the
    limit, or a chunked body that grows past it, is discarded as it arrives."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Bodies are parsed by the endpoint pipeline (or streamed by upload routes): never
        # by twisted.web, which would read a whole multipart upload into memory for args.
        self._parsePOSTFormSubmission = False
        self.started = time.perf_counter()
        self.request_id = f"{_ID_PREFIX}{next(_ID_COUNTER):x}"
        self.too_large = False
        self._received = 0

    def _limit(self) -> int | None:
        """The body limit of this request's route (known from the request line, before the
        body): a route's own ``max_body``, else the site's."""
        site = getattr(self.channel, "site", None)
        command = getattr(self.channel, "_command", None) or self.method
        path = (getattr(self.channel, "_path", None) or self.uri or b"").split(b"?", 1)[0]
        for method, pattern, limit in getattr(site, "route_limits", ()):
            if command == method and pattern.match(path):
                return int(limit)
        return getattr(site, "max_body", None)

    def gotLength(self, length: int | None) -> None:
        limit = self._limit()
        if limit is not None and length is not None and length > limit:
            self.too_large = True
            self.content = _Discard()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        self._received += len(data)
        limit = self._limit()
        content: Any = self.content
        if not self.too_large and limit is not None and self._received > limit:
            self.too_large = True
            content.close()
            self.content = content = _Discard()
        content.write(data)

    def process(self) -> None:
        given = (self.getHeader(b"x-request-id") or b"").decode("ascii", "replace")
        if _REQUEST_ID.match(given):
            self.request_id = given
        self.setHeader(b"x-request-id", self.request_id.encode())
        if self.too_large:
            self._refuse(APIError(413, "APIRequestTooLargeError",
                                  f"the request body is larger than {self._limit()} bytes"))
            return
        try:  # Klein would answer a path that is not UTF-8 outside the envelope
            unquote_to_bytes(self.path).decode()
        except UnicodeDecodeError:
            self._refuse(APIError(400, "APIInvalidParametersError",
                                  "the URL's path is not UTF-8 text"))
            return
        super().process()

    def _refuse(self, error: APIError) -> None:
        """Answer ``error`` without routing the request."""
        self.site = getattr(self.channel, "site", None)
        self.write(render_error(self, error, self.request_id))
        self.finish()


class Site(server.Site):
    """Counts and times every request; logs it with credentials masked."""

    requestFactory = Request
    max_body: int | None = None  # bytes; larger request bodies get 413 unread
    #: (method, path pattern, limit) of routes with a limit of their own (uploads)
    route_limits: tuple[tuple[bytes, re.Pattern[bytes], int], ...] = ()

    #: The real-time WebSocket resource, answering ``/v1/stream`` (outside the Klein app:
    #: autobahn takes the connection over from twisted.web)
    stream: Any = None

    def getResourceFor(self, request: Any) -> Any:
        if self.stream is not None and request.path == stream.PATH:
            return self.stream
        return super().getResourceFor(request)

    def log(self, request: Any) -> None:
        duration = time.perf_counter() - getattr(request, "started", time.perf_counter())
        method = request.method.decode("ascii", "replace")
        REQUESTS.labels(method, str(request.code)).inc()
        LATENCY.observe(duration)
        log.debug(
            "{method} {uri} {code} {ms:.1f}ms id={request_id}",
            method=method,
            uri=redact_uri(request.uri),
            code=request.code,
            ms=duration * 1000,
            request_id=getattr(request, "request_id", ""),
        )


def build_app(ctx: ServiceContext) -> Klein:
    """The Klein app with every feature's routes and the envelope error handlers."""
    app = Klein()
    for add_routes in ROUTE_MODULES:
        add_routes(app, ctx)

    @app.handle_errors(APIError)
    def api_error(request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        assert isinstance(error, APIError)
        return render_error(request, error, _request_id(request))

    @app.handle_errors(NotFound)
    def unknown_route(request: IRequest, failure: Failure) -> bytes:
        path = request.path.decode("utf-8", "replace")
        error = APIError(404, "APINotFoundError", f"no such endpoint: {path}")
        return render_error(request, error, _request_id(request))

    @app.handle_errors(MethodNotAllowed)
    def wrong_method(request: IRequest, failure: Failure) -> bytes:
        allowed = getattr(failure.value, "valid_methods", None) or []
        request.setHeader(b"allow", ", ".join(allowed).encode())
        method = request.method.decode("ascii", "replace")
        error = APIError(405, "APIMethodNotAllowedError", f"{method} is not allowed here")
        return render_error(request, error, _request_id(request))

    @app.handle_errors(Exception)
    def internal(request: IRequest, failure: Failure) -> bytes:
        request_id = _request_id(request)
        if failure.value is not None and outage(failure.value):  # a server we need is down
            log.warn("request {request_id}: a backing service is unavailable: {error}",
                     request_id=request_id, error=f"{type(failure.value).__name__}")
            request.setHeader(b"retry-after", b"1")
            error = APIError(503, "APIServiceUnavailableError",
                             "a service this request needs is unavailable; try again")
            return render_error(request, error, request_id)
        log.failure("request {request_id} failed", failure, request_id=request_id)
        error = APIError(500, "APIError", "internal error; quote the request_id when reporting it")
        return render_error(request, error, request_id)

    return app


def build_site(ctx: ServiceContext, hub: Hub | None = None) -> Site:
    """The twisted.web site serving the app (and the real-time stream, given a hub)."""
    app = build_app(ctx)
    site = Site(app.resource())
    if hub is not None:
        site.stream = stream.resource(ctx, hub)
    site.displayTracebacks = False
    site.max_body = ctx.config.api.max_body_bytes
    site.route_limits = tuple((ep.method.encode(), _route_pattern(ep.path), ep.max_body)
                              for ep in declared(app) if ep.max_body is not None)
    return site


def _route_pattern(path: str) -> re.Pattern[bytes]:
    """A pattern matching the raw paths of an OpenAPI path (``{arg}`` is one segment)."""
    parts = [("[^/]+" if p.startswith("{") else re.escape(p)) for p in path.split("/")]
    return re.compile("/".join(parts).encode() + b"$")


def _request_id(request: IRequest) -> str:
    return str(getattr(request, "request_id", ""))
