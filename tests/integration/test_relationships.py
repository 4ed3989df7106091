"""Follows, requests, blocks and their lists over HTTP; the followers side through the
``followers`` and ``blocks`` consumers, driven to the head of the log."""

from __future__ import annotations

import concurrent.futures
import random
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from server.api.envelope import APIError
from server.api.relationships import Pair, act, read_pair
from server.db import Txn
from server.domain.graph import (
    Action,
    Edge,
    UserBlocked,
    UserFollowed,
    UserUnblocked,
    block_stream,
    follow_stream,
)
from server.domain.ids import shard_of
from server.domain.log import NewEvent
from server.domain.shards import schema_name
from server.store import graph
from tests.drive import Driver, drive
from tests.helpers import after_first_call
from tests.integration.apiclient import Api
from tests.integration.conftest import Env
from workers.consumers import CONSUMERS


def counts(api: Api, token: str, user_id: str) -> dict[str, int]:
    r = api.get(f"/v1/users/{user_id}", token)
    assert r.status_code == 200, r.text
    return dict(r.json()["data"]["counts"])


def ids(api: Api, path: str, token: str) -> list[str]:
    return [u["id"] for page in api.pages(path, token) for u in page]


def settle(api: Api) -> None:
    drive(api.env, "blocks", "followers")


def test_follow_and_unfollow_a_public_account(api: Api) -> None:
    """Follow: outgoing 'follows' at once and the follower's count; the followee's side after
    the consumer; unfollow undoes both."""
    a, ta = api.user()
    b, tb = api.user()
    assert api.relate(ta, b["id"], "follow") == {
        "outgoing_status": "follows", "incoming_status": "none", "target_user_is_private": False}
    assert counts(api, ta, a["id"])["follows"] == 1
    assert ids(api, f"/v1/users/{a['id']}/follows", ta) == [b["id"]]
    settle(api)
    assert counts(api, tb, b["id"])["followed_by"] == 1
    r = api.get(f"/v1/users/{b['id']}/followed-by", tb)
    assert [u["id"] for u in r.json()["data"]] == [a["id"]]
    assert r.headers["x-consistency"] == "eventual"
    assert api.get(f"/v1/users/{a['id']}/relationship", tb).json()["data"][
        "incoming_status"] == "followed_by"
    assert api.relate(ta, b["id"], "follow")["outgoing_status"] == "follows"  # no-op
    assert api.relate(ta, b["id"], "unfollow")["outgoing_status"] == "none"
    settle(api)
    assert counts(api, ta, a["id"])["follows"] == 0
    assert counts(api, tb, b["id"])["followed_by"] == 0
    assert ids(api, f"/v1/users/{b['id']}/followed-by", tb) == []


def test_private_account_requests_approve_and_ignore(api: Api) -> None:
    """A follow of a private account is a request until approved; ignore drops it; the
    private account's lists are closed to non-followers."""
    p, tp = api.user(is_private="true")
    a, ta = api.user()
    c, tc = api.user()
    assert api.relate(ta, p["id"], "follow")["outgoing_status"] == "requested"
    assert api.relate(tc, p["id"], "follow")["outgoing_status"] == "requested"
    r = api.get(f"/v1/users/{p['id']}/follows", ta)
    assert r.status_code == 400 and r.json()["meta"]["error_type"] == "APINotAllowedError"
    settle(api)
    assert sorted(ids(api, "/v1/users/self/requested-by", tp)) == sorted([a["id"], c["id"]])
    rel = api.relate(tp, a["id"], "approve")
    assert rel["incoming_status"] == "followed_by"
    assert api.relate(tp, c["id"], "ignore")["incoming_status"] == "none"
    r = api.post(f"/v1/users/{c['id']}/relationship", tp, action="approve")
    assert r.status_code == 400 and "not requested" in r.json()["meta"]["error_message"]
    settle(api)
    assert ids(api, "/v1/users/self/requested-by", tp) == []
    assert ids(api, f"/v1/users/{p['id']}/followed-by", ta) == [a["id"]]
    assert counts(api, tp, p["id"])["followed_by"] == 1
    assert counts(api, ta, a["id"])["follows"] == 1
    assert api.get(f"/v1/users/{p['id']}/relationship", tc).json()["data"] == {
        "outgoing_status": "none", "incoming_status": "none", "target_user_is_private": True}


