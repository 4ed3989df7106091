"""Share-out end to end: uploads with ``share_to`` through the real API service, relay,
gearmand and worker pool, to the fake Mastodon, X, Graph and webhook receiver: every target
posts, each failure class has its effect, deletions reach the services, a worker killed
mid-share never double-posts, and no credential reaches a log or the event log."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest

from server import catalog
from server.db import Txn
from server.domain.ids import shard_of
from server.domain.links import AccountUnlinked
from server.domain.media import permalink
from server.domain.shareout import share_key
from server.store.shares import shares_of
from tests.fakes.facebook import graph_error
from tests.fakes.http import Reply, Request
from tests.fakes.twitter import problem
from tests.helpers import Process, wait_for
from tests.integration.apiclient import Api
from tests.integration.conftest import Env
from tests.integration.mediakit import picture, upload
from tests.integration.shareout.conftest import (
    MASTODON_TOKEN,
    PUBLIC_URL,
    SECRETS,
    TWITTER_TOKEN,
    Fakes,
    linked_user,
    shares,
    start_workers,
    wait_shares,
)

catalog.load()
ALL = ("facebook", "mastodon", "twitter", "webhook")


def post(api: Api, token: str, share_to: str, caption: str) -> str:
    r = upload(api, token, picture(), caption=caption, share_to=share_to)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["state"] == "processing"  # the upload did not wait for shares
    return str(r.json()["data"]["id"])


def posted_event_id(env: Env, media_id: str) -> int:
    return env.store.read_stream(shard_of(int(media_id)), f"media:{media_id}")[0].id


def with_link(requests: list[Request], media_id: str, field: str = "") -> list[Request]:
    """The requests whose body mentions the medium's link."""
    link = permalink(PUBLIC_URL, int(media_id)).encode()
    quoted = link.replace(b":", b"%3A").replace(b"/", b"%2F")
    return [r for r in requests if link in r.body or quoted in r.body]


def test_every_target_posts_in_the_background(api: Api, fakes: Fakes, module_env: Env,
                                              pool: dict[str, Process]) -> None:
    """One upload shared to all four services: each posts once with the adapted caption,
    the link and its idempotency key; the owner sees each share's remote id and URL,
    others see no shares."""
    _, token = linked_user(api, fakes, *ALL)
    media_id = post(api, token, ",".join(ALL), "Harbour at dawn #sea")
    found = wait_shares(api, token, media_id, dict.fromkeys(ALL, "posted"))
    event_id = posted_event_id(module_env, media_id)
    link = permalink(PUBLIC_URL, int(media_id))

    key = share_key(event_id, "mastodon")
    status = fakes.mastodon.statuses[fakes.mastodon.keys[key]]
    assert status["text"] == f"Harbour at dawn #sea\n{link}"
    assert found["mastodon"]["remote_id"] == status["id"]
    assert found["mastodon"]["url"] == status["url"]

    tweet = fakes.twitter.tweets[found["twitter"]["remote_id"]]
    assert tweet["text"] == f"Harbour at dawn #sea\n{link}" and len(tweet["media_ids"]) == 1
    assert found["twitter"]["url"].endswith(f"/i/web/status/{tweet['id']}")

    photo = fakes.graph.photos[found["facebook"]["remote_id"]]
    medium = api.get(f"/v1/media/{media_id}", token).json()["data"]
    assert photo["url"] == medium["images"]["standard_resolution"]["url"]
    assert photo["url"].startswith(f"{PUBLIC_URL}/blobs/") and photo["name"].endswith(link)

    delivery = fakes.receiver.events[share_key(event_id, "webhook")]
    assert delivery["type"] == "medium.shared" and delivery["data"]["permalink"] == link
    assert delivery["data"]["medium_id"] == media_id

    _, other = api.user()
    seen = api.get(f"/v1/media/{media_id}", other).json()["data"]
    assert "shares" not in seen and seen["id"] == media_id


def test_a_rate_limit_is_retried_after_the_wait_asked_for(
        api: Api, fakes: Fakes, pool: dict[str, Process]) -> None:
    """X answers 429 with Retry-After: 1; the tweet is posted on a later try, no sooner
    than a second later, once."""
    _, token = linked_user(api, fakes, "twitter")
    fakes.twitter.script("POST", "/2/tweets", Reply(
        429, {"title": "Too Many Requests", "detail": "Too Many Requests", "status": 429},
        headers={"Retry-After": "1"}))
    media_id = post(api, token, "twitter", "Rate limited sunset")
    found = wait_shares(api, token, media_id, {"twitter": "posted"})
    tries = with_link(fakes.twitter.received("POST", "/2/tweets"), media_id)
    assert len(tries) == 2 and tries[1].at - tries[0].at >= 1.0
    assert found["twitter"]["attempts"] == 1
    assert [t for t in fakes.twitter.tweets.values() if "Rate limited" in t["text"]] == [
        fakes.twitter.tweets[found["twitter"]["remote_id"]]]


