"""Home feeds and activity, with the consumers driven to the head in-process: the race of a
follow and a post, hybrid fan-out's identity, paging through ids of one millisecond, the
feed size cap of a merged feed, rebuilding a lost feed, the counter herd, activity items,
tags, and re-applying every consumer's batches."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import re
import threading
from typing import Any

import pytest

from scripts import seed
from server.db import Txn
from server.domain.ids import millis_of, shard_of
from server.domain.shards import schema_name
from server.store.feeds import FeedStore
from tests.drive import Driver, drive
from tests.integration.apiclient import Api
from tests.integration.conftest import Env
from tests.integration.mediakit import media_of, picture, post, post_direct, settle, upload
from workers.context import WorkerContext

#: The API's home feed size: more than any feed here but the cap test's merged one.
SIZE = 24
SERVICE_ENV = {"SHUTTERLOG_FEEDS_SIZE": str(SIZE)}


def feed(api: Api, token: str, count: int = 3) -> list[str]:
    """Every page of the caller's home feed."""
    out: list[str] = []
    for page in api.pages("/v1/users/self/feed", token, count=count):
        out += [m["id"] for m in page]
    return out


def test_follow_racing_a_post_always_delivers_the_post(api: Api) -> None:
    """A follow and a post by the followee, started together many times: once the consumers
    ran, the follower's feed always holds the post (both sides are in one shard's log)."""
    rounds = []
    for _ in range(20):
        (a, _ta), (_b, tb) = api.user(), api.user()
        gate = threading.Barrier(2)

        def follow(tb: str = tb, a: dict[str, Any] = a,
                   gate: threading.Barrier = gate) -> None:
            gate.wait()
            api.relate(tb, a["id"], "follow")

        def publish(a: dict[str, Any] = a, gate: threading.Barrier = gate) -> int:
            gate.wait()
            return post_direct(api.env, int(a["id"]))

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            f1, f2 = pool.submit(follow), pool.submit(publish)
            f1.result()
            rounds.append((tb, str(f2.result())))
    settle(api.env)
    for tb, media_id in rounds:
        assert media_id in feed(api, tb), media_id


def world(api: Api, fresh: FeedStore) -> list[tuple[dict[str, Any], str]]:
    """Users who follow, post, unfollow, block and delete; every feed marked built first."""
    users = [api.user() for _ in range(6)]
    for u, _ in users:
        fresh.merge(int(u["id"]), [], complete=True)
    edges = [(0, 1), (0, 2), (1, 2), (2, 0), (3, 0), (3, 1), (3, 2), (4, 0), (5, 0), (1, 0)]
    for i, j in edges:
        api.relate(users[i][1], users[j][0]["id"], "follow")
    posts = {j: [post_direct(api.env, int(users[j][0]["id"]), f"#w{k}") for k in range(3)]
             for j in (0, 1, 2, 5)}
    api.relate(users[3][1], users[1][0]["id"], "unfollow")
    api.relate(users[4][1], users[0][0]["id"], "block")
    api.http.delete(f"/v1/media/{posts[0][1]}",
                    headers={"Authorization": f"Bearer {users[0][1]}"})
    api.relate(users[5][1], users[2][0]["id"], "follow")  # after 2 posted: merged in
    return users


def test_hybrid_fanout_gives_the_same_feeds_at_threshold_zero_and_infinity(
        api: Api, module_env: Env) -> None:
    """Every feed is the same whether every account is pushed (threshold: infinity) or none
    is (threshold 0: all merged at read time)."""
    store = FeedStore(module_env.redis, 800, 800)
    users = world(api, store)
    settle(module_env)
    pushed = {u["id"]: feed(api, t) for u, t in users}
    assert store.pulled([int(u["id"]) for u, _ in users]) == set()
    for pattern in ("feed:*", "umedia:*", "fanout:pulled"):
        for key in module_env.redis.scan_iter(pattern):
            module_env.redis.delete(key)
    for u, _ in users:
        store.merge(int(u["id"]), [], complete=True)
    zero = dataclasses.replace(module_env.config, feeds=dataclasses.replace(
        module_env.config.feeds, hybrid_threshold=0))
    driver = Driver(module_env)
    driver.ctx = WorkerContext(zero, module_env.router, module_env.store, module_env.redis)
    driver.drive("fanout")
    assert store.pulled([int(u["id"]) for u, _ in users])  # some are merged at read time
    pulled = {u["id"]: feed(api, t) for u, t in users}
    assert pulled == pushed
    assert pushed[users[5][0]["id"]]  # 5 follows 0 and 2: their live posts
    assert pushed[users[4][0]["id"]] == []  # 4 blocked 0, its only followee


