"""Likes and comments over HTTP: counts, user_has_liked, the rules, permissions, storms."""

from __future__ import annotations

import concurrent.futures
import random
import threading
from types import SimpleNamespace

import httpx
import pytest

from klein import Klein

from server.api import comments as comments_api
from server.api.endpoint import declared
from server.api.envelope import APIError
from server.db import Database, Txn
from server.domain.ids import shard_of
from server.domain.log import AppendRequest, NewEvent
from server.domain.media import MediaDeleted, State, media_stream
from server.domain.shards import schema_name
from server.store import comments as comments_store
from server.store import media
from tests.helpers import after_first_call, wait_for
from tests.integration.apiclient import Api
from tests.integration.mediakit import post, post_direct, settle


def medium(api: Api, token: str, media_id: str) -> dict:
    r = api.get(f"/v1/media/{media_id}", token)
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def error(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json()["meta"]["error_type"]


def test_like_unlike_counts_and_likers(api: Api) -> None:
    """A like shows in user_has_liked at once and in the count once the counter consumer
    ran; liking twice changes nothing; the likers list and the liked list follow."""
    a, ta = api.user()
    b, tb = api.user()
    m = post(api, ta)
    for _ in range(2):
        assert api.post(f"/v1/media/{m}/likes", tb).status_code == 200
    assert medium(api, tb, m)["user_has_liked"] is True
    assert medium(api, ta, m)["user_has_liked"] is False
    settle(api.env)
    assert medium(api, ta, m)["likes"] == {"count": 1}
    r = api.get(f"/v1/media/{m}/likes", ta)
    assert [u["id"] for u in r.json()["data"]] == [b["id"]]
    liked = api.get("/v1/users/self/media/liked", tb)
    assert [x["id"] for x in liked.json()["data"]] == [m]
    assert api.http.delete(f"/v1/media/{m}/likes",
                           headers={"Authorization": f"Bearer {tb}"}).status_code == 200
    settle(api.env)
    assert medium(api, tb, m)["likes"] == {"count": 0}
    assert medium(api, tb, m)["user_has_liked"] is False
    assert api.get("/v1/users/self/media/liked", tb).json()["data"] == []


def test_likes_on_unknown_deleted_private_or_blocked_media(api: Api) -> None:
    """Unknown and deleted media: 404; a private account's medium: APINotAllowedError; a
    blocked user: 404; the wrong scope: OAuthPermissionsException."""
    p, tp = api.user(is_private="true")
    a, ta = api.user()
    b, tb = api.user()
    _, basic = api.user(scope="basic")
    private = post(api, tp)
    public = post(api, ta)
    gone = post(api, ta)
    api.http.delete(f"/v1/media/{gone}", headers={"Authorization": f"Bearer {ta}"})
    api.relate(ta, b["id"], "block")
    assert error(api.post("/v1/media/123456789/likes", tb)) == (404, "APINotFoundError")
    assert error(api.post(f"/v1/media/{gone}/likes", tb)) == (404, "APINotFoundError")
    assert error(api.post(f"/v1/media/{private}/likes", tb)) == (400, "APINotAllowedError")
    assert error(api.post(f"/v1/media/{public}/likes", tb)) == (404, "APINotFoundError")
    assert error(api.post(f"/v1/media/{public}/comments", tb, text="hi")) == (
        404, "APINotFoundError")
    assert error(api.post(f"/v1/media/{public}/likes", basic)) == (
        400, "OAuthPermissionsException")


def test_comment_rules_and_deletion_rights(api: Api) -> None:
    """Each comment rule has its own error; the owner's hashtags tag the medium; a comment
    is deleted by its author or the medium's owner, never by someone else."""
    a, ta = api.user()
    b, tb = api.user()
    c, tc = api.user()
    m = post(api, ta, caption="first #one")
    path = f"/v1/media/{m}/comments"
    cases = [
        ("x" * 301, "APICommentTooLongError"),
        ("#a #b #c #d #e", "APICommentTooManyTagsError"),
        ("see http://a.example/x and www.b.example", "APICommentTooManyURLsError"),
        ("THIS IS GREAT", "APICommentAllCapsError"),
        ("   ", "APIInvalidParametersError"),
    ]
    for text, error_type in cases:
        assert error(api.post(path, tb, text=text)) == (400, error_type), text
    ok = api.post(path, tb, text="Nice one @" + c["username"])
    assert ok.status_code == 200, ok.text
    cid = ok.json()["data"]["id"]
    own = api.post(path, ta, text="also #Two")
    settle(api.env)
    assert medium(api, tb, m)["comments"] == {"count": 2}
    assert sorted(medium(api, tb, m)["tags"]) == ["one", "two"]
    listed = api.get(path, tc).json()["data"]
    assert [x["text"] for x in listed] == ["Nice one @" + c["username"], "also #Two"]
    r = api.http.delete(f"{path}/{cid}", headers={"Authorization": f"Bearer {tc}"})
    assert error(r) == (400, "APINotAllowedError")
    assert api.http.delete(f"{path}/{cid}", headers={"Authorization": f"Bearer {ta}"}
                           ).status_code == 200
    r = api.http.delete(f"{path}/{cid}", headers={"Authorization": f"Bearer {ta}"})
    assert error(r) == (404, "APINotFoundError")
    own_id = own.json()["data"]["id"]
    assert api.http.delete(f"{path}/{own_id}", headers={"Authorization": f"Bearer {ta}"}
                           ).status_code == 200
    settle(api.env)
    assert medium(api, tb, m)["comments"] == {"count": 0}
    assert medium(api, tb, m)["tags"] == ["one"]


def test_a_storm_of_likes_and_unlikes_ends_with_exact_counts(api: Api) -> None:
    """200 concurrent likes and unlikes from 100 users on one medium: the count equals the
    like rows, the rows equal each user's last action, and the cache agrees."""
    _, ta = api.user()
    m = post(api, ta)
    users = [api.user(scope="basic likes public_content")[1] for _ in range(100)]
    rng = random.Random(5)
    jobs = [(u, rng.random() < 0.6) for u in users for _ in range(2)]
    rng.shuffle(jobs)

    def act(job: tuple[str, bool]) -> int:
        token, like = job
        path = f"/v1/media/{m}/likes"
        if like:
            return api.post(path, token).status_code
        return api.http.delete(path, headers={"Authorization": f"Bearer {token}"}).status_code

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        assert set(pool.map(act, jobs)) == {200}
    media_id = int(m)
    schema = schema_name(shard_of(media_id))
    rows, count = api.env.router.database(shard_of(media_id)).run_interaction(
        "check", Txn.fetchone,
        f"SELECT (SELECT count(*) FROM {schema}.likes WHERE media_id = %s), like_count "
        f"FROM {schema}.media WHERE id = %s", (media_id, media_id)) or (None, None)
    assert rows == count
    likers = sum(medium(api, t, m)["user_has_liked"] for t in users)
    assert likers == count
    settle(api.env)
    wait_for(lambda: medium(api, ta, m)["likes"]["count"] == count, 10, "the cached count")


def waiting_on_a_row_lock(db: Database) -> bool:
    """Whether a session of ``db`` waits on a row (or its transaction) lock."""
    row = db.run_interaction("waiting", Txn.fetchone, "SELECT count(*) FROM pg_locks WHERE "
                             "NOT granted AND locktype IN ('tuple', 'transactionid')")
    return bool(row and row[0])


def test_a_like_waits_for_a_deletion_in_progress_and_is_refused(api: Api) -> None:
    """A's deletion of a medium has locked it and appended MediaDeleted, not committed yet,
    when B's like arrives: the like waits for it, then answers 404; nothing is appended
    after the deletion and the count stays 0."""
    a, _ = api.user()
    _, tb = api.user()
    media_id = post_direct(api.env, int(a["id"]))
    shard = shard_of(media_id)
    db = api.env.router.database(shard)
    answers: list[httpx.Response] = []
    liking = threading.Thread(target=lambda: answers.append(
        api.post(f"/v1/media/{media_id}/likes", tb)))

    def deleting(txn: Txn) -> None:  # what DELETE /v1/media/{id} runs
        assert media.state_of_txn(txn, media_id) is State.READY  # FOR UPDATE
        api.env.store.append_txn(txn, [AppendRequest(shard, media_stream(media_id), (
            NewEvent(MediaDeleted(media_id=media_id, owner=int(a["id"]))),))])
        liking.start()
        wait_for(lambda: waiting_on_a_row_lock(db), 20, "the like to wait for the deletion")

    db.run_interaction("delete", deleting)
    liking.join(30)
    assert answers and answers[0].status_code == 404, answers
    types = [e.type for e in api.env.store.read_stream(shard, media_stream(media_id))]
    assert types[-1] == "MediaDeleted"
    row = db.run_interaction("count", Txn.fetchone, f"SELECT like_count FROM "
                             f"{schema_name(shard)}.media WHERE id = %s", (media_id,))
    assert row == (0,)


def test_a_comment_deleted_by_its_author_and_the_owner_at_once_is_deleted_once(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The author's deletion reads the comment; the owner's deletion commits; the author's
    decides again on the deleted comment (404): one CommentDeleted in the log."""
    (owner, towner), (author, tauthor) = api.user(), api.user()
    media_id = post_direct(api.env, int(owner["id"]))
    r = api.post(f"/v1/media/{media_id}/comments", tauthor, text="nice one")
    assert r.status_code == 200, r.text
    comment_id = r.json()["data"]["id"]

    def owner_deletes() -> None:
        gone = api.http.delete(f"/v1/media/{media_id}/comments/{comment_id}",
                               headers={"Authorization": f"Bearer {towner}"})
        assert gone.status_code == 200, gone.text

    fired = after_first_call(monkeypatch, comments_store, "get_txn", owner_deletes)
    app = Klein()
    comments_api.routes(app, SimpleNamespace(store=api.env.store,  # type: ignore[arg-type]
                                             router=api.env.router))
    delete = next(e.handler for e in declared(app) if e.handler.__name__ == "delete_comment")
    with pytest.raises(APIError) as refused:
        delete(SimpleNamespace(  # type: ignore[arg-type]
            user_id=int(author["id"]), params={"media_id": str(media_id),
                                               "comment_id": comment_id},
            ctx=SimpleNamespace(store=api.env.store, router=api.env.router),
            idempotency_key=lambda principal: None))
    assert refused.value.code == 404 and fired
    types = [e.type for e in api.env.store.read_stream(
        shard_of(media_id), f"comment:{comment_id}")]
    assert types == ["CommentAdded", "CommentDeleted"]