def test_block_removes_edges_both_ways_and_hides_the_blocker(api: Api) -> None:
    """A blocks B: A's edge goes at once, B's through the blocks consumer; B cannot see,
    find (user search) or follow A, A cannot follow B until unblocking; counts end at
    zero."""
    a, ta = api.user()
    b, tb = api.user()
    api.relate(ta, b["id"], "follow")
    api.relate(tb, a["id"], "follow")
    settle(api)
    rel = api.relate(ta, b["id"], "block")
    assert rel == {"outgoing_status": "none", "incoming_status": "blocked_by_you",
                   "target_user_is_private": False}
    assert api.get(f"/v1/users/{a['id']}", tb).status_code == 404
    assert api.get("/v1/users/search", tb, q=a["username"]).json()["data"] == []
    assert [u["id"] for u in api.get("/v1/users/search", ta, q=b["username"]).json()["data"]
            ] == [b["id"]]
    r = api.post(f"/v1/users/{a['id']}/relationship", tb, action="follow")
    assert r.status_code == 404
    r = api.post(f"/v1/users/{b['id']}/relationship", ta, action="follow")
    assert r.status_code == 400 and r.json()["meta"]["error_type"] == "APINotAllowedError"
    settle(api)
    for user, token in ((a, ta), (b, tb)):
        assert counts(api, token, user["id"]) == {"media": 0, "follows": 0, "followed_by": 0}
    assert ids(api, f"/v1/users/{b['id']}/follows", tb) == []
    assert api.relate(ta, b["id"], "unblock")["incoming_status"] == "none"
    assert api.get(f"/v1/users/{a['id']}", tb).status_code == 200
    assert [u["id"] for u in api.get("/v1/users/search", tb, q=a["username"]).json()["data"]
            ] == [a["id"]]
    assert api.relate(tb, a["id"], "follow")["outgoing_status"] == "follows"


def test_follow_racing_a_block_is_removed(api: Api, module_env: Env) -> None:
    """A follow appended after a block it did not see (written straight to the log, as a
    follow decided before the block committed would be) is removed by the consumer."""
    from server.domain.graph import UserFollowed, follow_stream
    from server.domain.log import NewEvent

    a, ta = api.user()
    b, tb = api.user()
    api.relate(ta, b["id"], "block")
    follower, followee = int(b["id"]), int(a["id"])
    module_env.store.append(shard_of(follower), follow_stream(follower, followee),
                            [NewEvent(UserFollowed(follower=follower, followee=followee))])
    assert api.get(f"/v1/users/{b['id']}", tb).json()["data"]["counts"]["follows"] == 1
    settle(api)
    assert counts(api, tb, b["id"])["follows"] == 0
    assert counts(api, ta, a["id"])["followed_by"] == 0


