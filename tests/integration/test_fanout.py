"""Feeds end to end through the real relay, gearmand and worker processes: a post reaches
followers within a deadline, likes, comments and activity follow, a deletion vanishes; a
post to 20,000 followers goes out through chunk tasks; a small account's post is delivered
while a huge fan-out is still running."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from scripts.seed import follow, minted_ids
from server.db import Txn
from server.domain.ids import shard_of
from server.store.consumers import ConsumerStore
from server.store.feeds import feed_key
from server.store.tasks import TaskStore
from tests.helpers import Process, wait_for
from tests.integration.apiclient import Api
from tests.integration.conftest import Env
from tests.integration.mediakit import picture, post_direct, upload
from tests.integration.recording import relay, workers
from workers import handlers
from workers.consumers import CONSUMERS

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
