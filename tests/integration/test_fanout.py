"""Feeds end to end through the real relay, gearmand and worker processes: a post reaches
followers within a deadline, likes, comments and activity follow, a deletion vanishes; a
post to 20,000 followers goes out through chunk tasks; a small account's post is delivered
while a huge fan-out is still running; a chunk task racing an unfollow or the deletion of
its medium leaves the medium in no feed it should not be in."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from scripts.seed import account, follow, minted_ids, ready_medium
from server.config import load
from server.db import Txn
from server.domain.graph import UserUnfollowed, follow_stream
from server.domain.ids import shard_of
from server.domain.log import NewEvent
from server.domain.media import MediaDeleted, media_stream
from server.store import graph
from server.store.consumers import ConsumerStore
from server.store.feeds import feed_key
from server.store.tasks import TaskStore
from tests.drive import Driver
from tests.helpers import Process, wait_for
from tests.integration.apiclient import Api
from tests.integration.conftest import Env
from tests.integration.mediakit import picture, post_direct, upload
from tests.integration.recording import relay, workers
from workers import handlers
from workers.consumers import CONSUMERS
from workers.tasks import run_task

SETTINGS = {"SHUTTERLOG_FEEDS_CHUNK_SIZE": "500"}
SERVICE_ENV = SETTINGS


@pytest.fixture(scope="module")
def pool(module_env: Env) -> Iterator[list[Process]]:
    procs = [relay(module_env.vars, **SETTINGS),
             workers(module_env.vars, concurrency=6, **SETTINGS)]
    try:
        yield procs
    finally:
        for p in procs:
            assert p.stop() == 0, p.output.text()


def feed_ids(api: Api, token: str) -> list[str]:
    r = api.get("/v1/users/self/feed", token, count=50)
    assert r.status_code == 200, r.text
    return [m["id"] for m in r.json()["data"]]


def test_a_post_reaches_followers_and_a_deletion_leaves_everywhere(
        api: Api, pool: list[Process]) -> None:
    """A posts; B (follower) sees it within a deadline, C does not; B likes and comments:
    counts, user_has_liked and A's activity show both; A deletes: gone from B's feed and
    from the tag."""
    (a, ta), (b, tb), (_, tc) = api.user(), api.user(), api.user()
    api.relate(tb, a["id"], "follow")
    tag = f"e2e{a['id'][-6:]}"
    r = upload(api, ta, picture(), caption=f"look #{tag}")
    assert r.status_code == 200, r.text
    m = r.json()["data"]["id"]
    wait_for(lambda: m in feed_ids(api, tb), 30, "the post in B's feed")
    assert m not in feed_ids(api, tc)
    assert api.post(f"/v1/media/{m}/likes", tb).status_code == 200
    assert api.post(f"/v1/media/{m}/comments", tb, text="lovely").status_code == 200

    def seen() -> Any:
        got = api.get(f"/v1/media/{m}", tb).json()["data"]
        return (got["likes"]["count"], got["comments"]["count"], got["user_has_liked"]) == (
            1, 1, True)

    wait_for(seen, 30, "the counts")
    wait_for(lambda: [i["type"] for i in api.get("/v1/users/self/activity", ta).json()[
        "data"]] == ["comment", "like", "follow"], 30, "A's activity")
    wait_for(lambda: api.get(f"/v1/tags/{tag}", tb).json()["data"]["media_count"] == 1, 30,
             "the tag")
    assert api.http.delete(f"/v1/media/{m}", headers={"Authorization": f"Bearer {ta}"}
                           ).status_code == 200
    assert m not in feed_ids(api, tb)  # at once: readers drop deleted media
    wait_for(lambda: api.env.redis.zscore(feed_key(int(b["id"])), m) is None, 30,
             "the id out of B's feed")
    wait_for(lambda: api.get(f"/v1/tags/{tag}/media/recent", tb).json()["data"] == [], 30,
             "the tag emptied")


def follow_many(env: Env, followee: int, n: int) -> list[int]:
    """``n`` followers (ids minted by the shards, no accounts behind them)."""
    ids = minted_ids(env.router, n)
    follow(env.store, [(f, followee) for f in ids])
    return ids


def delivered(env: Env, media_id: int, users: list[int]) -> int:
    pipe = env.redis.pipeline(transaction=False)
    for u in users:
        pipe.zscore(feed_key(u), media_id)
    return sum(1 for s in pipe.execute() if s is not None)


def test_fanout_to_20000_followers_and_a_small_account_is_not_delayed(
        api: Api, pool: list[Process]) -> None:
    """A post by an account with 20,000 followers reaches every feed through chunk tasks; a
    post by an account with one follower, in the same shard, right after it, is delivered
    before the big fan-out's last chunk task is done."""
    (big, _), (small, _) = api.user(), api.user()
    while shard_of(int(small["id"])) != shard_of(int(big["id"])):
        small = api.user()[0]
    env = api.env
    followers = follow_many(env, int(big["id"]), 20_000)
    (fan, _) = api.user()
    api.relate(api.token(fan["username"]), small["id"], "follow")
    _, viewer = api.user()

    def followed_by(user: dict[str, Any]) -> int:
        return int(api.get(f"/v1/users/{user['id']}", viewer).json()["data"]["counts"][
            "followed_by"])

    wait_for(lambda: followed_by(big) == 20_000, 120, "20,000 followers")
    wait_for(lambda: followed_by(small) == 1, 60, "the small account's one follower")
    shard = shard_of(int(big["id"]))
    checkpoints = ConsumerStore(env.router)
    handlers.load()  # the consumers' registry, to know what "fanout" reads
    wait_for(lambda: checkpoints.caught_up(CONSUMERS.wanted("fanout"), [shard]), 120,
             "the fanout consumer through the 20,000 follows")
    started = time.time()
    big_post = post_direct(env, int(big["id"]))
    small_post = post_direct(env, int(small["id"]))
    wait_for(lambda: delivered(env, small_post, [int(fan["id"])]) == 1, 30, "the small post",
             poll=0.005)
    small_at = time.time()
    wait_for(lambda: delivered(env, big_post, followers) == 20_000, 120, "the big fan-out")
    db = env.router.database(shard)
    assert TaskStore(env.router).counts(db, "fanout") == {"done": 40}  # chunks of 500
    row = db.run_interaction("done", Txn.fetchone, "SELECT extract(epoch FROM max(done_at)) "
                             "FROM tasks WHERE kind = 'fanout'")
    assert row is not None
    assert small_at < float(row[0]), (small_at - started, float(row[0]) - started)


