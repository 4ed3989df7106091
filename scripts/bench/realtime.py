"""Real-time delivery: latency from a like's API response to its WebSocket frame.

Starts a private stack, the API service (one ``twistd`` process), the relay and a worker
process; prepares users, tokens, media and follows (``scripts.bench.api.prepare``); opens
``--clients`` WebSocket clients (asyncio ``websockets``, one process) on a mix of channels
(half ``media:{id}`` over the 20 hottest media, a fifth ``user:{id}``, a fifth the common
tag, a tenth their own ``activity``); then likes and unlikes at ``--rate`` per second through
the API, ``--warmup`` seconds unmeasured and then ``--seconds``, and reports, for every frame
of the measured likes, the time from the API response to the frame (p50, p99), frames/s
delivered, the service's RSS per connection, and the CPU time per like of the API, worker,
relay, PostgreSQL, Redis and gearmand processes.
``--idle N`` then holds N idle connections and reports the service's RSS. ``--pg-statements``
has PostgreSQL record what it runs (pg_stat_statements) and prints the statements and
execution time per measured like, and the top statements.

Run: ``python -m scripts.bench.realtime [--clients 1000] [--rate 500] [--idle 10000]``.
"""

from __future__ import annotations

import asyncio
import json
import queue
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from scripts.bench.api import World, prepare
from scripts.bench.common import (
    Statements,
    arguments,
    bench_stack,
    cpu_seconds,
    machine,
    process,
    progress,
    table,
)
from scripts.stack import free_port

#: Like requests in flight at once (one thread and connection each).
IN_FLIGHT = 8


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def settle(metrics: str, timeout: float = 900) -> None:
    """Wait until every consumer has worked off the prepared world (the relay's lag gauge
    sums to zero): a consumer reads only below the oldest open transaction, so the seed's
    follower storm would otherwise delay the first real-time frames by seconds."""
    progress("waiting for the consumers to work off the prepared world")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = httpx.get(metrics, timeout=30).text
        lag = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith("shutterlog_consumer_lag_events{"))
        if lag == 0 and "shutterlog_consumer_lag_events{" in text:
            return
        time.sleep(1)
    raise SystemExit("the consumers did not catch up")


def channel_for(i: int, world: World) -> tuple[str, int]:
    """Client i's channel and the index of its token."""
    token = i % len(world.tokens)
    kind = i % 10
    if kind < 5:
        return f"media:{world.media[i % 20]}", token
    if kind < 7:
        return f"user:{world.ids[i % len(world.ids)]}", token
    if kind < 9:
        return "tag:bench", token
    return "activity", token


async def open_client(base: str, token: str, channel: str, compression: str | None
                      ) -> ClientConnection:
    ws = await connect(f"{base}/v1/stream?access_token={token}", open_timeout=120,
                       compression=compression, ping_interval=None, max_queue=None)
    ready = json.loads(await ws.recv())
    assert ready["type"] == "ready", ready
    await ws.send(json.dumps({"type": "subscribe", "channel": channel}))
    sub = json.loads(await ws.recv())
    assert sub["type"] == "subscribed", sub
    return ws


async def open_many(base: str, world: World, n: int, compression: str | None,
                    channel: str | None = None) -> list[ClientConnection]:
    out: list[ClientConnection] = []
    sem = asyncio.Semaphore(50)

    async def one(i: int) -> None:
        ch, tok = channel_for(i, world)
        async with sem:
            out.append(await open_client(base, world.tokens[tok], channel or ch, compression))

    await asyncio.gather(*(one(i) for i in range(n)))
    return out


