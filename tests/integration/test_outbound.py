"""The outbound-safe HTTP client against a local server: allow-list, redirects, DNS, TLS."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import time
import tracemalloc
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server import callbacks
from server.domain.outbound import OutboundPolicy, UnsafeURL
from server.domain.subscriptions import DELIVERED, RETRY
from server.outbound import check_url, deadline, safe_client
from tests.fakes.http import FakeHTTPServer, Reply
from tests.fakes.trickle import Trickle, drip

ALLOW_LOOPBACK = OutboundPolicy.parse(["127.0.0.1"])


@pytest.fixture
def server() -> Iterator[FakeHTTPServer]:
    with FakeHTTPServer() as fake:
        fake.route("GET", "/ok", lambda r: Reply(200, {"host": r.header("Host")}))
        yield fake


def redirect_to(location: str) -> Reply:
    return Reply(302, headers={"Location": location})


def test_allow_listed_loopback_is_reached(server) -> None:
    """With 127.0.0.1 allow-listed, a request to the local server goes through."""
    with safe_client(ALLOW_LOOPBACK) as client:
        assert client.get(f"{server.url}/ok").status_code == 200


def test_loopback_is_refused_without_the_allow_list(server) -> None:
    """By default 127.0.0.1 and localhost are refused before any connection is made."""
    with safe_client(OutboundPolicy()) as client:
        for url in (f"{server.url}/ok", f"http://localhost:{server.port}/ok"):
            with pytest.raises(UnsafeURL, match="loopback"):
                client.get(url)
    assert server.requests == []
    with pytest.raises(UnsafeURL, match="loopback"):
        check_url(f"http://localhost:{server.port}/", OutboundPolicy())


@pytest.mark.parametrize("location,why", [
    ("http://127.0.0.2:{port}/ok", "loopback"),
    ("http://[::1]:{port}/ok", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://[::ffff:10.0.0.1]/", "private"),
])
def test_redirects_to_private_addresses_are_refused(server, location: str, why: str) -> None:
    """Each redirect hop is checked again: an allowed server cannot bounce us inward."""
    server.script("GET", "/start", redirect_to(location.format(port=server.port)))
    with safe_client(ALLOW_LOOPBACK) as client:
        with pytest.raises(UnsafeURL, match=why):
            client.get(f"{server.url}/start", follow_redirects=True)
    assert [r.path for r in server.requests] == ["/start"]


def test_redirects_are_bounded_and_off_by_default(server) -> None:
    """Redirects are not followed unless asked, and then at most max_redirects hops."""
    server.route("GET", "/loop", lambda r: redirect_to("/loop"))
    with safe_client(ALLOW_LOOPBACK, max_redirects=3) as client:
        assert client.get(f"{server.url}/loop").status_code == 302
        with pytest.raises(httpx.TooManyRedirects):
            client.get(f"{server.url}/loop", follow_redirects=True)
    assert len(server.requests) == 1 + 4
    server.script("GET", "/start", redirect_to("/ok"))
    with safe_client(ALLOW_LOOPBACK) as client:
        assert client.get(f"{server.url}/start", follow_redirects=True).status_code == 200


class Resolver:
    """A DNS stand-in: each lookup of a name returns its next answer (the last one repeats)."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int, **kw: Any) -> list[tuple[Any, ...]]:
        self.lookups.append(host)
        queue = self.answers.get(host)
        if queue is None:
            return socket.getaddrinfo(host, port, **kw)
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port)) for a in addresses]


def test_connects_to_the_address_it_checked(server) -> None:
    """DNS answering differently later cannot swap the checked address: one lookup per
    connection, the socket goes to that address, the Host header keeps the name."""
    dns = Resolver({"rebind.test": [["127.0.0.1"], ["127.0.0.2"]]})
    with safe_client(ALLOW_LOOPBACK, resolve=dns) as client:
        reply = client.get(f"http://rebind.test:{server.port}/ok")
        assert reply.json() == {"host": f"rebind.test:{server.port}"}
        assert dns.lookups == ["rebind.test"]
    with safe_client(ALLOW_LOOPBACK, resolve=dns) as client:  # a new connection, a new answer
        with pytest.raises(UnsafeURL, match="127.0.0.2: loopback"):
            client.get(f"http://rebind.test:{server.port}/ok")


