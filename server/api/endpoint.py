"""Endpoints: the one pipeline every API route runs, declared with what the OpenAPI document
says about it.

A feature declares an endpoint with ``API.endpoint`` (method, path, scope, parameters, the
schema of ``data``) over a synchronous handler ``fn(call: Call) -> Reply``. The pipeline copies
what it needs from the request on the reactor thread, then makes ONE hop to the threadpool
where it looks the token up and takes from the rate-limit buckets (one Redis round trip),
verifies ``sig``, checks the scope, parses and checks the parameters and the body, and runs
the handler (its store interactions included). Back on the reactor it renders the envelope
and sets ``X-Ratelimit-Limit``/``X-Ratelimit-Remaining`` on every answer, errors included.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from klein import Klein
from twisted.web.iweb import IRequest

from server.api import auth
from server.api.envelope import JSON, APIError, invalid, render, render_error
from server.api.params import Param, collect, parse_body, parse_query, signable
from server.context import ServiceContext
from server.domain.ratelimit import Verdict
from server.store.tokens import TokenInfo

#: Styles of answer: the Instagram envelope; flat JSON as /oauth/access_token answers; HTML.
ENVELOPE, FLAT, HTML = "envelope", "flat", "html"
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,64}$")
_PATH_ARG = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Reply:
    """A handler's answer: ``data`` for the envelope (with ``pagination``), or a ready
    ``body`` (HTML, flat JSON, redirects) with its content type and headers."""

    data: Any = None
    pagination: dict[str, Any] | None = None
    code: int = 200
    body: bytes | None = None
    content_type: bytes = JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()
    cookies: tuple[tuple[str, str, int], ...] = ()  # (name, value, max-age seconds)
    meta: dict[str, Any] | None = None  # extra fields of the envelope's meta (e.g. partial)


@dataclass(frozen=True)
class Raw:
    """What the pipeline needs of a request, copied on the reactor thread."""

    method: str
    path: str
    query: bytes
    body: bytes
    content_type: str
    authorization: str | None
    idempotency_key: str | None
    address: str
    request_id: str
    cookies: dict[str, str]
    path_args: dict[str, str]
    upload: Any = None  # a streamed endpoint's body: the spooled file, unread

    @classmethod
    def of(cls, request: IRequest, path_args: dict[str, str], stream: bool = False) -> Raw:
        def header(name: bytes) -> str | None:
            value = request.getHeader(name)
            return value.decode("latin-1") if value is not None else None

        uri: bytes = request.uri
        content = request.content
        body = b""
        if content is not None:
            content.seek(0)
            if not stream:
                body = content.read()
        return cls(
            method=request.method.decode("ascii", "replace"),
            path=request.path.decode("utf-8", "replace"),
            query=uri.partition(b"?")[2],
            body=body,
            content_type=header(b"content-type") or "",
            authorization=header(b"authorization"),
            idempotency_key=header(b"idempotency-key"),
            address=request.getClientAddress().host,
            request_id=str(getattr(request, "request_id", "")),
            cookies={k.decode("latin-1"): v.decode("latin-1")
                     for k, v in getattr(request, "received_cookies", {}).items()},
            path_args=path_args,
            upload=content if stream else None,
        )


Handler = Callable[["Call"], Reply]


@dataclass(frozen=True)
class Endpoint:
    """An endpoint's declaration: the route, its checks, and its OpenAPI description."""

    method: str
    path: str  # OpenAPI form: /v1/users/{user_id}
    summary: str
    handler: Handler
    params: tuple[Param, ...] = ()
    scope: str | None = "basic"  # None: no access token needed
    data: dict[str, Any] | None = None  # JSON schema of the envelope's data
    paginated: bool = False
    description: str = ""
    tag: str = "users"
    style: str = ENVELOPE
    body_types: tuple[str, ...] = ("application/x-www-form-urlencoded", "application/json")
    #: Streamed body (multipart uploads): not read into memory nor parsed by the pipeline;
    #: the handler reads ``call.raw.upload``. ``max_body`` overrides ``api.max_body_bytes``
    #: for this route (the site refuses a larger body with 413 before reading it).
    stream: bool = False
    max_body: int | None = None

    @property
    def klein_path(self) -> str:
        return _PATH_ARG.sub(r"<\1>", self.path)


@dataclass
class Call:
    """One request as the handler sees it, in the threadpool."""

    ctx: ServiceContext
    endpoint: Endpoint
    raw: Raw
    query: dict[str, str]
    body: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)
    token: TokenInfo | None = None
    verdict: Verdict | None = None

    @property
    def user_id(self) -> int:
        """The token's user (the endpoint requires a token)."""
        assert self.token is not None
        return self.token.user_id

    def require_scope(self, scope: str) -> None:
        """Refuse unless the token has ``scope`` (for checks that depend on the target)."""
        assert self.token is not None
        auth.require_scope(self.token, scope)

    def idempotency_key(self, principal: str) -> str | None:
        """The request's ``Idempotency-Key`` scoped to ``principal`` (a user, an app, a
        username being claimed) and to this method, path and parameters, so a retry of one
        request always finds it and two different requests never share it: the same key sent
        with other parameters is another request, never answered with the first one's result
        (a sign-up with another password, a token grant for another user). The parameters
        may hold a password: they are digested with the service's secret."""
        key = self.raw.idempotency_key
        if key is None:
            return None
        params = json.dumps(self.params, sort_keys=True, default=str, separators=(",", ":"))
        scope = f"idempotency\0{self.raw.method} {self.raw.path} {key}\0{params}".encode()
        digest = hmac.new(self.ctx.config.secrets.key.encode(), scope, hashlib.sha256)
        return f"{principal}:{digest.hexdigest()[:40]}"


