"""``GET /v1/stream``: the real-time WebSocket (autobahn), on the API's own port.

Protocol (README, "Real-time"): the client authenticates with ``?access_token=`` (or
``Authorization: Bearer``) or, failing that, an ``auth`` frame first; then sends
``subscribe``/``unsubscribe`` frames naming channels, optionally with ``after``: the last
cursor it saw on that channel. The server answers ``ready``, ``subscribed`` (with the
channel's newest cursor), ``event`` frames, ``reset`` (the cursor is too old: refetch over
REST), ``unsubscribed`` and ``error`` frames. A subscription replays the history after
``after``, then goes live, with no gap and no duplicate (``server.realtime.Gate``). Frames
sent before ``ready`` (while the token is checked) are kept, up to ``MAX_FRAME`` bytes, and
handled after it in order.

The token is checked like any API call: rate-limited, and, when it carries ``sig`` or its app
requires signed requests, its signature verified (``auth.check_signature``) over the endpoint
``/stream`` and the parameters of what carries the token: the upgrade request's query
parameters, or the ``auth`` frame's fields. A connection ends (4001) when its token is
revoked, in any service process (the hub hears the revocations, ``server.realtime.Hub``),
or expires (a timer at its expiry).

A subscription that only following a private account allows also listens to that account's
``user:`` source (its **guard**): the ``FollowerRemoved`` that ends the follow ends the
subscription (an ``unsubscribed`` frame with ``error: not_allowed``), before any later event
of the account. The access is checked again once the guard listens (a follow ending during
the first check) and after each pub/sub reconnect (one ending while Redis was away).

A connection whose transport holds more than ``realtime.max_buffer_bytes`` the client has
not read (counted from the transport's pause signal: its IPushProducer) is closed with 4008,
so one slow client never grows the server's memory nor delays the others.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept
from autobahn.websocket.types import ConnectionRequest
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure

from zope.interface import implementer

from server.api import auth, streamauth
from server.api.envelope import APIError
from server.api.params import signable
from server.context import ServiceContext
from server.domain import realtime as rt
from server.domain.realtime import Channel, ChannelError, Message
from server.realtime import Gate, Hub
from server.store.realtime import History
from server.store.tokens import TokenInfo, digest

log = Logger()
PATH = b"/v1/stream"
#: The endpoint a ``sig`` signs (the path after ``/v1``, as for the REST API).
SIGNED = PATH.decode().removeprefix("/v1")
#: Largest client frame, and most bytes of frames a client may send before ``ready``.
MAX_FRAME = 65536

CONNECTIONS = Gauge("shutterlog_stream_connections", "Open real-time WebSockets")
FRAMES = Counter("shutterlog_stream_frames_total", "Event frames sent to WebSocket clients")
CUT = Counter("shutterlog_stream_slow_closed_total", "WebSockets closed for not reading")


@dataclass
class Subscription:
    channel: Channel
    gate: Gate = field(default_factory=Gate)
    owner: int | None = None  # the private account whose follow allows it (its guard)

    @property
    def guard(self) -> str | None:
        """The source whose ``FollowerRemoved`` ends this subscription."""
        return rt.follow_source(self.owner) if self.owner is not None else None


@implementer(IPushProducer)
class _Flow:
    """The transport's pause/resume signals: while paused, what is written waits in the
    transport's buffer; past the bound the connection is cut."""

    def __init__(self, proto: StreamProtocol) -> None:
        self.proto = proto
        self.paused = False
        self.waiting = 0

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.waiting = 0

    def stopProducing(self) -> None:
        self.paused = True


