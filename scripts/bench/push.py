"""Notifications per second through the APNs provider, next to bare h2 requests.

One worker-like process (gevent, monkey-patched as the worker pool is) sends alert
notifications to the local APNs server (``scripts/fakes/apns.py``, in its own process, in
bench mode: same checks, nothing recorded) over ONE HTTP/2 connection with ``--concurrency``
streams in flight (each level of ``--concurrency`` in turn), in three ways, alternating, best
of two rounds of ``--seconds`` each:

- provider: ``ApnsProvider.send`` from a gevent pool of ``--concurrency`` greenlets: the
  notification validated, its payload and headers built, the cached JWT, the HTTP/2
  channel (``plugins/push/h2channel.py``), the answer mapped to a result;
- channel alone: an ``H2Channel`` of its own from the same pool, requests built once but
  ``:path`` and ``apns-id`` (where the provider's own work goes, next to the channel's);
- bare h2: a minimal client on the ``h2`` library, one TLS socket, requests of the same
  shape (headers built once but ``:path`` and ``apns-id``, one pre-built body, the same JWT)
  kept ``--concurrency`` in flight by a single loop.

The server's CPU share is printed for each phase, to show it is not the bottleneck, and the
client's CPU time per request (this process's, all greenlets): on a shared machine it moves
less than the rates do.
Run: ``python -m scripts.bench.push [--seconds S] [--concurrency N]``. Goal: at least 2,000
pushes/s and 50% of the bare rate.
"""

from workers.green import patch

patch()

import json  # noqa: E402  (everything below after gevent's patching, as in the worker)
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent.pool  # noqa: E402
import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from plugins.push.apns import ApnsProvider, ProviderToken  # noqa: E402
from plugins.push.h2channel import H2Channel  # noqa: E402
from plugins.push.http import ssl_context  # noqa: E402
from scripts.bench.common import (  # noqa: E402
    arguments,
    cpu_seconds,
    machine,
    progress,
    rate,
    table,
)
from scripts.fakes.tls import TlsFiles, make_tls  # noqa: E402
from scripts.stack import free_port  # noqa: E402
from server.domain.apns import apns_body, apns_headers  # noqa: E402
from server.domain.push import Delivered, Notification, notification_id  # noqa: E402

TEAM_ID = "BENCHTEAM1"
KEY_ID = "BENCHKEY01"
TOPIC = "com.example.shutterlog"
GOAL_RATE = 2000
GOAL_RATIO = 0.5


def notifications() -> Iterator[Notification]:
    """An endless series of like notifications, each to its own device."""
    n = 0
    while True:
        n += 1
        token = f"{n:064x}"
        yield Notification(token, "ios", notification_id(n, token), title="shutterlog",
                           body=f"user{n} liked your photo", collapse_key=f"like:{n}",
                           badge=1, sound="default")


class Server:
    """The local APNs in its own process, and its CPU time (from /proc)."""

    def __init__(self, tmp: Path, tls: TlsFiles, public_key: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.fakes.apns", "--port", str(self.port),
             "--tls-dir", str(tls.ca.parent), "--team-id", TEAM_ID, "--key-id", KEY_ID,
             "--public-key", str(public_key), "--topic", TOPIC, "--bench"],
            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("listening on"):
            self.proc.kill()
            raise RuntimeError(f"the local APNs did not start: {line!r}")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def run_pool(send: Callable[[Notification], bool], seconds: float, concurrency: int,
             source: Iterator[Notification]) -> int:
    """Sends that succeeded in ``seconds`` from a gevent pool of ``concurrency`` greenlets;
    any that did not is an error (the figures count only deliveries)."""
    stop = time.monotonic() + seconds

    def due() -> Iterator[Notification]:
        for n in source:
            if time.monotonic() >= stop:
                return
            yield n

    results = Counter(gevent.pool.Pool(concurrency).imap_unordered(send, due()))
    if results[False]:
        raise RuntimeError(f"{results[False]} of {sum(results.values())} sends failed")
    return results[True]


def provider_send(provider: ApnsProvider) -> Callable[[Notification], bool]:
    """Through the provider: build, send, map the answer."""
    return lambda n: isinstance(provider.send(n), Delivered)


def channel_send(channel: H2Channel, jwt: str, sample: Notification,
                 ) -> Callable[[Notification], bool]:
    """Through an HTTP/2 channel alone: headers and body built once."""
    fixed = {"authorization": f"bearer {jwt}"} | apns_headers(sample, TOPIC)
    body = apns_body(sample)
    return lambda n: channel.post(f"/3/device/{n.device_token}",
                                  fixed | {"apns-id": str(uuid.uuid4())}, body).status == 200