# --- chunk tasks against unfollows and deletions (driven in-process, a world of their own) ---


def chunked_post(env: Env) -> tuple[Driver, int, list[int], int, list[int]]:
    """An account with 3 followers posts with chunks of 2: (driver, owner, followers,
    medium, its push tasks, submitted and not run yet)."""
    driver = Driver(env)
    driver.ctx.config = load(env=env.vars | {"SHUTTERLOG_FEEDS_CHUNK_SIZE": "2"},
                             search_default=False)
    owner = account(env.store, env.router, "chunky")
    fans = minted_ids(env.router, 3)
    follow(env.store, [(f, owner) for f in fans])
    driver.drive("followers", "fanout")
    media = ready_medium(env.store, env.router, owner)
    driver.drive("fanout")
    return driver, owner, fans, media, fanout_tasks(env, owner)


def fanout_tasks(env: Env, owner: int, done: list[int] | None = None) -> list[int]:
    """The owner's shard's fanout tasks, oldest first, but those in ``done``."""
    rows = env.router.database(shard_of(owner)).run_interaction("tasks", Txn.fetchall,
        "SELECT id FROM tasks WHERE kind = 'fanout' ORDER BY id")
    return [int(r[0]) for r in rows if int(r[0]) not in (done or [])]


def test_a_chunk_racing_an_unfollow_takes_the_post_back(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A push chunk reads its followers; before it writes, one of them unfollows and the
    fanout consumer applies it (removing the owner's media from that feed): the chunk's
    write comes after that removal, so the chunk itself must take the post back out."""
    driver, owner, fans, media, tasks = chunked_post(env)
    assert len(tasks) == 2
    gone = fans[0]
    real = graph.followers_range

    def racing(txn: Txn, followee: int, first: int, end: int | None,
               ready: int | None = None) -> list[int]:
        found = real(txn, followee, first, end, ready)
        if gone in found:  # meanwhile: the unfollow, applied by the fanout consumer
            env.store.append(shard_of(gone), follow_stream(gone, owner), [NewEvent(
                UserUnfollowed(follower=gone, followee=owner), actor=gone)])
            driver.drive("followers", "fanout")
            assert env.redis.zscore(feed_key(gone), media) is None
        return found

    monkeypatch.setattr(graph, "followers_range", racing)
    assert [run_task(driver.ctx, t) for t in tasks] == ["done", "done"]
    assert delivered(env, media, fans[1:]) == 2
    assert env.redis.zscore(feed_key(gone), media) is None, "the unfollower has the post"


def test_a_push_chunk_run_after_the_deletion_does_not_bring_the_medium_back(
        env: Env) -> None:
    """The medium is deleted and its removal chunks run before its push chunks (which are
    late: retried, or re-submitted after a lost job): the pushes write nothing."""
    driver, owner, fans, media, pushes = chunked_post(env)
    env.store.append(shard_of(owner), media_stream(media), [NewEvent(
        MediaDeleted(media_id=media, owner=owner), actor=owner)])
    driver.drive("fanout")
    removals = fanout_tasks(env, owner, done=pushes)
    assert len(removals) == 2
    assert [run_task(driver.ctx, t) for t in removals + pushes] == ["done"] * 4
    assert delivered(env, media, [owner, *fans]) == 0
