"""Fan-out of one post to many followers, next to the same feed inserts done directly.

Starts a private stack, appends ``--followers`` follows of one account straight to the log,
starts the relay and ``--workers`` worker processes and lets the ``followers`` and ``fanout``
consumers take the follows in. Then one post by that account is appended and the clock runs
until every follower's feed holds it: the ``fanout`` consumer splits the followers into
chunk tasks (``feeds.chunk_size`` each), one Gearman job each, which push the id into the
feeds. In the same run, the same number of inserts is done directly: a loop of ZADDs into as
many sorted sets, pipelined in batches of 1,000. Goal: at least 50% of the direct rate.

Run: ``python -m scripts.bench.fanout [--followers N] [--workers W] [--concurrency C]``.
"""

from __future__ import annotations

import sys
import time

import redis

from scripts.bench.common import arguments, bench_stack, machine, progress, rate, table
from scripts.seed import account, follow, minted_ids, ready_medium
from server.config import FeedsConfig
from server.domain.ids import shard_of
from server.shards import ShardRouter
from server.store import graph
from server.store.consumers import ConsumerStore
from server.store.events import PostgresEventStore
from server.store.feeds import feed_key
from server.store.tasks import TaskStore
from tests.helpers import Process, wait_for
from workers import handlers
from workers.consumers import CONSUMERS

PIPELINE = 1000


def direct(r: redis.Redis, n: int, score: int) -> float:
    """ZADD one member into ``n`` sorted sets, pipelined; returns inserts/s."""
    start = time.perf_counter()
    for i in range(0, n, PIPELINE):
        pipe = r.pipeline(transaction=False)
        for j in range(i, min(n, i + PIPELINE)):
            pipe.execute_command("ZADD", f"direct:{j}", score, "1")
        pipe.execute()
    return rate(n, time.perf_counter() - start)


def count_of(router: ShardRouter, followee: int) -> int:
    """The followee's active followers (its followed_by count)."""
    return router.database(shard_of(followee)).run_interaction(
        "followers", graph.followers_count_txn, followee)


def missing(r: redis.Redis, media_id: int, users: list[int]) -> int:
    pipe = r.pipeline(transaction=False)
    for u in users:
        pipe.zscore(feed_key(u), media_id)
    return sum(1 for s in pipe.execute() if s is None)


def main() -> None:
    p = arguments(__doc__.splitlines()[0])
    p.add_argument("--followers", type=int, default=100_000, help="(%(default)s)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (%(default)s)")
    p.add_argument("--concurrency", type=int, default=8, help="jobs per process (%(default)s)")
    args = p.parse_args()
    handlers.load()  # the event types, and the consumers whose checkpoints ``idle`` reads
    chunk = FeedsConfig().chunk_size
    if args.followers <= chunk:
        p.error(f"--followers must be over feeds.chunk_size ({chunk:,}): a smaller fan-out is "
                "pushed by the consumer itself, with no chunk task to time")
    with bench_stack(durable=args.durable) as bench:
        cfg = bench.config
        env = bench.env | {"SHUTTERLOG_WORKERS_METRICS_PORT": "0",
                           "SHUTTERLOG_RELAY_METRICS_PORT": "0",
                           "SHUTTERLOG_RELAY_POLL_INTERVAL": "0.5",
                           "SHUTTERLOG_LOG_LEVEL": "warning",
                           "SHUTTERLOG_FEEDS_HYBRID_THRESHOLD": str(10 * args.followers)}
        router = ShardRouter(cfg.shard_map, pool_size=4)
        store = PostgresEventStore(router)
        r = redis.Redis.from_url(cfg.redis.url)
        celeb = account(store, router, "celebrity")
        progress(f"appending {args.followers:,} follows")
        followers = minted_ids(router, args.followers)
        follow(store, [(f, celeb) for f in followers])
        cli = [sys.executable, "-m", "scripts.cli"]
        procs = [Process([*cli, "workers", "--concurrency", str(args.concurrency)], env,
                         f"workers{i}") for i in range(args.workers)]
        procs.append(Process([*cli, "relay"], env, "relay"))
        shard = shard_of(celeb)
        checkpoints = ConsumerStore(router)

        def idle() -> bool:
            if count_of(router, celeb) < args.followers:
                return False  # the followers consumer is still mirroring follows
            return checkpoints.caught_up(CONSUMERS.wanted("fanout"), [shard])

        try:
            progress("the followers and fanout consumers take the follows in")
            wait_for(idle, 900, "the follows applied", poll=0.5)
            progress("posting")
            started = time.perf_counter()
            media_id = ready_medium(store, router, celeb)
            tasks = TaskStore(router)
            expected = -(-args.followers // cfg.feeds.chunk_size)
            db = router.database(shard)
            wait_for(lambda: tasks.counts(db, "fanout").get("done", 0) >= expected,
                     600, "every chunk task done", poll=0.01)
            seconds = time.perf_counter() - started
            left = missing(r, media_id, followers)
            assert left == 0, f"{left} feeds miss the post"
            progress("direct: the same inserts in a pipelined ZADD loop")
            direct_rate = direct(r, args.followers, 1)
        finally:
            for proc in procs:
                proc.stop()
            router.close()
    piped = rate(args.followers, seconds)
    table(
        f"fan-out of one post ({machine()}; {args.workers} worker processes x "
        f"{args.concurrency} jobs; chunks of {cfg.feeds.chunk_size:,})",
        ["measure", "value", "goal"],
        [[f"seconds until the last of {args.followers:,} feeds has the post",
          f"{seconds:.2f}", ""],
         ["fan-out feed inserts/s", f"{piped:,.0f}", ""],
         ["direct pipelined ZADD/s (same count, one per sorted set)", f"{direct_rate:,.0f}",
          ""],
         ["ratio", f"{piped / direct_rate:.0%}", ">= 50%"]],
    )


if __name__ == "__main__":
    main()