def test_server_errors_are_retried(api: Api, fakes: Fakes, pool: dict[str, Process]) -> None:
    """Two 503s from Mastodon's media upload are retried; the third try posts."""
    _, token = linked_user(api, fakes, "mastodon")
    fakes.mastodon.script("POST", "/api/v2/media", Reply(503, body=b"<html>busy</html>"),
                          Reply(502, body=b"bad gateway"))
    media_id = post(api, token, "mastodon", "Retried after 5xx")
    found = wait_shares(api, token, media_id, {"mastodon": "posted"})
    assert found["mastodon"]["attempts"] == 2
    assert len(with_link(fakes.mastodon.received("POST", "/api/v1/statuses"), media_id)) == 1


def test_a_refused_credential_unlinks_and_tells_the_user(
        api: Api, fakes: Fakes, module_env: Env, pool: dict[str, Process]) -> None:
    """Mastodon answers 401 (the token was revoked there): the share is recorded failed,
    AccountUnlinked (credential_dead) is appended, the link is gone and the user's activity
    says so."""
    user, token = linked_user(api, fakes, "mastodon")
    fakes.mastodon.token = "rotated-elsewhere"
    try:
        media_id = post(api, token, "mastodon", "Revoked token")
        found = wait_shares(api, token, media_id, {"mastodon": "failed"})
    finally:
        fakes.mastodon.token = MASTODON_TOKEN
    assert found["mastodon"]["error"] == (
        "the credentials were refused: HTTP 401: The access token is invalid")
    assert api.get("/v1/users/self/linked_accounts", token).json()["data"] == []
    unlinked = [e.data for e in module_env.store.latest(50, types=["AccountUnlinked"])
                if isinstance(e.data, AccountUnlinked) and e.data.user_id == int(user["id"])]
    assert [(u.service, u.reason) for u in unlinked] == [("mastodon", "credential_dead")]

    def told() -> list[dict[str, Any]]:
        items = api.get("/v1/users/self/activity", token).json()["data"]
        return [i for i in items if i["type"] == "unlinked"]

    item, = wait_for(told, 30, "the activity item")
    assert item["text"].startswith("Your Mastodon account was unlinked")
    assert item["users"][0]["id"] == user["id"]


def test_a_permanent_refusal_is_recorded_and_shown(api: Api, fakes: Fakes,
                                                  pool: dict[str, Process]) -> None:
    """A Graph 400 (code 100) is not retried: the share is failed with Graph's message,
    shown on the medium; the link stays."""
    _, token = linked_user(api, fakes, "facebook")
    fakes.graph.script("POST", r"/v23.0/\d+/photos",
                       graph_error(400, 100, "(#100) Invalid parameter", "GraphMethodException"))
    media_id = post(api, token, "facebook", "Refused photo")
    found = wait_shares(api, token, media_id, {"facebook": "failed"})
    assert found["facebook"]["error"] == (
        "Graph error 100 (GraphMethodException): (#100) Invalid parameter")
    assert found["facebook"]["attempts"] == 0 and found["facebook"]["remote_id"] is None
    assert len(api.get("/v1/users/self/linked_accounts", token).json()["data"]) == 1


