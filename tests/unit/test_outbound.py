"""The outbound address rules: every refused class, IPv6 and embedded IPv4 forms, allow-lists."""

from __future__ import annotations

import ipaddress

import httpcore
import pytest

from server.domain.outbound import OutboundPolicy, UnsafeURL, address_refusal
from server.outbound import DeadlineStream, deadline, time_left

REFUSED = {
    "127.0.0.1": "loopback", "127.5.5.5": "loopback", "10.1.2.3": "private",
    "172.16.0.1": "private", "172.31.255.255": "private", "192.168.1.1": "private",
    "169.254.169.254": "cloud metadata", "169.254.1.1": "link-local",
    "100.64.0.1": "carrier-grade NAT", "100.127.255.254": "carrier-grade NAT",
    "0.0.0.0": "unspecified", "224.0.0.1": "multicast", "239.255.255.250": "multicast",
    "255.255.255.255": "reserved", "192.0.2.10": "documentation",
    "::1": "loopback", "::": "unspecified", "fe80::1": "link-local", "fc00::1": "unique local",
    "fd12:3456::1": "unique local", "fd00:ec2::254": "cloud metadata", "ff02::1": "multicast",
    "2001:db8::1": "documentation",
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
    """Each non-public class is refused and named, IPv4 embedded in IPv6 included."""
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
