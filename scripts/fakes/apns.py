"""A local server that behaves as APNs' provider API: HTTP/2 over TLS, token (JWT) auth.

It checks what Apple checks and answers as Apple answers: the ES256 provider token against the
team's public key, its ``kid``, ``iss`` and ``iat`` (older than an hour: 403
``ExpiredProviderToken``; a new token on a connection less than 20 minutes after the last
one: 429 ``TooManyProviderTokenUpdates``), ``apns-topic``, ``apns-push-type``,
``apns-priority``, ``apns-id``, ``apns-collapse-id``, ``apns-expiration``, the device token
and the payload size. Tests script answers per device token (``respond``): 410
``Unregistered`` with a timestamp, 400 ``BadDeviceToken``, 429, 503, 403 ... It counts
connections and the streams open at once, and records what it received.

In tests it runs in a thread of the test process (``FakeApns(...).running()``); the push
benchmark runs it in a process of its own (``python -m scripts.fakes.apns``) with ``--bench``,
which keeps per-request work to the checks (no recording, provider tokens verified once each).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import jwt

from scripts.fakes.script import Script
from scripts.fakes.tls import TlsFiles, make_tls

PUSH_TYPES = {"alert", "background", "location", "voip", "complication", "fileprovider", "mdm",
              "liveactivity", "pushtotalk", "widgets", "controls"}
MAX_PAYLOAD = 4096
MAX_VOIP_PAYLOAD = 5120
TOKEN_MAX_AGE = 3600
TOKEN_MIN_REFRESH = 1200


@dataclass(frozen=True)
class Received:
    """One request as the server saw it."""

    device_token: str
    headers: dict[str, str]
    payload: dict[str, Any]
    jwt: str
    connection: int
    status: int
    reason: str | None


@dataclass
class _ConnAuth:
    """Per connection, as Apple tracks it: the provider token in use and when it was made."""

    token: str | None = None
    iat: int = 0


@dataclass
class FakeApns:
    """APNs for one team: its key id, its public key (PEM) and the topics it may push to."""

    tls: TlsFiles
    team_id: str
    key_id: str
    public_key: bytes
    topics: frozenset[str]
    clock: Callable[[], float] = time.time
    record: bool = True
    max_streams: int = 1000
    port: int = 0
    received: list[Received] = field(default_factory=list)
    connections: int = 0
    max_open_streams: int = 0
    requests: int = 0
    _script: Script[tuple[int, str, int | None]] = field(default_factory=Script)
    _verified: dict[str, tuple[dict[str, Any] | None, str | None]] = field(default_factory=dict)
    _hold: int = 0
    _held: list[Callable[[], None]] = field(default_factory=list)
    _open: int = 0
    _live: set[_Connection] = field(default_factory=set)
    _loop: asyncio.AbstractEventLoop | None = None

    # --- what tests tell it -----------------------------------------------------------------

    def respond(self, device_token: str, status: int, reason: str, times: int | None = 1,
                timestamp_ms: int | None = None) -> None:
        """Answer requests for ``device_token`` with ``status``/``reason`` (``times`` times,
        None: always) instead of checking them; 410 answers carry a timestamp (now, or
        ``timestamp_ms``: when Apple learned the token was dead)."""
        self._script.add(device_token, (status, reason, timestamp_ms), times)

    def hold_until(self, open_streams: int) -> None:
        """Hold every answer until ``open_streams`` requests wait at once (then answer all):
        proves a client really has that many streams in flight."""
        self._hold = open_streams

    def hold_all(self) -> None:
        """Hold every answer (requests are still recorded) until ``stop_holding``: a client
        is then caught mid-send."""
        self._hold = 1 << 30

    def stop_holding(self) -> None:
        """Answer new requests again; answers held so far are dropped (meant for after the
        client holding them is gone)."""
        self._hold = 0
        self._held = []

    def drop_connections(self) -> None:
        """Close every connection abruptly, as a network failure would (no GOAWAY)."""
        self._on_connections(lambda c: c.abort())

    def goaway(self) -> None:
        """Send GOAWAY on every connection (as APNs does before it closes one), answering
        nothing more on it; the client is left to close it."""
        self._on_connections(lambda c: c.goaway())

    def _on_connections(self, action: Callable[[_Connection], None]) -> None:
        assert self._loop is not None, "not serving"
        done = threading.Event()

        def run() -> None:
            for conn in list(self._live):
                action(conn)
            done.set()

        self._loop.call_soon_threadsafe(run)
        if not done.wait(10):
            raise RuntimeError("the fake APNs server did not act on its connections")

    def for_token(self, device_token: str) -> list[Received]:
        return [r for r in list(self.received) if r.device_token == device_token]

    # --- running ----------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.tls.cert, self.tls.key)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["h2"])
        return ctx

    async def serve(self, started: Callable[[int], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        server = await loop.create_server(lambda: _Connection(self), "127.0.0.1", self.port,
                                          ssl=self.ssl_context(), backlog=512)
        self.port = server.sockets[0].getsockname()[1]
        if started:
            started(self.port)
        async with server:
            await server.serve_forever()

    @contextlib.contextmanager
    def running(self) -> Iterator[FakeApns]:
        """Serve in a background thread; ``self.port`` is set on entry."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        task: list[asyncio.Task[None]] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            task.append(loop.create_task(self.serve(lambda _port: ready.set())))
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(task[0])
            loop.close()

        thread = threading.Thread(target=run, name="fake-apns", daemon=True)
        thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake APNs server did not start")
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(task[0].cancel)
            thread.join(10)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    # --- deciding an answer -----------------------------------------------------------------

    def answer(self, conn: _ConnAuth, conn_id: int, headers: dict[str, str],
               body: bytes) -> tuple[int, dict[str, Any] | None, str]:
        """(status, error body or None, apns-id) for one request."""
        apns_id = headers.get("apns-id") or str(uuid.uuid4())
        status, error = self._decide(conn, headers, body)
        token = headers.get(":path", "").removeprefix("/3/device/")
        self.requests += 1
        if self.record:
            try:
                payload = json.loads(body) if body else {}
            except ValueError:
                payload = {}
            self.received.append(Received(
                token, {k: v for k, v in headers.items() if not k.startswith(":")}, payload,
                headers.get("authorization", "").removeprefix("bearer "), conn_id, status,
                error["reason"] if error else None))
        return status, error, apns_id

    def _decide(self, conn: _ConnAuth, h: dict[str, str],
                body: bytes) -> tuple[int, dict[str, Any] | None]:
        if h.get(":method") != "POST":
            return 405, {"reason": "MethodNotAllowed"}
        path = h.get(":path", "")
        if not path.startswith("/3/device/"):
            return 404, {"reason": "BadPath"}
        auth_error = self._check_auth(conn, h.get("authorization", ""))
        if auth_error:
            return auth_error
        scripted = self._scripted(path.removeprefix("/3/device/"))
        if scripted:
            return scripted
        return self._check_request(h, body)

    def _scripted(self, device_token: str) -> tuple[int, dict[str, Any]] | None:
        scripted = self._script.take(device_token)
        if scripted is None:
            return None
        status, reason, timestamp_ms = scripted
        error: dict[str, Any] = {"reason": reason}
        if status == 410:
            error["timestamp"] = timestamp_ms or int(self.clock() * 1000)
        return status, error

    def _check_auth(self, conn: _ConnAuth, authorization: str) -> tuple[int, dict[str, Any]] | None:
        if not authorization.startswith("bearer "):
            return 403, {"reason": "MissingProviderToken"}
        token = authorization.removeprefix("bearer ")
        claims, problem = self._verify(token)
        if claims is None:
            return 403, {"reason": problem}
        now = self.clock()
        iat = claims["iat"]
        if iat > now + 60:
            return 403, {"reason": "InvalidProviderToken"}
        if now - iat > TOKEN_MAX_AGE:
            return 403, {"reason": "ExpiredProviderToken"}
        if token != conn.token:
            if conn.token is not None and iat - conn.iat < TOKEN_MIN_REFRESH:
                return 429, {"reason": "TooManyProviderTokenUpdates"}
            conn.token, conn.iat = token, iat
        return None

    def forget_token(self, conn: _ConnAuth) -> None:
        """After a 403 for it, the connection's token no longer counts against the next one."""
        conn.token, conn.iat = None, 0

    def _verify(self, token: str) -> tuple[dict[str, Any] | None, str | None]:
        """(claims, None) for a token signed by the team's key, else (None, reason); cached."""
        cached = self._verified.get(token)
        if cached is not None:
            return cached
        result: tuple[dict[str, Any] | None, str | None]
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != "ES256" or header.get("kid") != self.key_id:
                raise jwt.InvalidTokenError("wrong alg or kid")
            claims = jwt.decode(token, self.public_key, algorithms=["ES256"],
                                options={"verify_iat": False, "require": ["iss", "iat"]})
            if claims["iss"] != self.team_id or not isinstance(claims["iat"], int):
                raise jwt.InvalidTokenError("wrong iss or iat")
            result = (claims, None)
        except jwt.InvalidTokenError:
            result = (None, "InvalidProviderToken")
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[token] = result
        return result

    def _check_request(self, h: dict[str, str], body: bytes) -> tuple[int, dict[str, Any] | None]:
        device = h[":path"].removeprefix("/3/device/")
        if not (64 <= len(device) <= 200 and len(device) % 2 == 0) or not _is_hex(device):
            return 400, {"reason": "BadDeviceToken"}
        topic = h.get("apns-topic")
        if not topic:
            return 400, {"reason": "MissingTopic"}
        if topic not in self.topics:
            return 400, {"reason": "TopicDisallowed"}
        push_type = h.get("apns-push-type", "alert")
        if push_type not in PUSH_TYPES:
            return 400, {"reason": "InvalidPushType"}
        priority = h.get("apns-priority", "10")
        if priority not in ("1", "5", "10") or (push_type == "background" and priority == "10"):
            return 400, {"reason": "BadPriority"}
        if "apns-id" in h and not _is_uuid(h["apns-id"]):
            return 400, {"reason": "BadMessageId"}
        if len(h.get("apns-collapse-id", "").encode()) > 64:
            return 400, {"reason": "BadCollapseId"}
        if not h.get("apns-expiration", "0").isdigit():
            return 400, {"reason": "BadExpirationDate"}
        if not body:
            return 400, {"reason": "PayloadEmpty"}
        if len(body) > (MAX_VOIP_PAYLOAD if push_type == "voip" else MAX_PAYLOAD):
            return 413, {"reason": "PayloadTooLarge"}
        return 200, None