def test_deleting_the_medium_deletes_the_remote_posts(
        api: Api, fakes: Fakes, module_env: Env, pool: dict[str, Process]) -> None:
    """After the shares are posted, deleting the medium deletes the status, the tweet (after
    a 503, retried) and the photo, and tells the webhook (medium.unshared); the ledger says
    deleted."""
    _, token = linked_user(api, fakes, *ALL)
    media_id = post(api, token, ",".join(ALL), "Soon gone")
    found = wait_shares(api, token, media_id, dict.fromkeys(ALL, "posted"))
    fakes.twitter.script("DELETE", r"/2/tweets/\d+", problem(503, "Service Unavailable", "busy"))
    r = api.http.delete(f"/v1/media/{media_id}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text

    def states() -> dict[str, str]:
        rows = shares_of(module_env.router, [int(media_id)]).get(int(media_id), [])
        return {s.service: s.state for s in rows}

    wait_for(lambda: states() == dict.fromkeys(ALL, "deleted"), 40, "the remote deletions")
    assert found["mastodon"]["remote_id"] not in fakes.mastodon.statuses
    assert found["twitter"]["remote_id"] not in fakes.twitter.tweets
    assert len(fakes.twitter.received("DELETE", f"/2/tweets/{found['twitter']['remote_id']}")) == 2
    assert found["facebook"]["remote_id"] not in fakes.graph.photos
    unshared = fakes.receiver.events[f"{found['webhook']['remote_id']}-unshared"]
    assert unshared["type"] == "medium.unshared"


@pytest.mark.parametrize("network", ["mastodon", "twitter"])
def test_a_worker_killed_mid_share_never_double_posts(
        api: Api, fakes: Fakes, module_env: Env, pool: dict[str, Process], network: str) -> None:
    """The worker is killed (SIGKILL) while the network is creating the post, which it then
    creates anyway. The task, re-run by another worker, finds the attempt in the ledger:
    Mastodon gets the same Idempotency-Key again and creates nothing new; X (no key) is
    searched for the medium's link, found, and not posted to again."""
    fake: Any = getattr(fakes, network)
    path, create = (("/api/v1/statuses", fake.create_status) if network == "mastodon"
                    else ("/2/tweets", fake.create))
    arrived, release = threading.Event(), threading.Event()

    def held(request: Request, **_: str) -> Reply:
        arrived.set()
        release.wait(30)
        return create(request)

    route = ("POST", re.compile(path), held)
    fake.routes.insert(0, route)
    try:
        _, token = linked_user(api, fakes, network)
        media_id = post(api, token, network, f"Through a crash to {network}")
        wait_for(arrived.is_set, 30, "the create call")
        pool["workers"].kill()
        pool[f"killed-{network}"] = pool["workers"]
    finally:
        release.set()
        fake.routes.remove(route)
    wait_for(lambda: len(posts(fake, media_id)) == 1, 10, "the held post to be created")
    assert shares(api, token, media_id)[network]["state"] == "pending"
    pool["workers"] = start_workers(module_env, fakes)
    found = wait_shares(api, token, media_id, {network: "posted"})
    assert posts(fake, media_id) == [found[network]["remote_id"]]
    calls = with_link(fake.received("POST", path), media_id)
    if network == "mastodon":
        key = share_key(posted_event_id(module_env, media_id), "mastodon")
        assert len(calls) == 2 and {c.header("Idempotency-Key") for c in calls} == {key}
        assert fake.created[key] == 1
    else:
        assert len(calls) == 1 and fake.received("GET", "/2/users/42/tweets")


def posts(fake: Any, media_id: str) -> list[str]:
    """The ids of the posts the fake holds that link to the medium."""
    link = permalink(PUBLIC_URL, int(media_id))
    held = fake.statuses if hasattr(fake, "statuses") else fake.tweets
    return [i for i, p in held.items() if link in p["text"]]


def test_no_credential_reaches_a_log_or_the_event_log(
        api: Api, fakes: Fakes, module_env: Env, pool: dict[str, Process]) -> None:
    """A service echoing the token in a 403 leaves "***" in the recorded error; no output
    of the service, the relay or any worker of this module, and no event payload, holds
    a token or secret in clear."""
    _, token = linked_user(api, fakes, "twitter")
    fakes.twitter.script("POST", "/2/tweets",
                         problem(403, "Forbidden", f"token {TWITTER_TOKEN} is suspended"))
    media_id = post(api, token, "twitter", "Echoed secret")
    found = wait_shares(api, token, media_id, {"twitter": "failed"})
    assert found["twitter"]["error"] == (
        "the credentials were refused: HTTP 403: token *** is suspended")
    outputs = {name: p.output.text() for name, p in pool.items()}
    outputs["api"] = api.service.output.text()
    assert "shareout: medium" in "".join(outputs.values())
    for name, text in outputs.items():
        for secret in SECRETS:
            assert secret not in text, f"{name} logged a credential"
    for db in module_env.router.databases():
        payloads = db.run_interaction("payloads", Txn.fetchall,
                                      "SELECT type, payload FROM events")
        for kind, payload in payloads:
            for secret in SECRETS:
                assert secret.encode() not in bytes(payload), f"{kind} holds a credential"
