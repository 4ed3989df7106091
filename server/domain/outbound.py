"""Which outbound URLs and addresses we may connect to: the pure rules.

Requests to URLs that users give us (share-out webhooks, Mastodon instances, real-time
callbacks) must never reach our own network. A URL is refused unless its scheme is http or
https, it names a host and carries no user-info; an address is refused when it is loopback,
private (RFC 1918, IPv6 unique local), link-local (169.254/16, fe80::/10, which holds the cloud
metadata services 169.254.169.254 and fd00:ec2::254), CGNAT (100.64/10), multicast,
unspecified, reserved or documentation space, or otherwise not globally routable (the ranges
are listed here, since Python 3.11's ``is_global`` takes some, such as the local-use NAT64
prefix ``64:ff9b:1::/48``, for public); IPv6 forms that embed an IPv4 address (IPv4-mapped
``::ffff:a.b.c.d``, IPv4-compatible, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo) are
judged by the address they carry too.

An operator allow-list (``outbound.allow_hosts``) exempts host names (``hooks.internal``,
``*.corp.example``) from the address rules, and addresses or networks (``127.0.0.1``,
``10.1.0.0/16``) from refusal. ``server.outbound`` applies these rules at connect time.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Labelled refused ranges, most specific first (the label is what a refusal says).
_REFUSED: list[tuple[str, Network]] = [
    (label, ipaddress.ip_network(net))
    for label, net in [
        ("cloud metadata", "169.254.169.254/32"),
        ("cloud metadata", "fd00:ec2::254/128"),
        ("unspecified", "0.0.0.0/8"),
        ("private", "10.0.0.0/8"),
        ("carrier-grade NAT", "100.64.0.0/10"),
        ("loopback", "127.0.0.0/8"),
        ("link-local", "169.254.0.0/16"),
        ("private", "172.16.0.0/12"),
        ("reserved", "192.0.0.0/24"),
        ("documentation", "192.0.2.0/24"),
        ("private", "192.168.0.0/16"),
        ("benchmarking", "198.18.0.0/15"),
        ("documentation", "198.51.100.0/24"),
        ("documentation", "203.0.113.0/24"),
        ("multicast", "224.0.0.0/4"),
        ("reserved", "240.0.0.0/4"),
        ("unspecified", "::/128"),
        ("loopback", "::1/128"),
        ("local-use NAT64", "64:ff9b:1::/48"),  # RFC 8215: any embedding, never global
        ("discard", "100::/64"),
        ("documentation", "2001:db8::/32"),
        ("documentation", "3fff::/20"),
        ("segment routing", "5f00::/16"),
        ("unique local", "fc00::/7"),
        ("link-local", "fe80::/10"),
        ("site-local", "fec0::/10"),
        ("multicast", "ff00::/8"),
    ]
]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_V4_COMPATIBLE = ipaddress.ip_network("::/96")


class UnsafeURL(ValueError):
    """A URL or address we refuse to connect to; the message says why."""


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4, Teredo)."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or (address in _V4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_refusal(address: Address) -> str | None:
    """Why ``address`` is refused (e.g. "loopback"), or None when it is a public address."""
    inner = embedded_ipv4(address)
    if inner is not None:
        why = address_refusal(inner)
        if why is not None:
            return f"{why} (embedded in {address})"
    for label, network in _REFUSED:
        if address.version == network.version and address in network:
            return label
    if not address.is_global:
        return "not globally routable"
    return None


@dataclass(frozen=True)
class OutboundPolicy:
    """The address rules plus the operator's allow-list."""

    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> OutboundPolicy:
        """Read allow-list entries: ``host``, ``*.domain``, ``address`` or ``network/len``.

        Raises ValueError naming a malformed entry.
        """
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[Network] = []
        for raw in entries:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            host = entry[2:] if entry.startswith("*.") else entry
            if not host or not all(p and p.replace("-", "").isalnum() for p in host.split(".")):
                raise ValueError(f"{raw!r} is not a host name, *.domain, address or network")
            if entry.startswith("*."):
                suffixes.append("." + host)
            else:
                names.add(host)
        return cls(frozenset(names), tuple(suffixes), tuple(networks))

    def check_url(self, url: str) -> str:
        """The host of ``url`` if its form is acceptable; UnsafeURL otherwise."""
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018  (raises ValueError for a bad port)
        except ValueError as e:
            raise UnsafeURL(f"not a valid URL: {e}") from None
        if parts.scheme not in ("http", "https"):
            raise UnsafeURL(f"scheme {parts.scheme or '(none)'!r} refused: only http and https")
        if parts.username is not None or parts.password is not None:
            raise UnsafeURL("URLs with user-info are refused")
        if not parts.hostname:
            raise UnsafeURL("the URL names no host")
        return parts.hostname

    def name_allowed(self, host: str) -> bool:
        """Whether the operator allowed this host name (exempt from the address rules)."""
        host = host.lower().rstrip(".")
        return host in self.names or any(host.endswith(s) for s in self.suffixes)

    def refusal(self, address: Address) -> str | None:
        """Why ``address`` is refused, or None when public or allow-listed."""
        if any(address.version == n.version and address in n for n in self.networks):
            return None
        return address_refusal(address)
