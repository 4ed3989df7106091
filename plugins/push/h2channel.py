"""A small HTTP/2 client for APNs: many streams on one TLS socket, writes batched.

httpx/httpcore cost more per request than the rest of a push put together (URL and request
objects, a dozen lock operations, three TLS writes per request: HEADERS, DATA, END_STREAM);
under gevent that capped one connection at about 1,700 notifications/s. ``H2Channel`` keeps
only what APNs needs: POSTs with small bodies to one origin over one connection.

- One connection at a time, opened by the first request (TLS verified, ALPN ``h2``, used
  once the server's first SETTINGS arrived) and again by the first request after it was lost
  or the server sent GOAWAY. Requests waiting while a connection attempt fails get that
  failure instead of each trying again.
- Streams in flight never exceed the server's ``SETTINGS_MAX_CONCURRENT_STREAMS`` (followed
  as it changes); a request waits for a free stream. Bodies respect flow control.
- Requests queue their frames with the ``h2`` state machine under a lock that guards no
  I/O and wake one writer (a thread: a greenlet under gevent's patching), which writes
  everything queued by then in one TLS write: the requests made in one pass of the event
  loop leave together. One reader reads answers and wakes each request.
- Headers are HPACK-coded without Huffman coding, and those that change with every request
  stay out of HPACK's table (``unindexed``), so the repeated ones are one byte each.
- GOAWAY and a lost connection fail every stream in flight (to be retried: ``h2`` takes no
  frame after GOAWAY, as with httpx before); new requests go to a new connection. A request
  without an answer within the timeout is reset. Errors are ``TransportError`` subclasses,
  named as httpx names its own.

The workers drive it from greenlets, where reader and writer are greenlets of the same OS
thread. It also works from OS threads (the provider tests): the reader waits for data in
``select`` and reads under the same lock the writer writes under, since one SSL object must
not be used by two threads at once (a read racing a write came back as a false end of the
connection).
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import hpack
import httpx
from hpack.struct import HeaderWeaklyTyped

from plugins.push.http import Answer, ssl_context
from server.logs import quiet_http_logs

log = logging.getLogger(__name__)

_READ_SIZE = 1 << 16


class TransportError(Exception):
    """The request may not have reached the service, or its answer was lost: retry later."""


class ConnectError(TransportError):
    pass


class ReadTimeout(TransportError):
    pass


class RemoteProtocolError(TransportError):
    """The connection was lost or closed (GOAWAY) before the answer, or the stream reset."""


class _Stream:
    """One request in flight; ``done`` is held until its answer (or failure) is in."""

    __slots__ = ("id", "done", "pending", "status", "headers", "body", "error")

    def __init__(self, stream_id: int, body: bytes) -> None:
        self.id = stream_id
        self.done = threading.Lock()
        self.done.acquire()
        self.pending = memoryview(body)
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.error: TransportError | None = None


class _PlainEncoder(hpack.Encoder):
    """HPACK without Huffman coding: in pure Python, coding the provider token and the
    device's path anew for every request was a tenth of a push's cost; plain literals cost a
    few more bytes on the wire."""

    def encode(self, headers: Any, huffman: bool = False) -> bytes:
        return super().encode(headers, huffman=False)


class _Connection:
    """One TLS connection and its ``h2`` state, the streams it carries, its reader and its
    writer (threads: greenlets under gevent's patching)."""

    def __init__(self, sock: ssl.SSLSocket, timeout: float) -> None:
        self.sock = sock
        # h2's per-header checks cost as much as the rest of a request: ours come from our
        # own code (sensitive ones marked by H2Channel), the answers' from the verified
        # server, and only :status and apns-id are read.
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False,
            normalize_outbound_headers=False, validate_inbound_headers=False,
            normalize_inbound_headers=False))
        self.h2.encoder = _PlainEncoder()
        self.lock = threading.Lock()  # guards h2, streams and the flags; never held over I/O
        # Held over each TLS read and write: one SSL object must not be used by two OS
        # threads at once (the reader waits for data in select, without it).
        self.io = threading.Lock()
        self.slot_freed = threading.Condition(self.lock)
        self.streams: dict[int, _Stream] = {}
        self.wake = threading.Lock()  # released (once) when there is something to write
        self.wake.acquire()
        self.wake_pending = False
        self.usable = True  #: takes new streams (not lost, no GOAWAY)
        self.timeout = timeout  # of the reader's waits: it looks whether it was closed
        self.closed = False
        self.h2.initiate_connection()
        self.sock.sendall(self.h2.data_to_send())
        self._await_settings(timeout)
        for target, name in ((self._read, "reader"), (self._write, "writer")):
            threading.Thread(target=target, name=f"push-h2-{name}", daemon=True).start()

    def _await_settings(self, timeout: float) -> None:
        """Read until the server's first SETTINGS (its stream limit) has been applied."""
        self.sock.settimeout(timeout)
        while True:
            data = self.sock.recv(_READ_SIZE)
            if not data:
                raise ConnectError("connection closed before the server's SETTINGS")
            events = self.h2.receive_data(data)
            self.sock.sendall(self.h2.data_to_send())
            if any(isinstance(e, h2.events.RemoteSettingsChanged) for e in events):
                return

    # --- sending ------------------------------------------------------------------------------

    def start(self, headers: list[HeaderWeaklyTyped], body: bytes) -> _Stream:
        """A new stream carrying ``headers`` and ``body``, once the server's limit allows."""
        with self.lock:
            while self.usable and len(self.streams) >= \
                    self.h2.remote_settings.max_concurrent_streams:
                self.slot_freed.wait()
            if not self.usable:
                raise RemoteProtocolError("connection closed")
            stream = _Stream(self.h2.get_next_available_stream_id(), body)
            self.streams[stream.id] = stream
            self.h2.send_headers(stream.id, headers, end_stream=not body)
            if body:
                self._send_body(stream)
            self._queued()
        return stream

    def _send_body(self, stream: _Stream) -> None:
        """As much of the stream's body as flow control allows (under ``lock``)."""
        while stream.pending:
            size = min(self.h2.local_flow_control_window(stream.id), len(stream.pending),
                       self.h2.max_outbound_frame_size)
            if size <= 0:
                return
            chunk, stream.pending = stream.pending[:size], stream.pending[size:]
            self.h2.send_data(stream.id, chunk.tobytes(), end_stream=not stream.pending)

    def _queued(self) -> None:
        """Wake the writer (under ``lock``), unless it is awake already."""
        if not self.wake_pending:
            self.wake_pending = True
            self.wake.release()

    def _write(self) -> None:
        """Write whatever has been queued since the last write, in one go: the frames of
        every request made while the writer waited for its turn leave together."""
        try:
            while True:
                self.wake.acquire()
                with self.lock:
                    self.wake_pending = False
                    if self.closed:
                        return
                    data = self.h2.data_to_send()
                if data:
                    with self.io:
                        self.sock.sendall(data)
        except OSError as e:
            self.close(RemoteProtocolError(f"write failed: {type(e).__name__}"))

    def cancel(self, stream: _Stream) -> None:
        """Give up on ``stream`` (its answer is late): reset it and free its slot."""
        with self.lock:
            if self.streams.pop(stream.id, None) is None:
                return
            self.slot_freed.notify()
            if self.usable:
                try:
                    self.h2.reset_stream(stream.id, h2.errors.ErrorCodes.CANCEL)
                except h2.exceptions.ProtocolError:
                    pass  # closed meanwhile
                self._queued()

    # --- receiving ----------------------------------------------------------------------------

    def _read(self) -> None:
        try:
            while True:
                if not self.sock.pending():  # nothing decrypted waiting: wait for the socket
                    ready, _, _ = select.select([self.sock], [], [], self.timeout)
                    if not ready:
                        continue
                try:
                    with self.io:
                        data = self.sock.recv(_READ_SIZE)
                except TimeoutError:
                    continue  # part of a record only (the timeout is there for writes)
                if not data:
                    raise RemoteProtocolError("connection closed by the server")
                with self.lock:
                    finished = self._handle(self.h2.receive_data(data))
                    drained = not self.usable and not self.streams
                    self._queued()  # acknowledgements, window updates, bodies they let go
                for stream in finished:
                    stream.done.release()
                if drained:
                    raise RemoteProtocolError("connection closed (GOAWAY)")
        except (OSError, ValueError, h2.exceptions.ProtocolError) as e:  # ValueError: closed
            self.close(RemoteProtocolError(f"connection lost: {type(e).__name__}"))
        except RemoteProtocolError as e:
            self.close(e)

    def _handle(self, events: Iterable[h2.events.Event]) -> list[_Stream]:
        """Apply the server's events (under ``lock``); the streams they finished."""
        finished = []
        for event in events:
            if isinstance(event, h2.events.ResponseReceived):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    headers = _text(event.headers)
                    stream.status = int(headers.pop(":status"))
                    stream.headers = headers
            elif isinstance(event, h2.events.DataReceived):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.body += event.data
                self.h2.acknowledge_received_data(event.flow_controlled_length,
                                                  event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                stream = self.streams.pop(event.stream_id, None)
                if stream is not None:
                    finished.append(stream)
                    self.slot_freed.notify()
            elif isinstance(event, h2.events.StreamReset):
                stream = self.streams.pop(event.stream_id, None)
                if stream is not None:
                    stream.error = RemoteProtocolError(f"stream reset ({event.error_code!r})")
                    finished.append(stream)
                    self.slot_freed.notify()
            elif isinstance(event, h2.events.WindowUpdated):
                for stream in self.streams.values():
                    if stream.pending:
                        self._send_body(stream)
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                self.slot_freed.notify_all()
            elif isinstance(event, h2.events.ConnectionTerminated):
                finished += self._goaway(event)
        return finished

    def _goaway(self, event: h2.events.ConnectionTerminated) -> list[_Stream]:
        """No new streams here, and every stream still waiting fails (under ``lock``):
        ``h2`` takes no frame after GOAWAY, so not even the streams the server kept can
        be answered on this connection."""
        log.info("APNs connection closing (GOAWAY %r, %r)", event.error_code,
                 event.additional_data)
        self.usable = False
        self.slot_freed.notify_all()
        failed = list(self.streams.values())
        self.streams.clear()
        for stream in failed:
            stream.error = RemoteProtocolError(f"GOAWAY ({event.error_code!r})")
        return failed

    def close(self, error: TransportError) -> None:
        """Close the socket and fail every stream still waiting with ``error``."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self.usable = False
            failed = list(self.streams.values())
            self.streams.clear()
            self.slot_freed.notify_all()
            self._queued()  # the writer sees ``closed`` and ends
        for stream in failed:
            stream.error = error
            stream.done.release()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the reader in its recv
        except OSError:
            pass
        self.sock.close()


def _text(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode(): v.decode("utf-8", "replace") for k, v in headers}


class H2Channel:
    """POSTs to one HTTPS origin over one HTTP/2 connection (see the module docstring)."""

    def __init__(self, base_url: str, *, ca_file: str = "", timeout: float = 10.0,
                 unindexed: Iterable[str] = ()) -> None:
        """``unindexed``: headers that differ from request to request (besides ``:path``),
        sent without entering HPACK's table, where they would only push out the ones that
        repeat. ``authorization`` never enters it (RFC 7541 7.1.3)."""
        quiet_http_logs()
        url = httpx.URL(base_url)
        self.base = url
        self.host = url.host
        self.port = url.port or 443
        self.timeout = timeout
        self._tls = ssl_context(ca_file)
        self._tls.set_alpn_protocols(["h2"])
        authority = url.netloc.decode()
        self._prefix = [(":method", "POST"), (":scheme", "https"), (":authority", authority)]
        self._unindexed = frozenset({"authorization", *unindexed})
        self._connecting = threading.Lock()
        self._conn: _Connection | None = None
        self._attempts = 0
        self._failure: TransportError | None = None

    def post(self, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """POST ``body`` to ``path``; the whole answer. Raises ``TransportError``."""
        unindexed = self._unindexed
        block: list[HeaderWeaklyTyped] = [*self._prefix,
                                          hpack.NeverIndexedHeaderTuple(":path", path)]
        block += [hpack.NeverIndexedHeaderTuple(k, v) if k in unindexed else (k, v)
                  for k, v in headers.items()]
        conn = self._connection()
        stream = conn.start(block, body)
        if not stream.done.acquire(timeout=self.timeout):
            conn.cancel(stream)
            if not stream.done.acquire(blocking=False):  # the answer did not come meanwhile
                raise ReadTimeout(f"no answer within {self.timeout:g}s")
        if stream.error is not None:
            raise stream.error
        return Answer(stream.status, stream.headers, bytes(stream.body))

    def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None and conn.usable:
            return conn
        attempt = self._attempts
        with self._connecting:
            conn = self._conn
            if conn is not None and conn.usable:
                return conn
            failure = self._failure
            if self._attempts != attempt and failure is not None:
                # the attempt made while this request waited failed: so does this request
                raise type(failure)(*failure.args)
            self._attempts += 1
            try:
                self._conn = self._connect()
                self._failure = None
            except TransportError as e:
                self._failure = e
                raise
            return self._conn

    def _connect(self) -> _Connection:
        try:
            raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except TimeoutError:
            raise ConnectError(f"no connection within {self.timeout:g}s") from None
        except OSError as e:
            raise ConnectError(f"cannot connect: {type(e).__name__}") from None
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock = self._tls.wrap_socket(raw, server_hostname=self.host)
        except OSError as e:  # ssl.SSLError among them: an untrusted certificate
            raw.close()
            raise ConnectError(f"cannot connect: {type(e).__name__}") from None
        if sock.selected_alpn_protocol() != "h2":
            sock.close()
            raise ConnectError("the server does not speak HTTP/2")
        try:
            return _Connection(sock, self.timeout)
        except (OSError, h2.exceptions.ProtocolError) as e:
            sock.close()
            raise ConnectError(f"cannot connect: {type(e).__name__}") from None

    def close(self) -> None:
        with self._connecting:
            if self._conn is not None:
                self._conn.close(RemoteProtocolError("channel closed"))
                self._conn = None