def drive_likes(base: str, world: World, rate: float, seconds: float,
                answered: dict[tuple[str, str, str], float], liked: set[tuple[str, int]],
                seed: int) -> tuple[int, int, float]:
    """Like/unlike at ``rate`` for ``seconds`` from ``IN_FLIGHT`` threads, each with its own
    keep-alive connection, recording when each answer arrived in ``answered`` (``liked``: the
    (medium, user) pairs liked so far, kept up to date); returns the
    requests sent, how many failed, and the seconds until the last answer. (Threads, not
    httpx's asyncio client: its pool slows down as requests in flight grow, measured here at
    600 requests/s with 4 in flight and 200/s with 64, which made the client the bottleneck.)
    """
    rng = random.Random(seed)
    jobs: queue.Queue[tuple[str, str, str, int] | None] = queue.Queue()
    failed: list[int] = []

    def work() -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            while (job := jobs.get()) is not None:
                method, event, media, user = job
                r = http.request(method, f"/v1/media/{media}/likes",
                                 headers={"Authorization": f"Bearer {world.tokens[user]}"})
                if r.status_code == 200:
                    answered[(event, media, world.ids[user])] = time.perf_counter()
                else:
                    failed.append(r.status_code)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(IN_FLIGHT)]
    for t in threads:
        t.start()
    start = time.perf_counter()
    sent = 0
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(int(elapsed * rate) - sent):
            media = world.media[rng.randrange(20)] if rng.random() < 0.8 else \
                world.media[rng.randrange(len(world.media))]
            user = rng.randrange(len(world.tokens))
            key = (media, user)
            method, event = ("DELETE", "MediaUnliked") if key in liked else ("POST", "MediaLiked")
            (liked.discard if method == "DELETE" else liked.add)(key)
            jobs.put((method, event, media, user))
            sent += 1
        time.sleep(0.002)
    for _ in threads:
        jobs.put(None)
    for t in threads:
        t.join()
    return sent, len(failed), time.perf_counter() - start


async def measure(base: str, world: World, clients: list[ClientConnection], rate: float,
                  seconds: float, warmup: float, pids: dict[str, int],
                  statements: Statements | None) -> dict[str, Any]:
    """Like/unlike at ``rate`` for ``warmup`` seconds (not measured: every process's first
    jobs prepare statements and open connections), then for ``seconds``; latencies of the
    frames of the measured likes, the CPU time each process of ``pids`` spent per measured
    like and, with ``statements``, what PostgreSQL ran meanwhile."""
    answered: dict[tuple[str, str, str], float] = {}  # (event, media, user) -> response time
    latencies: list[float] = []
    frames = 0
    liked: set[tuple[str, int]] = set()
    http = base.replace("ws://", "http://")

    async def read(ws: ClientConnection) -> None:
        nonlocal frames
        async for raw in ws:
            f = json.loads(raw)
            if f.get("type") != "event":
                continue
            now = time.perf_counter()
            frames += 1
            d = f["data"]
            t = answered.get((f["event"], d.get("media_id", ""), d.get("user_id", "")))
            if t is not None:
                latencies.append(now - t)

    readers = [asyncio.create_task(read(ws)) for ws in clients]
    if warmup > 0:
        await asyncio.to_thread(drive_likes, http, world, rate, warmup, {}, liked, 5)
        await asyncio.sleep(1)  # the warm-up's last frames (figures only; not a test)
        frames = 0
    if statements is not None:
        statements.reset()
    cpu = {name: cpu_seconds(p) for name, p in pids.items()}
    sent, failed, duration = await asyncio.to_thread(
        drive_likes, http, world, rate, seconds, answered, liked, 7)
    await asyncio.sleep(2)  # let the last frames arrive (figures only; not a test)
    per_like = " / ".join(f"{(cpu_seconds(p) - cpu[name]) * 1000 / max(1, sent):.2f}"
                          for name, p in pids.items())
    report = statements.report(sent, "like", 15) if statements is not None else []
    for t in readers:
        t.cancel()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 \
            if latencies else float("nan")

    return {"likes": sent, "failed": failed, "rate": sent / duration, "frames": frames,
            "frames_s": frames / (duration + 2), "p50": pct(0.5), "p99": pct(0.99),
            "matched": len(latencies), "cpu_ms": per_like, "statements": report}


