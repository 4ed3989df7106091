"""The FCM provider's HTTP client: httpx over one HTTP/2 connection, TLS verified; and what
every push client shares (TLS context, quiet HTTP logs, ``Answer``). APNs has a client of its
own, ``plugins/push/h2channel.py``.

``Channel`` sends through an ``httpx.HTTPTransport`` directly rather than an ``httpx.Client``:
they need no redirects, cookies or auth flows, and skipping those layers took the rate of
one process on one HTTP/2 connection from about 1,600 to about 2,300 requests/s (measured
against the local APNs while writing ``scripts/bench/push.py``). The transport's
pool is limited to one connection, on which httpcore opens one HTTP/2 stream per request up
to the server's ``SETTINGS_MAX_CONCURRENT_STREAMS`` (and at most 100); under gevent's
monkey-patching its locks are cooperative, so concurrent greenlets multiplex on it. OS
threads must not share a channel: httpcore encodes a request's headers (HPACK, whose table
is connection state) outside its write lock, so a thread preempted between encoding and
queueing sends header blocks out of order and the server drops the connection (seen
against the local APNs as "Invalid table index"); a greenlet is never preempted there. A
lost connection is opened again by the next request.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from server.logs import quiet_http_logs


def ssl_context(ca_file: str = "") -> ssl.SSLContext:
    """Verify servers against ``ca_file`` (PEM), or the system's trust store when empty."""
    return ssl.create_default_context(cafile=ca_file or None)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


class Channel:
    """POSTs to one service over one connection (HTTP/2 when ``http2``, required when not
    ``http1``). Raises ``httpx.TransportError`` for timeouts and connection failures."""

    def __init__(self, base_url: str, *, ca_file: str = "", timeout: float = 10.0,
                 http1: bool = True, http2: bool = True) -> None:
        quiet_http_logs()
        self.base = httpx.URL(base_url)
        self._origin = str(self.base.copy_with(path="")).rstrip("/")
        self._timeout = httpx.Timeout(timeout).as_dict()
        self._transport = httpx.HTTPTransport(
            verify=ssl_context(ca_file), http1=http1, http2=http2, retries=0,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )

    def request(self, method: str, url: httpx.URL, headers: dict[str, str],
                body: bytes | None) -> Answer:
        """Send one request and read the whole answer."""
        request = httpx.Request(method, url, headers=headers, content=body,
                                extensions={"timeout": self._timeout})
        response = self._transport.handle_request(request)
        try:
            data = response.read()
        finally:
            response.close()
        return Answer(response.status_code, response.headers, data)

    def post(self, path: str, headers: dict[str, str], body: bytes) -> Answer:
        """POST ``body`` to ``path`` under the base URL."""
        return self.request("POST", httpx.URL(self._origin + path), headers, body)

    def close(self) -> None:
        self._transport.close()
