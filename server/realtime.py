"""The service process's real-time fan-in: ONE Redis pub/sub connection, subscribed once to
each source that has local subscribers, fanning messages out on the reactor thread.

The pub/sub connection lives in a thread of its own (redis-py's blocking ``PubSub``): it
applies (un)subscriptions queued by the reactor thread and hands each message to the
reactor with ``callFromThread``. When Redis goes away, the thread reconnects with backoff
and subscribes again to every source; the reactor then reads each source's history after
the last message it delivered and delivers what was missed, in order, before the live
messages that arrived meanwhile (each subscription's ``Gate``), so connected clients see no
gap and no duplicate. A source whose history no longer reaches back that far is reset.

The same connection always listens to the revoked tokens' channel
(``server.store.tokens.REVOKED``): the connections holding a revoked token are told so
(``TokenHolder.revoked``). Each time Redis confirms that subscription (at start and after a
reconnect) the held tokens are looked up once, so a revocation published while nobody
listened ends its connections too.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from server.domain.realtime import Cursor, Message
from server.store.realtime import RealtimeStore
from server.store.tokens import REVOKED, missing

log = Logger()


class Listener(Protocol):
    """A local subscriber of sources (a WebSocket connection)."""

    def deliver(self, source: str, message: Message) -> None:
        """A live message of ``source`` (a repeat is possible after a reconnect)."""

    def resync(self, source: str) -> None:
        """The pub/sub connection was lost: read ``source``'s history for what was missed."""


class TokenHolder(Protocol):
    """A connection authenticated with an access token (a WebSocket connection)."""

    def revoked(self) -> None:
        """The token was revoked (or found gone): end the connection."""


@dataclass
class Gate:
    """Orders a replay from history with the live messages that arrive while it is read:
    live messages are held until the history is in, and nothing at or below the last
    cursor passed on is passed on again."""

    last: Cursor = (0, 0)
    held: list[Message] | None = field(default=None)

    def hold(self) -> None:
        if self.held is None:
            self.held = []

    def offer(self, message: Message) -> list[Message]:
        """What to pass on of a live message now."""
        if self.held is not None:
            self.held.append(message)
            return []
        return self._fresh([message])

    def release(self, history: list[Message]) -> list[Message]:
        """The history's messages then the held ones, each once and in order."""
        held, self.held = self.held or [], None
        return self._fresh(history + held)

    def _fresh(self, messages: list[Message]) -> list[Message]:
        out = []
        for m in messages:
            if m.cursor > self.last:
                self.last = m.cursor
                out.append(m)
        return out


@dataclass
class _Source:
    listeners: set[Any] = field(default_factory=set)
    confirmed: bool = False
    waiting: list[Deferred[None]] = field(default_factory=list)


