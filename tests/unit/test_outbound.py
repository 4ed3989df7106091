"""The outbound address rules: every refused class, IPv6 and embedded IPv4 forms, allow-lists."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest

from server import callbacks
from server.config import load
from server.domain.outbound import OutboundPolicy, UnsafeURL, address_refusal
from server.domain.subscriptions import REFUSED as DELIVERY_REFUSED
from server.outbound import DeadlineStream, check_url, deadline, safe_client, time_left
from workers import logs

REFUSED = {
    "127.0.0.1": "loopback", "127.5.5.5": "loopback", "10.1.2.3": "private",
    "172.16.0.1": "private", "172.31.255.255": "private", "192.168.1.1": "private",
    "169.254.169.254": "cloud metadata", "169.254.1.1": "link-local",
    "100.64.0.1": "carrier-grade NAT", "100.127.255.254": "carrier-grade NAT",
    "0.0.0.0": "unspecified", "224.0.0.1": "multicast", "239.255.255.250": "multicast",
    "255.255.255.255": "reserved", "192.0.2.10": "documentation",
    "::1": "loopback", "::": "unspecified", "fe80::1": "link-local", "fc00::1": "unique local",
    "fd12:3456::1": "unique local", "fd00:ec2::254": "cloud metadata", "ff02::1": "multicast",
    "2001:db8::1": "documentation", "3fff::1": "documentation", "5f00::1": "segment routing",
    "64:ff9b:1::a9fe:a9fe": "local-use NAT64",  # RFC 8215, carrying 169.254.169.254
    "64:ff9b:1::a00:1": "local-use NAT64", "64:ff9b:1::7f00:1": "local-use NAT64",
    "::ffff:127.0.0.1": "loopback (embedded in ::ffff:7f00:1)",
    "::ffff:169.254.169.254": "cloud metadata (embedded in ::ffff:a9fe:a9fe)",
    "::ffff:10.0.0.1": "private (embedded in ::ffff:a00:1)",
    "::ffff:100.64.0.1": "carrier-grade NAT (embedded in ::ffff:6440:1)",
    "64:ff9b::a00:1": "private (embedded in 64:ff9b::a00:1)",
    "2002:7f00:1::": "loopback (embedded in 2002:7f00:1::)",
    "::127.0.0.1": "loopback (embedded in ::7f00:1)",
}
PUBLIC = ["93.184.216.34", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111",
          "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize("address,why", REFUSED.items())
def test_refused_address_classes(address: str, why: str) -> None:
    """Each non-public class is refused and named, IPv4 embedded in IPv6 included, and so
    are ranges Python 3.11's is_global takes for public (local-use NAT64 64:ff9b:1::/48,
    whichever IPv4 address it carries)."""
    assert address_refusal(ipaddress.ip_address(address)) == why


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    """Globally routable addresses, even in mapped or NAT64 form, are accepted."""
    assert address_refusal(ipaddress.ip_address(address)) is None


def test_allow_list_exempts_names_suffixes_and_networks() -> None:
    """Allowed names skip the address rules; allowed networks exempt only their addresses."""
    policy = OutboundPolicy.parse(["hooks.internal.", "*.corp.example", "127.0.0.1", "10.1.0.0/16"])
    assert policy.name_allowed("HOOKS.internal") and policy.name_allowed("a.b.corp.example")
    assert not policy.name_allowed("corp.example") and not policy.name_allowed("evil.example")
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("127.0.0.2")) == "loopback"
    assert policy.refusal(ipaddress.ip_address("10.1.200.3")) is None
    assert policy.refusal(ipaddress.ip_address("10.2.0.1")) == "private"
    with pytest.raises(ValueError, match="not a host name"):
        OutboundPolicy.parse(["http://x/"])


@pytest.mark.parametrize("url,why", [
    ("file:///etc/passwd", "scheme 'file'"), ("gopher://h/", "scheme 'gopher'"),
    ("javascript:alert(1)", "scheme 'javascript'"), ("//h/x", r"scheme '\(none\)'"),
    ("https://user:pw@h.example/", "user-info"), ("http:///path", "no host"),
    ("http://h.example:99999/", "not a valid URL"),
])
def test_url_forms_refused(url: str, why: str) -> None:
    """Only http(s) URLs naming a host, without user-info, pass the form check."""
    with pytest.raises(UnsafeURL, match=why):
        OutboundPolicy().check_url(url)
    assert OutboundPolicy().check_url("https://Example.COM:8443/a?b") == "example.com"


class Recorded(httpcore.NetworkStream):
    """A stream recording the timeout of each read and write it is asked for."""

    def __init__(self) -> None:
        self.timeouts: list[float | None] = []

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self.timeouts.append(timeout)
        return b""

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.timeouts.append(timeout)


def test_a_deadline_clamps_every_wait_then_ends_them() -> None:
    """Outside a deadline each wait keeps its own timeout; inside, it gets at most the time
    left (the sooner of nested deadlines), and once that has passed reads and writes raise
    httpcore's ReadTimeout and WriteTimeout without waiting."""
    inner = Recorded()
    stream = DeadlineStream(inner)
    stream.read(10, 5.0)
    with deadline(60):
        stream.read(10, None)
        stream.write(b"x", 5.0)
        with deadline(120):
            stream.read(10, 90.0)
        with deadline(0):
            with pytest.raises(httpcore.ReadTimeout):
                stream.read(10, 5.0)
            with pytest.raises(httpcore.WriteTimeout):
                stream.write(b"x", None)
    stream.write(b"x", None)
    first, unset, kept, nested, last = inner.timeouts
    assert (first, kept, last) == (5.0, 5.0, None)
    assert unset is not None and 59 < unset <= 60
    assert nested is not None and 58 < nested <= 60
    assert time_left(7.0, httpcore.ReadTimeout) == 7.0