def same_millisecond_media(api: Api, owner: int, n: int, monkeypatch: pytest.MonkeyPatch,
                           caption: str = "") -> list[int]:
    """``n`` ready media of ``owner`` whose ids were minted by one ``next_ids`` call: one
    millisecond, or two if the shard's sequence wrapped (so at least ``n // 2`` in one)."""
    shard = shard_of(owner)
    row = api.env.router.database(shard).run_interaction(
        "ids", Txn.fetchone, f"SELECT {schema_name(shard)}.next_ids(%s)", (n,))
    assert row is not None
    minted = iter(int(i) for i in row[0])
    monkeypatch.setattr(seed, "new_id", lambda _txn, _shard: next(minted))
    return [post_direct(api.env, owner, caption) for _ in range(n)]


def test_feed_pages_show_every_medium_of_one_millisecond_once(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """20 media whose ids share a millisecond (a burst, or posts of several shards in one
    millisecond), pushed and then pulled (merged at read time): paging 3 at a time by
    max_id shows each once, newest first; min_id and max_id bound a page exactly."""
    (owner, _), (follower, tf) = api.user(), api.user()
    api.relate(tf, owner["id"], "follow")
    settle(api.env)
    ids = sorted(same_millisecond_media(api, int(owner["id"]), 20, monkeypatch), reverse=True)
    assert len({millis_of(i) for i in ids}) <= 2
    settle(api.env)
    store = FeedStore(api.env.redis, SIZE, SIZE)
    for pulled in (False, True):
        if pulled:
            store.remove(ids, [int(follower["id"])])
            store.mark_pulled(int(owner["id"]))
        assert feed(api, tf) == [str(i) for i in ids], pulled
        r = api.get("/v1/users/self/feed", tf, count=20, max_id=ids[1], min_id=ids[-2])
        assert media_of(r) == [str(i) for i in ids[2:-2]], pulled
        r = api.get("/v1/users/self/feed", tf, count=3, min_id=ids[-2])
        assert media_of(r) == [str(i) for i in ids[:3]], pulled


def test_tag_pages_show_every_medium_of_one_millisecond_once(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tag page bounded by max_tag_id reads that id's millisecond whole: 20 media of one
    millisecond paged 3 at a time are each shown once, newest first."""
    owner, token = api.user()
    tag = f"burst{owner['id'][-6:]}"
    ids = sorted(same_millisecond_media(api, int(owner["id"]), 20, monkeypatch, f"#{tag}"),
                 reverse=True)
    settle(api.env)
    seen: list[str] = []
    params: dict[str, Any] = {"count": 3}
    while True:
        r = api.get(f"/v1/tags/{tag}/media/recent", token, **params)
        seen += media_of(r)
        nxt = r.json()["pagination"].get("next_max_tag_id")
        if not nxt:
            break
        params["max_tag_id"] = nxt
    assert seen == [str(i) for i in ids]


def test_a_merged_feed_keeps_the_feed_size_newest_like_a_pushed_one(api: Api) -> None:
    """R follows A and B, who post 15 media each (more than the feed size together): pushed,
    R's feed keeps the newest SIZE; with A and B pulled (merged at read time) R's feed is
    the same, down to where its pages stop."""
    (reader, tr), (a, _), (b, _) = api.user(), api.user(), api.user()
    api.relate(tr, a["id"], "follow")
    api.relate(tr, b["id"], "follow")
    ids = [post_direct(api.env, int(u["id"])) for _ in range(15) for u in (a, b)]
    settle(api.env)
    store = FeedStore(api.env.redis, SIZE, SIZE)
    store.merge(int(reader["id"]), [], complete=True)  # trimmed as pushes at SIZE trim
    pushed = feed(api, tr, count=5)
    assert pushed == [str(i) for i in sorted(ids, reverse=True)[:SIZE]]
    store.remove(ids, [int(reader["id"])])
    for u in (a, b):
        store.mark_pulled(int(u["id"]))
    assert feed(api, tr, count=5) == pushed


def test_a_lost_feed_is_rebuilt_on_first_read_and_says_partial_meanwhile(api: Api) -> None:
    """Redis loses a feed: a reader finding the rebuild lease taken gets what is there with
    meta.partial; the next reader rebuilds it from PostgreSQL, identical to before."""
    (a, _), (b, tb) = api.user(), api.user()
    api.relate(tb, a["id"], "follow")
    for i in range(4):
        post_direct(api.env, int(a["id"]), f"p{i}")
    settle(api.env)
    before = feed(api, tb, count=2)
    assert len(before) == 4
    r = api.env.redis
    r.delete(f"feed:{b['id']}")
    r.set(f"lease:feed:{b['id']}", "someone", px=60_000)
    partial = api.get("/v1/users/self/feed", tb)
    assert partial.json()["meta"].get("partial") is True and partial.json()["data"] == []
    r.delete(f"lease:feed:{b['id']}")
    rebuilt = api.get("/v1/users/self/feed", tb)
    assert "partial" not in rebuilt.json()["meta"]
    assert feed(api, tb, count=2) == before


def metric(api: Api, name: str) -> float:
    text = api.http.get("/metrics").text
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_a_herd_of_readers_after_a_flush_refills_each_count_once(api: Api) -> None:
    """Many concurrent readers of a medium whose counts left Redis: PostgreSQL is asked once
    for it, and every reader gets the right counts."""
    (_, ta), (_, tb) = api.user(), api.user()
    m = post(api, ta)
    api.post(f"/v1/media/{m}/likes", tb)
    api.post(f"/v1/media/{m}/comments", tb, text="nice")
    settle(api.env)
    for key in api.env.redis.scan_iter("counts:*"):
        api.env.redis.delete(key)
    before = metric(api, "shutterlog_counter_refills_total")
    with concurrent.futures.ThreadPoolExecutor(48) as pool:
        got = list(pool.map(lambda _: api.get(f"/v1/media/{m}", tb).json()["data"],
                            range(96)))
    assert {(g["likes"]["count"], g["comments"]["count"]) for g in got} == {(1, 1)}
    assert metric(api, "shutterlog_counter_refills_total") - before == 1


def test_activity_shows_likes_comments_mentions_and_follows(api: Api) -> None:
    """A's activity: B's follow, likes aggregated per medium, B's comment; C's mention in
    B's comment reaches C; an unlike removes its like."""
    (a, ta), (b, tb), (c, tc), (d, td) = (api.user() for _ in range(4))
    api.relate(tb, a["id"], "follow")
    m = post(api, ta, caption="hello")
    for t in (tb, tc, td):
        api.post(f"/v1/media/{m}/likes", t)
    api.post(f"/v1/media/{m}/comments", tb, text=f"great, @{c['username']}")
    settle(api.env)
    items = api.get("/v1/users/self/activity", ta).json()["data"]
    kinds = [i["type"] for i in items]
    assert kinds == ["comment", "like", "follow"]
    assert items[1]["count"] == 3 and items[1]["text"] == (
        f"{d['username']} and 2 others liked your photo")
    assert items[0]["text"] == f"{b['username']} commented: great, @{c['username']}"
    mention = api.get("/v1/users/self/activity", tc).json()["data"]
    assert [i["type"] for i in mention] == ["mention"]
    api.http.delete(f"/v1/media/{m}/likes", headers={"Authorization": f"Bearer {td}"})
    settle(api.env)
    items = api.get("/v1/users/self/activity", ta).json()["data"]
    assert items[1]["text"] == f"{c['username']} and {b['username']} liked your photo"


def test_a_mention_waits_for_its_medium_to_be_ready(api: Api) -> None:
    """A caption's mention reaches the mentioned user's activity only once the medium is
    ready: while it renders it is its owner's alone (404 to others)."""
    (_, ta), (b, tb) = api.user(), api.user()
    r = upload(api, ta, picture(), caption=f"draft @{b['username']}")
    assert r.status_code == 200, r.text
    media_id = r.json()["data"]["id"]
    drive(api.env, "activity")  # media_render has not run: the medium is processing
    assert api.get(f"/v1/media/{media_id}", tb).status_code == 404

    def mentions() -> list[Any]:
        return [i for i in api.get("/v1/users/self/activity", tb).json()["data"]
                if i["media_id"] == media_id]

    assert mentions() == []
    settle(api.env)
    assert [i["type"] for i in mentions()] == ["mention"]


def test_tags_list_search_and_lose_deleted_media(api: Api) -> None:
    """Tag pages list ready public media newest first; search by prefix; a deleted medium and
    a private account's medium are not listed."""
    (a, ta), (_, tp) = api.user(), api.user(is_private="true")
    tag = f"sunny{a['id'][-6:]}"
    ids = [post(api, ta, caption=f"#{tag} {i}") for i in range(3)]
    post(api, tp, caption=f"#{tag} hidden")
    r = api.get(f"/v1/tags/{tag}/media/recent", ta, count=2)
    assert media_of(r) == ids[::-1][:2]
    nxt = r.json()["pagination"]["next_max_tag_id"]
    assert media_of(api.get(f"/v1/tags/{tag}/media/recent", ta, max_tag_id=nxt)) == [ids[0]]
    assert api.get(f"/v1/tags/{tag.upper()}", ta).json()["data"] == {"name": tag,
                                                                      "media_count": 3}
    found = api.get("/v1/tags/search", ta, q=tag[:8]).json()["data"]
    assert {"name": tag, "media_count": 3} in found
    api.http.delete(f"/v1/media/{ids[2]}", headers={"Authorization": f"Bearer {ta}"})
    settle(api.env)
    assert media_of(api.get(f"/v1/tags/{tag}/media/recent", ta)) == [ids[1], ids[0]]
    assert api.get(f"/v1/tags/{tag}", ta).json()["data"]["media_count"] == 2
    assert api.get("/v1/tags/no%20space", ta).status_code == 400
    assert api.get(f"/v1/tags/{tag}%0A", ta).status_code == 400