class StreamProtocol(WebSocketServerProtocol):
    """One client's real-time stream."""

    factory: StreamFactory

    def __init__(self) -> None:
        super().__init__()
        self.user: int | None = None
        self.scopes: frozenset[str] = frozenset()
        self.blocked: frozenset[int] = frozenset()
        self.subs: dict[str, Subscription] = {}
        self.by_source: dict[str, dict[str, Subscription]] = {}
        self.flow = _Flow(self)
        self.closing = False
        self._token: str | None = None
        self._signed: dict[str, str] = {}  # the parameters a sig covers
        self._token_hash: str | None = None  # while the hub tells of its revocation
        self._address = ""
        self._deadline: Any = None  # closes: no auth frame in time, then the token expired
        self._auth_error: str | None = None
        self._opened = False
        self._early: list[dict[str, Any]] = []  # frames received before ready
        self._early_bytes = 0

    # --- connection ----------------------------------------------------------------------

    def onConnect(self, request: ConnectionRequest) -> None:
        self._address = request.peer.rsplit(":", 1)[0].removeprefix("tcp4:").removeprefix(
            "tcp6:")
        self._signed = {k: v[0] for k, v in request.params.items() if v}
        try:
            self._token = auth.credentials(
                self._signed, request.headers.get("authorization"), self._address).token
        except APIError as e:
            self._token = ""
            self._auth_error = e.message

    def onOpen(self) -> None:
        CONNECTIONS.inc()
        self._opened = True
        transport: Any = self.transport
        if getattr(transport, "producer", None) is not None:
            transport.unregisterProducer()  # twisted.web's channel, done with this socket
        transport.registerProducer(self.flow, True)
        if self._token is not None:
            self._authenticate(self._token)
        else:
            self._deadline = self.factory.ctx.reactor.callLater(
                self.factory.ctx.config.realtime.auth_timeout, self._close,
                rt.CLOSE_BAD_TOKEN, "no access token: send it in the URL or an auth frame")

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        if self._token_hash is not None:
            self.factory.hub.release(self._token_hash, self)
        for source in list(self.by_source):
            self.factory.hub.detach(source, self)
        self.by_source.clear()
        self.subs.clear()
        if self._opened:
            self._opened = False
            CONNECTIONS.dec()

    def _close(self, code: int, reason: str) -> None:
        if not self.closing:
            self.closing = True
            self.sendClose(code, reason)

    def _push(self, text: str) -> None:
        if self.closing:
            return
        data = text.encode()
        if self.flow.paused:
            self.flow.waiting += len(data)
            if self.flow.waiting > self.factory.ctx.config.realtime.max_buffer_bytes:
                CUT.inc()
                self._close(rt.CLOSE_TOO_SLOW, "too slow: the client does not read its frames")
                self.factory.ctx.reactor.callLater(1, self._abort)
                return
        self.sendMessage(data)

    def _abort(self) -> None:
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    # --- authentication ------------------------------------------------------------------

    def _authenticate(self, token: str) -> None:
        ctx = self.factory.ctx
        if self._auth_error:
            self._close(rt.CLOSE_BAD_TOKEN, self._auth_error)
            return
        if token:  # held before the look-up: a revocation from now on is heard
            self._token_hash = digest(token)
            self.factory.hub.hold(self._token_hash, self)
        signed = self._signed

        def look_up() -> tuple[TokenInfo, frozenset[int], float | None]:
            creds = auth.Credentials(token or None, self._address)
            info = auth.require_token(creds, auth.limit(ctx.limiter, creds)[0])
            auth.check_signature(ctx.router, ctx.box, SIGNED, signed, info)
            return (info, streamauth.blocked(ctx, info.user_id),
                    ctx.tokens.lifetime(digest(token)))

        ctx.blocking(look_up).addCallbacks(self._authenticated, self._refused)

    def _authenticated(self, found: tuple[TokenInfo, frozenset[int], float | None]) -> None:
        if self.closing or not self._opened:
            return  # revoked or closed during the look-up
        info, self.blocked, lifetime = found
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        if lifetime is not None:
            self._deadline = self.factory.ctx.reactor.callLater(
                lifetime, self._close, rt.CLOSE_BAD_TOKEN, "the access token expired")
        self.user, self.scopes = info.user_id, info.scopes
        self._push(rt.control("ready", user_id=str(self.user)))
        early, self._early = self._early, []
        for frame in early:
            self._handle(frame)

    def _refused(self, failure: Failure) -> None:
        error = failure.value
        if isinstance(error, APIError):
            self._close(rt.CLOSE_BAD_TOKEN, error.message)
        else:
            log.failure("stream authentication failed", failure)
            self._close(1011, "internal error")

    # --- frames from the client ----------------------------------------------------------

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            frame = json.loads(payload) if not isBinary else None
        except ValueError:
            frame = None
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            self._close(rt.CLOSE_PROTOCOL, "frames are JSON objects with a type")
            return
        if self.user is None:
            self._before_ready(frame, len(payload))
        else:
            self._handle(frame)

    def _before_ready(self, frame: dict[str, Any], size: int) -> None:
        """An auth frame, or a frame to handle once the token being checked is accepted."""
        if frame["type"] == "auth" and isinstance(frame.get("access_token"), str) \
                and self._token is None:
            self._token = frame["access_token"]
            self._signed = signable({}, frame)
            self._authenticate(self._token)
        elif self._token is None:
            self._close(rt.CLOSE_BAD_TOKEN, "authenticate first (an auth frame)")
        elif self._early_bytes + size > MAX_FRAME:
            self._close(rt.CLOSE_PROTOCOL, "too many frames before ready")
        else:
            self._early.append(frame)
            self._early_bytes += size

    def _handle(self, frame: dict[str, Any]) -> None:
        if self.closing:
            return
        kind = frame["type"]
        if kind == "subscribe":
            self._subscribe(frame)
        elif kind == "unsubscribe":
            self._unsubscribe(frame)
        elif kind != "auth":
            self._close(rt.CLOSE_PROTOCOL, f"unknown frame type {kind[:40]!r}")

    def _error(self, error: str, message: str, channel: Any = None) -> None:
        fields = {"channel": channel} if isinstance(channel, str) else {}
        self._push(rt.control("error", error=error, message=message, **fields))

    def _subscribe(self, frame: dict[str, Any]) -> None:
        assert self.user is not None
        name, after = frame.get("channel"), frame.get("after")
        try:
            channel = rt.parse_channel(name, self.user)  # type: ignore[arg-type]
            if after is not None:
                rt.parse_cursor(after)
        except (ChannelError, ValueError) as e:
            self._error("invalid_channel", str(e), name)
            return
        if channel.name in self.subs:
            self._error("already_subscribed", "already subscribed", name)
            return
        if len(self.subs) >= self.factory.ctx.config.realtime.max_channels:
            self._error("too_many_channels", "unsubscribe from a channel first", name)
            return
        sub = Subscription(channel)
        sub.gate.hold()
        self.subs[channel.name] = sub
        self._check(sub, after, first=True)

    def _check(self, sub: Subscription, after: str | None, first: bool) -> Any:
        """Check the user's access to the subscription, then replay it (``first``: a new
        subscription, attached to its source first)."""
        if self.subs.get(sub.channel.name) is not sub:
            return None
        ctx = self.factory.ctx
        user, scopes, channel = self.user, self.scopes, sub.channel
        assert user is not None

        def check() -> tuple[streamauth.Access, frozenset[int]]:
            if channel.kind == "feed":
                self.factory.hub.store.mark_live([user], int(ctx.reactor.seconds() * 1000))
            return (streamauth.access(ctx, user, scopes, channel),
                    streamauth.blocked(ctx, user))

        d = ctx.blocking(check)
        d.addCallback(self._authorized, sub, after, first)
        d.addErrback(self._failed, sub)
        return d

    def _authorized(self, verdict: tuple[streamauth.Access, frozenset[int]],
                    sub: Subscription, after: str | None, first: bool) -> Any:
        access, self.blocked = verdict
        if self.subs.get(sub.channel.name) is not sub:
            return None
        if access.refusal is not None:
            if first:
                self._drop(sub)
                self._error("not_allowed", access.refusal, sub.channel.name)
            else:
                self._revoke(sub, access.refusal)
            return None
        if access.owner is not None and sub.owner is None:
            # Listen for the end of the follow, then check again: a follow that ends from
            # now on is heard, one that ended during the first check is seen.
            sub.owner = access.owner
            d = self.factory.hub.attach(rt.follow_source(access.owner), self)
            return d.addCallback(lambda _: self._check(sub, after, first))
        if not first:
            return self._replay(sub, after, first)
        source = sub.channel.source
        self.by_source.setdefault(source, {})[sub.channel.name] = sub
        d = self.factory.hub.attach(source, self)
        d.addCallback(lambda _: self._replay(sub, after, first=True))
        return d

    def _replay(self, sub: Subscription, after: str | None, first: bool) -> Any:
        if self.subs.get(sub.channel.name) is not sub:
            return None
        store = self.factory.hub.store
        d = self.factory.ctx.blocking(store.history, sub.channel.source, after)
        d.addCallback(self._replayed, sub, after, first)
        d.addErrback(self._failed, sub)
        return d

    def _replayed(self, history: History, sub: Subscription, after: str | None,
                  first: bool) -> None:
        if self.subs.get(sub.channel.name) is not sub:
            return
        name = sub.channel.name
        if after is None or history.reset:
            sub.gate.last = rt.parse_cursor(history.last)
        else:
            sub.gate.last = max(sub.gate.last, rt.parse_cursor(after))
        if first:
            self._push(rt.control("subscribed", channel=name, cursor=history.last))
        if history.reset:
            self._push(rt.control("reset", channel=name, cursor=history.last))
        for m in sub.gate.release(history.messages):
            self._event(sub, m)

    def _failed(self, failure: Failure, sub: Subscription) -> None:
        log.failure("subscribing to {channel}", failure, channel=sub.channel.name)
        if self.subs.get(sub.channel.name) is sub:
            self._drop(sub)
            self._error("unavailable", "try again", sub.channel.name)

    def _unsubscribe(self, frame: dict[str, Any]) -> None:
        name = frame.get("channel")
        sub = self.subs.get(name) if isinstance(name, str) else None
        if sub is None:
            self._error("not_subscribed", "not subscribed", name)
            return
        self._drop(sub)
        self._push(rt.control("unsubscribed", channel=sub.channel.name))

    def _revoke(self, sub: Subscription, reason: str) -> None:
        """End a subscription the user may no longer have."""
        self._drop(sub)
        self._push(rt.control("unsubscribed", channel=sub.channel.name, error="not_allowed",
                              message=reason))

    def _drop(self, sub: Subscription) -> None:
        del self.subs[sub.channel.name]
        source = sub.channel.source
        mine = self.by_source.get(source, {})
        mine.pop(sub.channel.name, None)
        if not mine:
            self.by_source.pop(source, None)
        for s in (source, sub.guard):
            if s is not None and not self._listens(s):
                self.factory.hub.detach(s, self)

    def _listens(self, source: str) -> bool:
        """Whether a subscription still needs ``source``: its channel's, or its guard."""
        return source in self.by_source or any(s.guard == source for s in self.subs.values())

    # --- from the hub --------------------------------------------------------------------

    def revoked(self) -> None:
        self._token_hash = None
        self._close(rt.CLOSE_BAD_TOKEN, "the access token was revoked")

    def deliver(self, source: str, message: Message) -> None:
        if self.user is not None and message.ends_follow(self.user):
            for sub in [s for s in self.subs.values() if s.guard == source]:
                self._revoke(sub, "you no longer follow this private account")
        for sub in list(self.by_source.get(source, {}).values()):
            for m in sub.gate.offer(message):
                self._event(sub, m)

    def resync(self, source: str) -> None:
        for sub in list(self.by_source.get(source, {}).values()):
            sub.gate.hold()
            after = "{}-{}".format(*sub.gate.last)
            if sub.owner is None:
                self._replay(sub, after, first=False)
            else:  # the follow may have ended while Redis was away
                self._check(sub, after, first=False)

    def _event(self, sub: Subscription, m: Message) -> None:
        if sub.channel.accepts(m) and not (m.users & self.blocked):
            FRAMES.inc()
            self._push(m.frame(sub.channel.name))


class StreamFactory(WebSocketServerFactory):
    protocol = StreamProtocol  # type: ignore[assignment]

    def __init__(self, ctx: ServiceContext, hub: Hub) -> None:
        super().__init__(url=None, server="shutterlog")
        self.ctx = ctx
        self.hub = hub
        r = ctx.config.realtime
        self.setProtocolOptions(
            autoPingInterval=r.ping_interval, autoPingTimeout=r.ping_timeout,
            perMessageCompressionAccept=_accept_deflate, closeHandshakeTimeout=1,
            maxMessagePayloadSize=MAX_FRAME, maxFramePayloadSize=MAX_FRAME,
        )


def _accept_deflate(offers: list[Any]) -> Any:
    """Accept the client's permessage-deflate offer (small server window and memory: a
    connection's zlib state would otherwise cost about 256 KiB)."""
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer, mem_level=4)
    return None


def resource(ctx: ServiceContext, hub: Hub) -> WebSocketResource:
    """The twisted.web resource of ``/v1/stream``."""
    return WebSocketResource(StreamFactory(ctx, hub))