class Hub:
    """Local subscriptions of one process to the real-time sources."""

    def __init__(self, store: RealtimeStore, reactor: Any,
                 blocking: Callable[..., Deferred[Any]]) -> None:
        self.store = store
        self.reactor = reactor
        self.blocking = blocking  # runs a call in the threadpool
        self._refresh = LoopingCall(self._refresh_live)
        self._refresh.clock = reactor
        self.sources: dict[str, _Source] = {}
        self.holders: dict[str, set[TokenHolder]] = {}  # token hash: who uses the token
        self._commands: queue.Queue[tuple[str, str]] = queue.Queue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- reactor thread ----------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shutterlog-pubsub", daemon=True)
        self._thread.start()
        self._refresh.start(self.store.ttl_ms / 3000, now=False)

    def stop(self) -> None:
        if self._refresh.running:
            self._refresh.stop()
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)

    def attach(self, source: str, listener: Listener) -> Deferred[None]:
        """Subscribe ``listener`` to ``source``; fires once Redis has confirmed the
        subscription (messages published from then on are delivered)."""
        s = self.sources.get(source)
        if s is None:
            s = self.sources[source] = _Source()
            self._commands.put(("subscribe", source))
        s.listeners.add(listener)
        if s.confirmed:
            return succeed(None)
        d: Deferred[None] = Deferred()
        s.waiting.append(d)
        return d

    def detach(self, source: str, listener: Listener) -> None:
        s = self.sources.get(source)
        if s is None:
            return
        s.listeners.discard(listener)
        if not s.listeners:
            del self.sources[source]
            for d in s.waiting:
                d.callback(None)
            self._commands.put(("unsubscribe", source))

    def hold(self, token_hash: str, holder: TokenHolder) -> None:
        """Tell ``holder`` when the token of hash ``token_hash`` is revoked."""
        self.holders.setdefault(token_hash, set()).add(holder)

    def release(self, token_hash: str, holder: TokenHolder) -> None:
        held = self.holders.get(token_hash)
        if held is not None:
            held.discard(holder)
            if not held:
                del self.holders[token_hash]

    def _revoked(self, token_hashes: Iterable[str]) -> None:
        for h in token_hashes:
            for holder in self.holders.pop(h, set()):
                holder.revoked()

    def _recheck_tokens(self) -> Deferred[Any]:
        """Revoke the held tokens that are gone (revoked while the channel was not heard)."""
        d = self.blocking(missing, self.store.redis, list(self.holders))
        d.addCallback(self._revoked)
        return d.addErrback(lambda f: log.failure("checking the streams' tokens", f))

    def _refresh_live(self) -> Deferred[Any]:
        """Keep the home feeds subscribed here marked live (``RealtimeStore.mark_live``)."""
        users = [int(s.split(":", 1)[1]) for s in self.sources if s.startswith("feed:")]
        d = self.blocking(self.store.mark_live, users, int(self.reactor.seconds() * 1000))
        return d.addErrback(lambda f: log.failure("refreshing live feeds", f))

    def _confirmed(self, source: str) -> None:
        s = self.sources.get(source)
        if s is None:
            return
        s.confirmed = True
        waiting, s.waiting = s.waiting, []
        for d in waiting:
            d.callback(None)

    def _received(self, source: str, data: bytes) -> None:
        s = self.sources.get(source)
        if s is None:
            return
        cursor, _, body = data.decode().partition(" ")
        try:
            message = Message.parse(cursor, body)
        except ValueError:
            log.warn("unreadable real-time message on {source}", source=source)
            return
        for listener in list(s.listeners):
            listener.deliver(source, message)

    def _reconnected(self) -> None:
        """Redis came back: every listener catches each of its sources up from history."""
        for source, s in self.sources.items():
            for listener in list(s.listeners):
                listener.resync(source)

    # --- pub/sub thread ----------------------------------------------------------------------

    def _run(self) -> None:
        delay = 0.05
        first = True
        while not self._stopping.is_set():
            pubsub = self.store.redis.pubsub()
            try:
                wanted = set(self.store.channel(s) for s in list(self.sources))
                pubsub.subscribe(REVOKED, *wanted)
                if not first:
                    log.info("real-time pub/sub reconnected; catching up {n} sources",
                             n=len(wanted))
                    self.reactor.callFromThread(self._reconnected)
                first = False
                delay = 0.05
                self._pump(pubsub)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
                log.warn("real-time pub/sub lost Redis ({error}); reconnecting", error=str(e))
                self._stopping.wait(delay)
                delay = min(delay * 2, 2.0)
            finally:
                pubsub.close()

    def _pump(self, pubsub: redis.client.PubSub) -> None:
        while not self._stopping.is_set():
            while True:
                try:
                    op, source = self._commands.get_nowait()
                except queue.Empty:
                    break
                getattr(pubsub, op)(self.store.channel(source))
            msg = pubsub.get_message(timeout=0.02)
            if msg is None:
                continue
            if msg["channel"] == REVOKED.encode():
                if msg["type"] == "message":
                    self.reactor.callFromThread(self._revoked, msg["data"].decode().split())
                elif msg["type"] == "subscribe":
                    self.reactor.callFromThread(self._recheck_tokens)
                continue
            source = self.store.source_of(msg["channel"])
            if msg["type"] == "message":
                self.reactor.callFromThread(self._received, source, msg["data"])
            elif msg["type"] == "subscribe":
                self.reactor.callFromThread(self._confirmed, source)