def run_bare(port: int, ca: Path, jwt: str, seconds: float, concurrency: int,
             sample: Notification) -> int:
    """Requests answered 200 in ``seconds`` by a minimal h2 client keeping ``concurrency``
    streams in flight on one TLS connection."""
    ctx = ssl_context(str(ca))
    ctx.set_alpn_protocols(["h2"])
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                           server_hostname="127.0.0.1")
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    pseudo = [(":method", "POST"), (":scheme", "https"), (":authority", f"127.0.0.1:{port}")]
    fixed = [("authorization", f"bearer {jwt}")]
    fixed += [(k, v) for k, v in apns_headers(sample, TOPIC).items() if k != "apns-id"]
    body = apns_body(sample)
    in_flight: set[int] = set()
    done = 0
    failed = 0
    stop = time.monotonic() + seconds
    while True:
        sending = time.monotonic() < stop
        while sending and len(in_flight) < concurrency:
            stream = conn.get_next_available_stream_id()
            conn.send_headers(stream, [*pseudo, (":path", f"/3/device/{stream:064x}"), *fixed,
                                       ("apns-id", str(uuid.uuid4()))])
            conn.send_data(stream, body, end_stream=True)
            in_flight.add(stream)
        if not in_flight:
            break
        sock.sendall(conn.data_to_send())
        for event in conn.receive_data(sock.recv(1 << 16)):
            if isinstance(event, h2.events.ResponseReceived):
                failed += dict(event.headers).get(b":status") != b"200"
            elif isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                in_flight.discard(event.stream_id)
                done += 1
    sock.close()
    if failed:
        raise RuntimeError(f"{failed} bare requests were not answered 200")
    return done


def measure(server: Server, ca: Path, provider: ApnsProvider, channel: H2Channel,
            seconds: float, streams: int,
            source: Iterator[Notification]) -> dict[str, tuple[float, float, float]]:
    """{side: (best rate, server CPU share, client CPU seconds per request)} with
    ``streams`` in flight, best of 2 rounds."""
    jwt = provider.token.current()
    sample = next(source)
    sides: dict[str, Callable[[], int]] = {
        "bare h2": lambda: run_bare(server.port, ca, jwt, seconds, streams, sample),
        "channel alone": lambda: run_pool(channel_send(channel, jwt, sample), seconds,
                                          streams, source),
        "provider": lambda: run_pool(provider_send(provider), seconds, streams, source),
    }
    results: dict[str, list[tuple[float, float, float]]] = {side: [] for side in sides}
    for round_ in range(2):  # alternate, so drift in the machine's speed hits all alike
        for side, run in sides.items():
            progress(f"{streams} streams: {side} (round {round_ + 1} of 2, {seconds:.0f}s)")
            cpu = server.cpu_seconds()
            start, own = time.perf_counter(), time.process_time()
            count = run()
            elapsed, own = time.perf_counter() - start, time.process_time() - own
            results[side].append((rate(count, elapsed), (server.cpu_seconds() - cpu) / elapsed,
                                  own / max(count, 1)))
    return {side: max(r) for side, r in results.items()}


def main() -> None:
    p = arguments(__doc__.splitlines()[0], stack=False)
    p.add_argument("--concurrency", default="25,100",
                   help="streams in flight on the one connection, a comma-separated list "
                   "measured in turn (default: %(default)s)")
    args = p.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    rows: list[list[str]] = []
    summary = []
    with tempfile.TemporaryDirectory(prefix="shutterlog-bench-push-") as tmp_dir:
        tmp = Path(tmp_dir)
        tls = make_tls(tmp / "tls")
        key = ec.generate_private_key(ec.SECP256R1())
        (tmp / "public.pem").write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        progress("starting the local APNs (its own process, bench mode)")
        server = Server(tmp, tls, tmp / "public.pem")
        provider = ApnsProvider(ProviderToken(key, KEY_ID, TEAM_ID), TOPIC,
                                f"https://127.0.0.1:{server.port}", ca_file=str(tls.ca))
        channel = H2Channel(str(provider.channel.base), ca_file=str(tls.ca))
        source = notifications()
        try:
            for send in (provider_send(provider),
                         channel_send(channel, provider.token.current(), next(source))):
                run_pool(send, 0.5, max(levels), source)  # connect, warm up
            for streams in levels:
                best = measure(server, tls.ca, provider, channel, args.seconds, streams,
                               source)
                bare = best["bare h2"][0]
                for side in ("provider", "channel alone", "bare h2"):
                    pushes, cpu, own = best[side]
                    rows.append([str(streams), side, f"{pushes:,.0f}", f"{own * 1e6:,.0f}",
                                 f"{cpu:.0%}",
                                 f"{pushes / bare:.0%}"])
                pushes = best["provider"][0]
                met = pushes >= GOAL_RATE and pushes >= GOAL_RATIO * bare
                summary.append({"streams": streams, "provider": round(pushes),
                                "bare_h2": round(bare), "ratio": round(pushes / bare, 3),
                                "provider_cpu_us": round(best["provider"][2] * 1e6),
                                "bare_cpu_us": round(best["bare h2"][2] * 1e6),
                                "goal": "met" if met else "not met"})
        finally:
            provider.close()
            channel.close()
            server.stop()
    table(f"APNs pushes/s over one HTTP/2 connection ({machine()}; {args.seconds:.0f}s per "
          "phase, best of 2)", ["streams", "client", "pushes/s", "client CPU µs/push", "server CPU",
                                  "of bare"], rows)
    print(f"\ngoal: >= {GOAL_RATE:,}/s and >= {GOAL_RATIO:.0%} of bare h2")
    for line in summary:
        print(json.dumps(line))


if __name__ == "__main__":
    main()