def test_counts_stay_exact_under_a_follow_storm(api: Api, module_env: Env) -> None:
    """Many concurrent follows and unfollows between the same pairs: afterwards every count
    equals its edges on both sides, and re-applying the whole log changes nothing."""
    users = [api.user() for _ in range(4)]
    pairs = [(i, j) for i in range(4) for j in range(4) if i != j]
    rng = random.Random(7)
    jobs = [(rng.choice(pairs), rng.choice(["follow", "unfollow"])) for _ in range(240)]

    def act(job: tuple[tuple[int, int], str]) -> int:
        (i, j), action = job
        r = api.post(f"/v1/users/{users[j][0]['id']}/relationship", users[i][1], action=action)
        return r.status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert set(pool.map(act, jobs)) == {200}
    settle(api)
    truth = edges(module_env, [int(u["id"]) for u, _ in users])
    for k, (user, token) in enumerate(users):
        uid = int(user["id"])
        expected = {"follows": sum(1 for f, _ in truth if f == uid),
                    "followed_by": sum(1 for _, t in truth if t == uid), "media": 0}
        assert counts(api, token, user["id"]) == expected, k
        assert {int(x) for x in ids(api, f"/v1/users/{uid}/followed-by", token)} == {
            f for f, t in truth if t == uid}
    Driver(module_env).drive("followers", "blocks")  # a crash replay from the origin
    for user, token in users:
        assert counts(api, token, user["id"])["followed_by"] == sum(
            1 for _, t in truth if t == int(user["id"]))


def edges(env: Env, user_ids: list[int]) -> set[tuple[int, int]]:
    """The follower-side active edges among ``user_ids`` (the source of truth)."""
    out: set[tuple[int, int]] = set()
    for uid in user_ids:
        sql = (f"SELECT follower, followee FROM {schema_name(shard_of(uid))}.follows "
               "WHERE follower = %s AND state = 'active'")
        rows = env.router.database(shard_of(uid)).run_interaction(
            "edges", Txn.fetchall, sql, (uid,))
        out |= {(int(f), int(t)) for f, t in rows if int(t) in user_ids}
    return out


def test_pagination_is_stable_under_concurrent_writes(api: Api) -> None:
    """Paging through follows while new follows arrive and unseen ones go: no duplicates, and
    every edge that stayed is seen."""
    a, ta = api.user()
    others = [api.user() for _ in range(7)]
    for u, _ in others:
        api.relate(ta, u["id"], "follow")
    pages = api.pages(f"/v1/users/{a['id']}/follows", ta, count=3)
    seen: list[str] = [u["id"] for u in next(pages)]
    late = api.user()
    api.relate(ta, late[0]["id"], "follow")  # newest: lands before the cursor, not after it
    gone = others[0][0]["id"]  # the oldest, not yet seen
    api.relate(ta, gone, "unfollow")
    for page in pages:
        seen += [u["id"] for u in page]
    assert len(seen) == len(set(seen))
    stayed = {u["id"] for u, _ in others} - {gone}
    assert stayed <= set(seen) and gone not in seen


def test_relationship_errors(api: Api) -> None:
    """Unknown user, malformed id, self, bad action, wrong scope: precise 4xx."""
    a, ta = api.user()
    b, _ = api.user()
    _, basic = api.user(scope="basic")
    cases: list[tuple[Any, int, str]] = [
        (api.post("/v1/users/123456789/relationship", ta, action="follow"), 404,
         "APINotFoundError"),
        (api.post("/v1/users/abc/relationship", ta, action="follow"), 400,
         "APIInvalidParametersError"),
        (api.post(f"/v1/users/{a['id']}/relationship", ta, action="follow"), 400,
         "APIInvalidParametersError"),
        (api.post(f"/v1/users/{b['id']}/relationship", ta, action="poke"), 400,
         "APIInvalidParametersError"),
        (api.post(f"/v1/users/{b['id']}/relationship", ta), 400, "APIInvalidParametersError"),
        (api.post(f"/v1/users/{b['id']}/relationship", basic, action="follow"), 400,
         "OAuthPermissionsException"),
        (api.get(f"/v1/users/{b['id']}/follows", basic), 400, "OAuthPermissionsException"),
    ]
    for r, code, error_type in cases:
        assert (r.status_code, r.json()["meta"]["error_type"]) == (code, error_type), r.text


