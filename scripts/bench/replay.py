"""Replaying projections from the log: events/s per projection and for ``all``, next to the
rate of reading the same log with a plain ``COPY (SELECT * FROM events) TO STDOUT``.

A world of about ``--events`` events is appended straight to the log through the event store
(inline projections included), spread over 16 shards in 2 databases: users, follows with
their followers-side mirrors, ready media (captions with hashtags, a third with a place),
likes and comments. Then, in the same run: the raw read (COPY of every database's events
table into a null sink), each projection rebuilt alone (``Replayer``, what ``shutterlog
replay X`` runs: build from the origin, swap), and all of them in one run (one read of the
log for every projection). Goal: at least 100,000 events/s for counters and tags, and
``all`` at least 25% of the raw read rate (over the log's events). Both rates are printed:
events applied (those of the projection's types) and log events (the whole log) per
second. The log is appended in chunks, each database's from a thread of its own, with
progress.

Run: ``python -m scripts.bench.replay [--events N]`` (default 1,000,000).
"""

from __future__ import annotations

import io
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from scripts import seed
from scripts.bench.common import arguments, bench_stack, machine, progress, rate, table
from server import catalog
from server.db import Database, Txn
from server.domain import tags as tagging
from server.domain.comments import CommentAdded, comment_stream
from server.domain.graph import UserFollowed, follow_stream, followers_stream, mirror
from server.domain.ids import shard_of
from server.domain.likes import MediaLiked, like_stream
from server.domain.log import AppendRequest, NewEvent
from server.domain.media import MediaPosted, MediaRendered, media_stream
from server.domain.replay import ALL, SPECS, Progress
from server.domain.shards import schema_name
from server.interfaces import IShardRouter
from server.shards import ShardRouter
from server.store.events import PostgresEventStore
from workers import handlers
from workers.consumers import CONSUMERS
from workers.context import WorkerContext
from workers.replay import Replayer, Request

CHUNK = 2000


class Quiet:
    """A reporter that keeps the last progress."""

    def __init__(self) -> None:
        self.last: Progress | None = None

    def say(self, message: str, **fields: object) -> None:
        pass

    def progress(self, p: Progress) -> None:
        self.last = p