def public(host: str, port: int, **kw: Any) -> list[tuple[Any, ...]]:
    """A resolver answering a public address for every name (no DNS in unit tests)."""
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))]


def test_a_url_httpx_cannot_send_is_refused_not_raised() -> None:
    """A control character passes urlsplit but not ``httpx.URL``: check_url refuses it as
    UnsafeURL (the API's 400), and the webhook calls answer a refusal instead of raising
    ``httpx.InvalidURL`` (the API's 500, or a delivery given up as a failure of ours)."""
    url = "http://hooks.example/cb\x01"
    invalid = "not a valid URL: Invalid non-printable ASCII character in URL"
    with pytest.raises(UnsafeURL, match=invalid):
        check_url(url, OutboundPolicy(), resolve=public)
    with safe_client(OutboundPolicy(), resolve=public) as client:
        why = callbacks.verify(client, url, "t", "c")
        outcome, detail = callbacks.deliver(client, url, b"[]", "sha1=0")
    assert why is not None and why.startswith("the callback URL is refused: Invalid non-printable")
    assert outcome == DELIVERY_REFUSED and "non-printable" in detail


@pytest.fixture
def root_logging() -> Iterator[None]:
    """The logging state that ``workers.logs.setup`` changes, put back after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "hpack", "h2")}
    yield
    root.handlers = handlers
    root.setLevel(level)
    for name, was in levels.items():
        logging.getLogger(name).setLevel(was)


@pytest.mark.parametrize("level", ["info", "debug"])
def test_the_workers_never_log_an_outbound_url(level: str, tmp_path: Path, root_logging: None,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """With the workers' logging set up (at ``info``, the default, or ``debug``), a request
    leaves no trace of its URL, whose query can carry credentials (httpx logs
    ``HTTP Request: POST <url>`` at INFO), while the workers' own records still show."""
    cfg = load(env={"SHUTTERLOG_VAR": str(tmp_path), "SHUTTERLOG_LOG_LEVEL": level},
               search_default=False)
    logs.setup(cfg, "workers")
    with httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(204))) as client:
        client.post("https://hooks.example/cb?token=s3cret", content=b"[]")
    logging.getLogger("workers.handlers.webhooks").info("webhook: 1 updates delivered")
    out = capsys.readouterr().out
    assert "webhook: 1 updates delivered" in out and "s3cret" not in out, out