def test_relationship_post_is_idempotent(api: Api, module_env: Env) -> None:
    """A retry with the same Idempotency-Key returns the first answer and appends nothing,
    even after the state moved on."""
    a, ta = api.user()
    b, _ = api.user()
    path = f"/v1/users/{b['id']}/relationship"
    key = {"Idempotency-Key": "follow-once-1"}
    first = api.post(path, ta, headers=key, action="follow")
    stream = f"follow:{a['id']}:{b['id']}"
    shard = shard_of(int(a["id"]))
    assert len(module_env.store.read_stream(shard, stream)) == 1
    api.relate(ta, b["id"], "unfollow")
    retry = api.post(path, ta, headers=key, action="follow")
    assert retry.status_code == 200 and retry.json()["data"] == first.json()["data"]
    assert retry.json()["data"]["outgoing_status"] == "follows"
    assert len(module_env.store.read_stream(shard, stream)) == 2  # follow, unfollow
    bad = api.post(path, ta, headers={"Idempotency-Key": "has space"}, action="follow")
    assert bad.status_code == 400


# --- the blocks consumer and ids out of commit order (a world of its own) ---------------------

X_SHARD, Y_SHARD = 1, 9  # on the two databases


def mint(env: Env, shard: int) -> int:
    """A fresh id of ``shard`` (a user without an account behind it)."""
    row = env.router.database(shard).run_interaction(
        "ids", Txn.fetchone, f"SELECT {schema_name(shard)}.next_ids(1)")
    assert row is not None
    return int(row[0][0])


def skew(env: Env, shard: int) -> None:
    """Run ``shard``'s id clock 5 s ahead (the sequence holds ms << 10 | seq): what a database
    server whose clock is 5 s ahead gives, or a burst of 5M ids minted there."""
    env.router.database(shard).run_interaction(
        "skew", Txn.execute, f"SELECT setval('{schema_name(shard)}.id_clock', "
        f"nextval('{schema_name(shard)}.id_clock') + (5000 << 10))")


def edge(env: Env, follower: int, followee: int) -> tuple[Edge, int | None]:
    """The follower-side edge and its id."""
    return env.router.database(shard_of(follower)).run_interaction(
        "edge", graph.edge, follower, followee)


def test_a_block_removes_a_follow_applied_before_it_whatever_their_ids(env: Env) -> None:
    """Y follows X and the blocks consumer applies the follow (no block yet); then X blocks
    Y. The block, applied second, must remove Y's edge, although the follow's id is above the
    block's (Y's shard's clock runs ahead): ids are not commit order across shards."""
    x, y = mint(env, X_SHARD), mint(env, Y_SHARD)
    skew(env, Y_SHARD)
    driver = Driver(env)
    env.store.append(shard_of(y), follow_stream(y, x),
                     [NewEvent(UserFollowed(follower=y, followee=x), actor=y)])
    driver.drive("blocks", "followers")
    follows = edge(env, y, x)
    assert follows[0] is Edge.ACTIVE
    block = env.store.append(shard_of(x), block_stream(x, y),
                             [NewEvent(UserBlocked(blocker=x, blocked=y), actor=x)])
    assert follows[1] is not None and follows[1] > block.event_ids[0]
    driver.drive("blocks", "followers")
    assert edge(env, y, x) == (Edge.NONE, None), "Y still follows X while X blocks Y"


def test_an_old_block_applied_again_keeps_a_follow_made_after_the_unblock(env: Env) -> None:
    """X blocks Y (X's shard's clock ahead: a large id), the consumer applies it; X unblocks
    Y and Y follows X again (a smaller id). The block applied again (at least once: a batch
    redone after a crash) must leave the new follow alone."""
    x, y = mint(env, X_SHARD), mint(env, Y_SHARD)
    skew(env, X_SHARD)
    driver = Driver(env)
    env.store.append(shard_of(x), block_stream(x, y), [NewEvent(
        UserBlocked(blocker=x, blocked=y), actor=x)])
    driver.drive("blocks", "followers")
    env.store.append(shard_of(x), block_stream(x, y), [NewEvent(
        UserUnblocked(blocker=x, blocked=y), actor=x)])
    env.store.append(shard_of(y), follow_stream(y, x),
                     [NewEvent(UserFollowed(follower=y, followee=x), actor=y)])
    driver.drive("blocks", "followers")
    follows = edge(env, y, x)
    assert follows[0] is Edge.ACTIVE
    block = env.store.read_stream(shard_of(x), block_stream(x, y))[0]
    assert follows[1] is not None and follows[1] < block.id
    CONSUMERS.get("blocks").handle(driver.ctx, [block])
    assert edge(env, y, x) == follows, "an old block applied again removed a later follow"