#: The attribute of a Klein app listing its declared endpoints (for the OpenAPI document).
_DECLARED = "_shutterlog_endpoints"


def declared(app: Klein) -> list[Endpoint]:
    """The endpoints declared on ``app``, in declaration order."""
    return list(getattr(app, _DECLARED, []))


class API:
    """Declares endpoints on a Klein app for one service context."""

    def __init__(self, app: Klein, ctx: ServiceContext) -> None:
        self.app = app
        self.ctx = ctx

    def endpoint(self, method: str, path: str, summary: str, **options: Any
                 ) -> Callable[[Handler], Handler]:
        """Decorator: serve ``handler`` at ``method path`` through the pipeline."""

        def register(handler: Handler) -> Handler:
            ep = Endpoint(method, path, summary, handler, **options)
            if not hasattr(self.app, _DECLARED):
                setattr(self.app, _DECLARED, [])
            taken = {(e.method, e.handler.__name__) for e in getattr(self.app, _DECLARED)}
            if (method, handler.__name__) in taken:  # Klein would silently replace the route
                raise ValueError(f"two {method} endpoints named {handler.__name__!r}")
            getattr(self.app, _DECLARED).append(ep)
            self._route(ep)
            return handler

        return register

    def _route(self, ep: Endpoint) -> None:
        ctx = self.ctx

        async def serve(request: IRequest, **path_args: str) -> bytes:
            raw = Raw.of(request, path_args, ep.stream)
            try:
                reply, verdict = await ctx.blocking(run, ctx, ep, raw)
            except APIError as error:
                ratelimit_headers(request, getattr(error, "verdict", None))
                return render_failure(request, ep.style, error, raw.request_id)
            except Exception as e:
                ratelimit_headers(request, getattr(e, "verdict", None))
                raise
            ratelimit_headers(request, verdict)
            return render_reply(request, reply)

        serve.__name__ = f"{ep.method.lower()}_{ep.handler.__name__}"
        self.app.route(ep.klein_path, methods=[ep.method], endpoint=serve.__name__)(serve)


def run(ctx: ServiceContext, ep: Endpoint, raw: Raw) -> tuple[Reply, Verdict]:
    """The pipeline, in the threadpool. Errors carry the rate-limit verdict as ``verdict``."""
    verdict: Verdict | None = None
    try:
        query = parse_query(raw.query)
        streamed = raw.method != "POST" or ep.stream
        body = {} if streamed else parse_body(raw.content_type, raw.body)
        creds = auth.credentials(query, raw.authorization, raw.address, body)
        info, verdict = auth.limit(ctx.limiter, creds)
        if ep.scope is not None:
            info = auth.require_token(creds, info)
        auth.check_signature(ctx.router, ctx.box, raw.path.removeprefix("/v1"),
                             signable(query, body), info)
        if ep.scope is not None and info is not None:
            auth.require_scope(info, ep.scope)
        if raw.idempotency_key is not None and not _IDEMPOTENCY_KEY.match(raw.idempotency_key):
            raise invalid("Idempotency-Key must be 1-64 printable ASCII characters")
        call = Call(ctx, ep, raw, query, body, token=info, verdict=verdict)
        call.params = collect(ep.params, raw.path_args, query, body)
        return ep.handler(call), verdict
    except Exception as e:
        e.verdict = verdict or getattr(e, "verdict", None)  # type: ignore[attr-defined]
        raise


def ratelimit_headers(request: IRequest, verdict: Verdict | None) -> None:
    if verdict is None:
        return
    request.setHeader(b"x-ratelimit-limit", str(verdict.limit).encode())
    request.setHeader(b"x-ratelimit-remaining", str(verdict.remaining).encode())
    if not verdict.allowed:
        request.setHeader(b"retry-after", str(verdict.retry_after_s).encode())


def render_reply(request: IRequest, reply: Reply) -> bytes:
    for header, content in reply.headers:
        request.setHeader(header, content)
    web: Any = request  # twisted.web.server.Request: addCookie takes more than IRequest says
    for name, value, max_age in reply.cookies:
        web.addCookie(name.encode(), value.encode(), path=b"/oauth", max_age=str(max_age),
                      httpOnly=True, secure=request.isSecure(), sameSite="lax")
    if reply.body is None:
        return render(request, reply.data, code=reply.code, pagination=reply.pagination,
                      meta=reply.meta)
    request.setResponseCode(reply.code)
    request.setHeader(b"content-type", reply.content_type)
    return reply.body


def render_failure(request: IRequest, style: str, error: APIError, request_id: str) -> bytes:
    """The error in the endpoint's style: the envelope, or flat as OAuth endpoints answer."""
    if style == ENVELOPE:
        return render_error(request, error, request_id)
    request.setResponseCode(error.code)
    request.setHeader(b"content-type", JSON)
    flat = {"code": error.code, "error_type": error.error_type, "error_message": error.message}
    return json.dumps(flat).encode()
