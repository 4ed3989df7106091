"""HTTP clients for URLs that users give us, which never reach our own network.

``safe_client(policy)`` returns an ordinary ``httpx.Client`` (sync; cooperative under gevent's
monkey-patching, so the worker pool can run many at once) with two guards:

1. **At connect time** (``GuardedBackend``, the network backend of its connection pool), the
   host is resolved once, every address is checked against ``OutboundPolicy`` and the socket
   connects to one of those checked addresses. A DNS answer that changes between a check
   and the connection (DNS rebinding) cannot slip through, because there is no second lookup:
   the URL keeps its host name, so the ``Host`` header, TLS SNI and certificate verification
   are those of the name, while the TCP connection goes to the address we checked. A host
   name with any refused address is refused as a whole.
2. **On every request**, redirects included, the URL's form is checked (http/https only, a
   host, no user-info). Redirects are followed only when the caller asks
   (``follow_redirects=True``), at most ``max_redirects`` hops, and each hop's connection
   passes guard 1 again: a public URL redirecting to ``http://169.254.169.254/`` is refused.

3. **A total deadline**: httpx's timeouts are per read or write, so a server sending its
   headers or body one byte at a time, each just inside the timeout, would hold the caller
   almost forever. Inside ``with deadline(seconds):`` every connect, TLS handshake, read and
   write of the client waits at most the time left, and once it has passed raises
   ``httpcore``'s ``ConnectTimeout``/``ReadTimeout``/``WriteTimeout`` (which httpx maps to its
   ``TimeoutException``). The deadline is a context variable: per thread (the API's
   threadpool) and per greenlet (the worker pool under gevent).

Refusals raise ``UnsafeURL`` (a ValueError, not an ``httpx`` error: callers treat it as
permanent). Proxies from the environment are ignored (``trust_env=False``): a proxy would
make the address we connect to not the one we checked. The operator's allow-list
(``outbound.allow_hosts``) is parsed by ``policy_from(config)``.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx

from server.config import Config
from server.domain.outbound import OutboundPolicy, UnsafeURL

Resolver = Callable[..., list[tuple[Any, ...]]]
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
#: The monotonic time by which the current exchange must be over (None: no total limit).
_DEADLINE: ContextVar[float | None] = ContextVar("outbound_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every network wait of the outbound-safe clients inside the block ends at most
    ``seconds`` from now (or at an enclosing deadline, if sooner); see the module doc."""
    at = time.monotonic() + seconds
    outer = _DEADLINE.get()
    token = _DEADLINE.set(at if outer is None else min(at, outer))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def time_left(timeout: float | None, expired: type[Exception]) -> float | None:
    """``timeout`` clamped to the current deadline's time left; ``expired`` (an exception
    class, raised with a message) once the deadline has passed."""
    at = _DEADLINE.get()
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise expired("the total time limit of the exchange has passed")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A connection's stream whose every wait ends by the current ``deadline``."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, time_left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, time_left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return DeadlineStream(self._stream.start_tls(
            ssl_context, server_hostname, time_left(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's socket backend, connecting only to addresses the policy accepts, with
    streams that keep the current ``deadline``."""

    def __init__(self, policy: OutboundPolicy, resolve: Resolver | None = None) -> None:
        self._policy = policy
        self._resolve = resolve

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        error: Exception | None = None
        for address in checked_addresses(self._policy, host, port, self._resolve):
            try:  # a numeric host: create_connection does no second DNS lookup
                return DeadlineStream(super().connect_tcp(
                    address, port, time_left(timeout, httpcore.ConnectTimeout), local_address,
                    socket_options))
            except httpcore.ConnectError as e:
                error = e
        raise httpcore.ConnectError(f"cannot connect to {host}: {error}")


def checked_addresses(
    policy: OutboundPolicy, host: str, port: int, resolve: Resolver | None = None
) -> list[str]:
    """Resolve ``host`` once and return its addresses if every one passes ``policy``;
    UnsafeURL naming the first refused address otherwise (or if none resolve).
    """
    lookup = resolve or socket.getaddrinfo  # looked up now: gevent may have patched it
    try:
        infos = lookup(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:  # UnicodeError: a label empty or too long
        raise httpcore.ConnectError(f"cannot resolve {host}: {e}") from e
    trusted = policy.name_allowed(host)
    out: list[str] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        why = None if trusted else policy.refusal(address)
        if why is not None:
            raise UnsafeURL(f"{host} resolves to {address}: {why} addresses are refused")
        if str(address) not in out:
            out.append(str(address))
    if not out:
        raise UnsafeURL(f"{host} resolves to no IPv4 or IPv6 address")
    return out


class GuardedTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` whose connection pool connects through ``GuardedBackend``."""

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = DEFAULT_LIMITS,
        resolve: Resolver | None = None,
    ) -> None:
        super().__init__(verify=verify, trust_env=False, limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy, resolve),
        )


def safe_client(
    policy: OutboundPolicy,
    *,
    timeout: float = 10.0,
    max_redirects: int = 5,
    verify: ssl.SSLContext | bool = True,
    headers: Mapping[str, str] | None = None,
    resolve: Resolver | None = None,
) -> httpx.Client:
    """An ``httpx.Client`` that refuses unsafe URLs and addresses (see the module doc).

    It does not follow redirects unless a request asks (``follow_redirects=True``), then at
    most ``max_redirects``. ``resolve`` replaces ``socket.getaddrinfo`` (tests).
    """

    def check(request: httpx.Request) -> None:
        policy.check_url(str(request.url))

    return httpx.Client(
        transport=GuardedTransport(policy, verify=verify, resolve=resolve),
        timeout=timeout,
        max_redirects=max_redirects,
        follow_redirects=False,
        trust_env=False,
        headers=dict(headers or {}),
        event_hooks={"request": [check]},
    )


def policy_from(config: Config) -> OutboundPolicy:
    """The outbound policy with the configured allow-list (``outbound.allow_hosts``)."""
    return OutboundPolicy.parse(config.outbound.allow_hosts)


def configured_client(config: Config, headers: Mapping[str, str] | None = None
                      ) -> httpx.Client:
    """``safe_client`` with the configured allow-list, timeout and redirect bound
    (``outbound.*``): the client of every URL users and apps give us."""
    out = config.outbound
    return safe_client(policy_from(config), timeout=out.timeout,
                       max_redirects=out.max_redirects, headers=headers)


def check_url(url: str, policy: OutboundPolicy, resolve: Resolver | None = None) -> None:
    """Check a URL now, as a link endpoint does before storing it: its form (one httpx can
    send, too), then the addresses its host resolves to. UnsafeURL says what is wrong.
    (Requests through ``safe_client`` check again at connect time; this only gives the user
    an early answer.)
    """
    host = policy.check_url(url)
    try:  # what urlsplit lets through, such as a control character, httpx may not
        port = httpx.URL(url).port or (443 if url.lower().startswith("https") else 80)
    except httpx.InvalidURL as e:
        raise UnsafeURL(f"not a valid URL: {e}") from None
    try:
        checked_addresses(policy, host, port, resolve)
    except httpcore.ConnectError:
        raise UnsafeURL(f"{host} does not resolve") from None