# --- a decision racing another device's write: the competitor commits right after the ------
# --- decision's state read (the real handler code runs here, the competitor over HTTP) ------


def racing(api: Api, monkeypatch: pytest.MonkeyPatch, me: dict[str, Any],
           them: dict[str, Any], action: Action, competitor: Callable[[], object]) -> Pair:
    """``action`` by ``me`` through the API's own code, in this process, with
    ``competitor`` run once right after the decision's transaction reads the edge."""
    call = SimpleNamespace(user_id=int(me["id"]), idempotency_key=lambda principal: None,
                           ctx=SimpleNamespace(store=api.env.store, router=api.env.router))
    pair = read_pair(call, int(them["id"]))  # type: ignore[arg-type]
    fired = after_first_call(monkeypatch, graph, "edge", competitor)
    try:
        return act(call, pair, action)  # type: ignore[arg-type]
    finally:
        monkeypatch.undo()
        assert fired


def test_an_approve_racing_a_withdrawn_request_makes_no_follow(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """F asks to follow private P; P's approve reads the request, then F withdraws it: the
    approve must decide again (and find nothing to approve), not bring the edge back."""
    (p, _), (f, tf) = api.user(is_private="true"), api.user()
    assert api.relate(tf, p["id"], "follow")["outgoing_status"] == "requested"
    with pytest.raises(APIError):  # this user has not requested to follow you
        racing(api, monkeypatch, p, f, Action.APPROVE,
               lambda: api.relate(tf, p["id"], "unfollow"))
    assert api.get(f"/v1/users/{p['id']}/relationship", tf).json()["data"][
        "outgoing_status"] == "none"


def test_an_ignore_racing_an_approve_keeps_the_follower(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """P ignores F's request on one device as P approves it on another: the ignore, which
    read the request before the approve committed, decides again and leaves the follow."""
    (p, tp), (f, tf) = api.user(is_private="true"), api.user()
    assert api.relate(tf, p["id"], "follow")["outgoing_status"] == "requested"
    racing(api, monkeypatch, p, f, Action.IGNORE, lambda: api.relate(tp, f["id"], "approve"))
    assert api.get(f"/v1/users/{p['id']}/relationship", tf).json()["data"][
        "outgoing_status"] == "follows"


def test_a_block_racing_the_blockers_own_follow_leaves_no_edge(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """A blocks B on one device as A follows B on another: the block read no edge, so it
    took none inline, and the follow read no block; the blocks consumer (which applied the
    follow before the block existed) removes A's edge when it applies the block."""
    (a, ta), (b, _) = api.user(), api.user()
    driver = Driver(api.env)

    def follow() -> None:
        assert api.relate(ta, b["id"], "follow")["outgoing_status"] == "follows"
        driver.drive("blocks", "followers")

    assert racing(api, monkeypatch, a, b, Action.BLOCK, follow).i_block
    driver.drive("blocks", "followers")
    a_id, b_id = int(a["id"]), int(b["id"])
    db = api.env.router.database(shard_of(a_id))
    assert db.run_interaction("edge", graph.edge, a_id, b_id)[0] is Edge.NONE
    assert db.run_interaction("block", graph.block_id, a_id, b_id) is not None