def test_a_name_with_any_private_address_is_refused_whole(server) -> None:
    """A name resolving to a public and a private address is refused; nothing is contacted."""
    dns = Resolver({"mixed.test": [["8.8.8.8", "10.0.0.1"]]})
    with safe_client(ALLOW_LOOPBACK, resolve=dns) as client:
        with pytest.raises(UnsafeURL, match="10.0.0.1: private"):
            client.get("http://mixed.test/")


def tls_files(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_verifies_the_name_while_connecting_to_the_checked_address(tmp_path) -> None:
    """Over HTTPS, SNI and certificate checks use the URL's name, the socket the checked IP."""
    cert, key = tls_files(tmp_path, "secure.test")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    trust = ssl.create_default_context(cafile=str(cert))
    with FakeHTTPServer(tls=server_tls) as server:
        server.route("GET", "/ok", lambda r: Reply(200, {"host": r.header("Host")}))
        dns = Resolver({"secure.test": [["127.0.0.1"]]})
        with safe_client(ALLOW_LOOPBACK, resolve=dns, verify=trust) as client:
            reply = client.get(f"https://secure.test:{server.port}/ok")
            assert reply.json() == {"host": f"secure.test:{server.port}"}
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED|match"):
                client.get(f"https://127.0.0.1:{server.port}/ok")
    assert ipaddress.ip_address("127.0.0.1").is_loopback


def test_check_url_gives_an_early_answer() -> None:
    """check_url accepts a public address and refuses an unresolvable or private host."""
    check_url("http://93.184.216.34/hook", OutboundPolicy())  # resolved locally, not contacted
    def nxdomain(host: str, port: int, **kw: Any) -> list[tuple[Any, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(UnsafeURL, match="does not resolve"):
        check_url("https://no-such-host.test/", OutboundPolicy(), resolve=nxdomain)
    with pytest.raises(UnsafeURL, match="private"):
        check_url("https://10.0.0.8/", OutboundPolicy())


def test_a_deadline_cuts_off_headers_dripping_within_each_read_timeout() -> None:
    """A server sending its status line and headers one byte every 0.2 s never trips the
    2 s read timeout, but a 1 s deadline ends the request at 1 s (httpx.ReadTimeout); a
    webhook delivery (which sets its own deadline, the client's timeout) is cut off too."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    with Trickle(drip(b"", head, every=0.2)) as slow, \
            safe_client(ALLOW_LOOPBACK, timeout=2.0) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout), deadline(1.0):
            client.get(slow.url)
        assert time.monotonic() - started < 1.8
        started = time.monotonic()
        assert callbacks.deliver(client, slow.url, b"[]", "sha1=0") == (
            RETRY, "the callback did not answer in time")
        assert time.monotonic() - started < 3.0  # the head alone would take 7 s


def gzipped(pieces: Iterable[bytes]) -> bytes:
    """``pieces`` in the gzip format, compressed as far as zlib goes."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip header and trailer
    return b"".join(map(c.compress, pieces)) + c.flush()


def test_a_compressed_answer_is_never_inflated(server: FakeHTTPServer) -> None:
    """A callback answering with a body gzipped twice (``Content-Encoding: gzip, gzip``, a
    few hundred bytes standing for 64 MiB of zeros) despite ``Accept-Encoding: identity``
    fails verification without its body being inflated, and a delivery to it (whose answer
    is never read) goes through: both together allocate a few MiB at most."""
    bomb = gzipped([gzipped(bytes(1 << 20) for _ in range(64))])
    answer = Reply(200, body=bomb, headers={"Content-Encoding": "gzip, gzip"})
    for method in ("GET", "POST"):
        server.route(method, "/hook", lambda r: answer)
    tracemalloc.start()
    try:
        with safe_client(ALLOW_LOOPBACK) as client:
            why = callbacks.verify(client, f"{server.url}/hook", "t", "challenge")
            delivered = callbacks.deliver(client, f"{server.url}/hook", b"[]", "sha1=0")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak >> 20} MiB allocated for a {len(bomb)} B answer"
    assert why == ("the callback answered with an encoded body (Content-Encoding) instead of "
                   "echoing hub.challenge as it is")
    assert delivered == (DELIVERED, "the callback answered HTTP 200")
    assert [r.header("Accept-Encoding") for r in server.requests] == ["identity"] * 2