def world(store: PostgresEventStore, router: ShardRouter, events: int) -> int:
    """Append about ``events`` events; returns how many the log holds."""
    rng = random.Random(1)
    n_users = max(200, events // 500)
    users = [seed.account(store, router, f"b{i}") for i in range(n_users)]
    n_follows = events // 10
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < n_follows:
        a, b = rng.sample(users, 2)
        pairs.add((a, b))
    progress(f"{n_users} users; appending {n_follows:,} follows and their mirrors")
    plist = sorted(pairs)

    def follows(chunk: list[tuple[int, int]]) -> None:
        results = store.append_many([AppendRequest(
            shard_of(f), follow_stream(f, t),
            (NewEvent(UserFollowed(follower=f, followee=t), actor=f),), expected_version=0)
            for f, t in chunk])
        store.append_many([AppendRequest(
            shard_of(t), followers_stream(t, f),
            (NewEvent(mirror(UserFollowed(follower=f, followee=t), r.event_ids[0]), actor=f),))
            for (f, t), r in zip(chunk, results, strict=True)])

    _chunked(router, plist, lambda p: shard_of(p[0]), follows, "follows")
    n_media = events // 10
    progress(f"appending {n_media:,} ready media")
    media: list[tuple[int, int]] = []
    posts = []
    for _ in range(n_media):
        owner = rng.choice(users)
        media_id = _new_id(router, owner)
        media.append((media_id, owner))
        posts.append(_post(media_id, owner, rng))
    _parallel(store, posts, "media")
    n_likes = events * 45 // 100
    progress(f"appending {n_likes:,} likes")
    likes: set[tuple[int, int]] = set()
    while len(likes) < n_likes:
        likes.add((rng.randrange(len(media)), rng.choice(users)))
    llist = sorted(likes)
    _parallel(store, [AppendRequest(
        shard_of(media[m][0]), like_stream(media[m][0], u),
        (NewEvent(MediaLiked(media_id=media[m][0], media_owner=media[m][1], user_id=u),
                  actor=u),), expected_version=0) for m, u in llist], "likes")
    n_comments = events // 10
    progress(f"appending {n_comments:,} comments")
    reqs = []
    for _ in range(n_comments):
        media_id, owner = rng.choice(media)
        author = owner if rng.random() < 0.2 else rng.choice(users)
        text = f"nice #c{rng.randrange(50)}"
        comment_id = _new_id(router, owner)
        reqs.append(AppendRequest(shard_of(media_id), comment_stream(comment_id), (NewEvent(
            CommentAdded(comment_id=comment_id, media_id=media_id, media_owner=owner,
                         author=author, text=text,
                         tags=tagging.hashtags(text) if author == owner else (),
                         mentions=()), actor=author),), expected_version=0))
    _parallel(store, reqs, "comments")
    return sum(_count(db) for db in router.databases())


def _count(db: Database) -> int:
    row = db.run_interaction("n", Txn.fetchone, "SELECT count(*) FROM events")
    assert row is not None
    return int(row[0])


_ID_POOL: dict[int, list[int]] = {}


def _new_id(router: IShardRouter, owner: int) -> int:
    """An id from the owner's shard (minted in blocks)."""
    shard = shard_of(owner)
    pool = _ID_POOL.setdefault(shard, [])
    if not pool:
        row = router.database(shard).run_interaction(
            "ids", Txn.fetchone, f"SELECT {schema_name(shard)}.next_ids(1000)")
        assert row is not None
        pool.extend(row[0])
    return pool.pop(0)


def _post(media_id: int, owner: int, rng: random.Random) -> AppendRequest:
    caption = f"#t{rng.randrange(200)} #all"
    place = (48.8 + rng.random(), 2.3 + rng.random()) if rng.random() < 0.33 else None
    fake = f"{media_id:064x}"[-64:] + ".jpg"
    posted = MediaPosted(
        media_id=media_id, owner=owner, type="image", blob=fake, width=640, height=640,
        duration_ms=0, caption=caption, tags=tagging.hashtags(caption), mentions=(),
        filter="Normal", lat=place[0] if place else None, lng=place[1] if place else None,
        location_name="", location_id=None, share_to=(), visibility="public")
    rendered = MediaRendered(media_id=media_id, owner=owner, images={
        "thumbnail": fake, "low_resolution": fake, "standard_resolution": fake}, videos={})
    return AppendRequest(shard_of(owner), media_stream(media_id),
                         (NewEvent(posted, actor=owner), NewEvent(rendered, actor=owner)))


def _parallel(store: PostgresEventStore, reqs: list[AppendRequest], what: str) -> None:
    """Append ``reqs`` in chunks through the event store (inline projections included)."""
    _chunked(store.router, reqs, lambda r: r.shard, store.append_many, what)


T = TypeVar("T")


def _chunked(router: IShardRouter, items: list[T], shard: Callable[[T], int],
             append: Callable[[list[T]], object], what: str) -> None:
    """``append`` the items in chunks of ``CHUNK``, one thread per database (that of the
    item's ``shard``: two threads updating the same rows, such as a user's counts, would
    wait on each other's locks), with progress about every tenth of the way."""
    by_db: dict[str, list[T]] = {}
    for item in items:
        by_db.setdefault(router.database(shard(item)).dsn, []).append(item)
    done = [0, 0]
    lock = threading.Lock()
    started = time.perf_counter()

    def writer(mine: list[T]) -> None:
        for i in range(0, len(mine), CHUNK):
            chunk = mine[i:i + CHUNK]
            append(chunk)
            with lock:
                done[0] += len(chunk)
                if done[0] * 10 // len(items) > done[1]:
                    done[1] = done[0] * 10 // len(items)
                    progress(f"  {what}: {done[0]:,} of {len(items):,} "
                             f"({done[0] / (time.perf_counter() - started):,.0f}/s)")

    threads = [threading.Thread(target=writer, args=(mine,)) for mine in by_db.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


class _Null(io.RawIOBase):
    def __init__(self) -> None:
        self.bytes = 0

    def write(self, b: Any) -> int:
        self.bytes += len(b)
        return len(b)


def raw_read(router: ShardRouter) -> tuple[int, float]:
    """COPY every database's events table to a null sink: (rows, seconds)."""
    start = time.perf_counter()
    rows = 0
    for db in router.databases():
        with db.lease() as conn:
            with conn.cursor() as cur:
                cur.copy_expert("COPY (SELECT * FROM events) TO STDOUT", _Null())
                cur.execute("SELECT count(*) FROM events")
                rows += int(cur.fetchone()[0])
            conn.rollback()
    return rows, time.perf_counter() - start


def replay(ctx: WorkerContext, names: list[str]) -> tuple[int, float, dict[str, int]]:
    """Rebuild ``names`` in one run: (events read, seconds, events applied per
    projection)."""
    quiet = Quiet()
    replayer = Replayer(ctx, CONSUMERS, quiet)
    try:
        start = time.perf_counter()
        items = replayer.execute(Request([SPECS[n] for n in names], fresh=True))
        seconds = time.perf_counter() - start
    finally:
        replayer.close()
    read = quiet.last.done if quiet.last else 0
    return read, seconds, {i.spec.name: i.events for i in items}


def main() -> None:
    p = arguments(__doc__ or "")
    p.add_argument("--events", type=int, default=1_000_000, help="log size (about)")
    args = p.parse_args()
    with bench_stack(args.durable) as bench:
        catalog.load()
        handlers.load()
        cfg = bench.config
        router = ShardRouter(cfg.shard_map, pool_size=8)
        store = PostgresEventStore(router)
        t0 = time.perf_counter()
        total = world(store, router, args.events)
        progress(f"log: {total:,} events in {time.perf_counter() - t0:.1f} s")
        client = redis.Redis.from_url(cfg.redis.url)
        ctx = WorkerContext(cfg, router, store, client)
        rows, raw_s = raw_read(router)
        rows_out: list[list[str]] = [["raw COPY ... TO STDOUT", f"{rows:,}", f"{raw_s:.2f}",
                                      f"{rate(rows, raw_s):,.0f}", f"{rate(rows, raw_s):,.0f}",
                                      "100%"]]
        projections = [n for n in ALL if n != "realtime"]
        runs = [(n, [n]) for n in projections] + [("all (one read of the log)", projections)]
        for name, names in runs:
            progress(f"replaying {name}")
            _read, seconds, per = replay(ctx, names)
            applied = sum(per.values())
            log_rate = rate(total, seconds)
            rows_out.append([name, f"{applied:,}", f"{seconds:.2f}",
                             f"{rate(applied, seconds):,.0f}", f"{log_rate:,.0f}",
                             f"{log_rate / rate(rows, raw_s):.0%}"])
        table(f"Replay of a log of {total:,} events ({machine()})",
              ["what", "events applied", "seconds", "applied/s", "log events/s",
               "log events/s vs raw"], rows_out)
        ctx.close()


if __name__ == "__main__":
    main()