def _is_hex(s: str) -> bool:
    try:
        bytes.fromhex(s)
    except ValueError:
        return False
    return True


def _is_uuid(s: str) -> bool:
    try:
        return str(uuid.UUID(s)) == s.lower()
    except ValueError:
        return False


class _Connection(asyncio.Protocol):
    """One client connection: h2 framing, requests gathered per stream, answers written back."""

    _ids = iter(range(1, 1 << 62))

    def __init__(self, server: FakeApns) -> None:
        self.server = server
        self.id = next(self._ids)
        self.auth = _ConnAuth()
        strict = server.record  # bench mode skips h2's header validation (cost, not checks)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding="utf-8", validate_inbound_headers=strict,
            normalize_inbound_headers=strict, validate_outbound_headers=strict,
            normalize_outbound_headers=strict))
        self.streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections += 1
        self.server._live.add(self)
        self.conn.local_settings = h2.settings.Settings(
            client=False, initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.server.max_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(1 << 24)
        transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except Exception:  # a protocol error: drop the connection, as a server would
            self._close()
            return
        done: list[int] = []
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.streams[event.stream_id] = (dict(event.headers), bytearray())  # type: ignore[arg-type]
                self.server._open += 1
                self.server.max_open_streams = max(self.server.max_open_streams,
                                                   self.server._open)
            elif isinstance(event, h2.events.DataReceived):
                if event.stream_id in self.streams:
                    self.streams[event.stream_id][1].extend(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length,
                                                    event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                done.append(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                if self.streams.pop(event.stream_id, None) is not None:
                    self.server._open -= 1
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._close()
                return
        for stream_id in done:
            self._answer(stream_id)
        self._flush()

    def _answer(self, stream_id: int) -> None:
        headers, body = self.streams[stream_id]
        status, error, apns_id = self.server.answer(self.auth, self.id, headers, bytes(body))
        if status == 403:
            self.server.forget_token(self.auth)

        def send() -> None:
            if self.streams.pop(stream_id, None) is None:
                return
            self.server._open -= 1
            out = [(":status", str(status)), ("apns-id", apns_id)]
            if error is None:
                self.conn.send_headers(stream_id, out, end_stream=True)
                return
            data = json.dumps(error).encode()
            out += [("content-type", "application/json"), ("content-length", str(len(data)))]
            self.conn.send_headers(stream_id, out)
            self.conn.send_data(stream_id, data, end_stream=True)

        server = self.server
        if server._hold <= 0:
            send()
            return
        def release() -> None:
            send()
            self._flush()

        server._held.append(release)
        if server._open >= server._hold:
            server._hold = 0
            held, server._held = server._held, []
            for release in held:
                release()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def goaway(self) -> None:
        self.conn.close_connection()
        self._flush()
        self.server._live.discard(self)

    def _close(self) -> None:
        self.server._live.discard(self)
        for _ in self.streams:
            self.server._open -= 1
        self.streams.clear()
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._close()


def _cache_huffman() -> None:
    """Memoize hpack's pure-Python Huffman decoder (bench mode only).

    h2 clients send ``authorization`` as a never-indexed literal, so every request carries the
    same Huffman-coded provider token; decoding it each time would make this server, not the
    client being measured, the bottleneck. Apple decodes it in native code.
    """
    import functools

    import hpack.hpack

    cached = functools.lru_cache(maxsize=1024)(hpack.hpack.decode_huffman)

    def decode(huffman_string: bytes | bytearray | memoryview | None) -> bytes:
        return cached(bytes(huffman_string or b""))

    hpack.hpack.decode_huffman = decode


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m scripts.fakes.apns",
        description="Serve a local APNs (HTTP/2, TLS, token auth) on 127.0.0.1 until killed. "
        "Prints 'listening on PORT' once it accepts connections.")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.add_argument("--tls-dir", type=Path, required=True,
                   help="directory for the CA and server certificate (ca.pem is what clients "
                   "trust; written if missing)")
    p.add_argument("--team-id", required=True, help="the team id the provider tokens carry")
    p.add_argument("--key-id", required=True, help="the key id (kid) the provider tokens carry")
    p.add_argument("--public-key", type=Path, required=True,
                   help="PEM file of the public half of the team's .p8 key")
    p.add_argument("--topic", action="append", required=True, help="an allowed apns-topic")
    p.add_argument("--bench", action="store_true",
                   help="record nothing, keep per-request work to the checks")
    args = p.parse_args(argv)
    tls = TlsFiles(args.tls_dir / "ca.pem", args.tls_dir / "server.pem",
                   args.tls_dir / "server.key")
    if not tls.ca.exists():
        tls = make_tls(args.tls_dir)
    if args.bench:
        _cache_huffman()
    server = FakeApns(tls, args.team_id, args.key_id, args.public_key.read_bytes(),
                      frozenset(args.topic), record=not args.bench, port=args.port)

    def started(port: int) -> None:
        print(f"listening on {port}", flush=True)

    try:
        asyncio.run(server.serve(started))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