async def run(args: Any, world: World, base: str, pids: dict[str, int],
              statements: Statements | None) -> tuple[list[list[str]], list[str]]:
    rows = []
    pid = pids["API"]
    before = rss_kib(pid)
    progress(f"opening {args.clients} clients")
    clients = await open_many(base, world, args.clients, "deflate" if args.deflate else None)
    after = rss_kib(pid)
    progress(f"likes at {args.rate}/s for {args.seconds:.0f}s")
    m = await measure(base, world, clients, args.rate, args.seconds, args.warmup, pids,
                      statements)
    progress(f"CPU ms per like ({' / '.join(pids)}): {m['cpu_ms']}")
    rows.append([f"{args.clients} clients, likes", f"{m['rate']:.0f}", f"{m['p50']:.1f}",
                 f"{m['p99']:.1f}", f"{m['frames_s']:,.0f}",
                  f"{(after - before) / max(1, args.clients):.1f}", f"{after / 1024:.0f}",
                 m["cpu_ms"], str(m["failed"])])
    await asyncio.gather(*(ws.close() for ws in clients))
    if args.idle:
        progress(f"opening {args.idle} idle clients")
        before = rss_kib(pid)
        idle = await open_many(base, world, args.idle, None, channel="feed")
        after = rss_kib(pid)
        rows.append([f"{args.idle} idle clients", "-", "-", "-", "-",
                     f"{(after - before) / args.idle:.1f}", f"{after / 1024:.0f}", "-", "0"])
        await asyncio.gather(*(ws.close() for ws in idle))
    return rows, m["statements"]


def main() -> None:
    p = arguments(__doc__.splitlines()[0])
    p.set_defaults(seconds=10.0)
    p.add_argument("--clients", type=int, default=1000, help="WebSocket clients (%(default)s)")
    p.add_argument("--rate", type=float, default=500, help="likes/s through the API")
    p.add_argument("--idle", type=int, default=0, help="idle connections to hold afterwards")
    p.add_argument("--warmup", type=float, default=3.0,
                   help="seconds of likes at the same rate before measuring (%(default)s)")
    p.add_argument("--users", type=int, default=300, help="users (%(default)s)")
    p.add_argument("--deflate", action="store_true", help="clients offer permessage-deflate")
    p.add_argument("--pg-statements", action="store_true",
                   help="PostgreSQL records its statements (pg_stat_statements): print the "
                   "statements and execution time per measured like, and the top 15")
    args = p.parse_args()
    with bench_stack(durable=args.durable, statements=args.pg_statements) as bench:
        progress(f"preparing {args.users} users, media and follows")
        world = prepare(bench.config, args.users)
        port, relay_port, workers_port = free_port(), free_port(), free_port()
        env = bench.env | {"SHUTTERLOG_HTTP_PORT": str(port),
                           "SHUTTERLOG_API_RATE_PER_IP": "1000000000",
                           "SHUTTERLOG_API_RATE_PER_TOKEN": "1000000000",
                           "SHUTTERLOG_RELAY_METRICS_PORT": str(relay_port),
                           "SHUTTERLOG_WORKERS_METRICS_PORT": str(workers_port),
                           "SHUTTERLOG_LOG_LEVEL": "warning"}
        bin_dir = Path(sys.executable).parent
        with process([str(bin_dir / "twistd"), "--pidfile", "", "-n", "shutterlog"], env,
                     f"http://127.0.0.1:{port}/healthz") as api, \
                process([str(bin_dir / "shutterlog"), "workers"], env,
                        f"http://127.0.0.1:{workers_port}/metrics") as workers, \
                process([str(bin_dir / "shutterlog"), "relay"], env,
                        f"http://127.0.0.1:{relay_port}/metrics") as relay:
            settle(f"http://127.0.0.1:{relay_port}/metrics")
            pids = {"API": api.pid, "workers": workers.pid, "relay": relay.pid} | {
                name: pid for name in ("postgres", "redis", "gearmand")
                if (pid := bench.stack.pid(name)) is not None}
            statements = (Statements(bench.config.shard_map.dsns()[0])
                          if args.pg_statements else None)
            try:
                rows, report = asyncio.run(
                    run(args, world, f"ws://127.0.0.1:{port}", pids, statements))
            finally:
                if statements is not None:
                    statements.close()
    table(f"Real-time delivery ({machine()}; one API process, one worker process; "
          f"{args.seconds:.0f}s of likes; latency from the like's API response to the frame)",
          ["phase", "likes/s", "p50 ms", "p99 ms", "frames/s", "RSS KiB/conn", "RSS MiB",
           "CPU ms/like: API / workers / relay / postgres / redis / gearmand",
           "failed"], rows)
    if report:
        print("\n" + "\n".join(report))


if __name__ == "__main__":
    main()
