"""Webhook subscriptions end to end: the API service, the real relay, gearmand and worker
processes, and an app's receiver on loopback (``tests/fakes/hub.py``) that answers the
challenge and checks every signature. Loopback is allowed through ``outbound.allow_hosts``
here; one test runs a second service without it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg2
import pytest

from scripts.seed import account, ready_medium
from scripts.stack import free_port
from server.store import subscriptions
from server.store.consumers import ConsumerStore
from server.store.tasks import TaskStore
from server.store.tokens import Tokens, authorized_apps, digest, token_key
from tests.drive import drive
from tests.fakes.http import Reply
from tests.fakes.hub import FakeHub
from tests.fakes.trickle import Trickle, drip, endless_redirect, forever
from tests.helpers import Process, wait_for
from tests.integration.apiclient import Api, sign, start_service
from tests.integration.conftest import Env
from tests.integration.hookkit import (
    appended,
    created,
    deliver_all,
    new_app,
    subscribe,
    webhook_context,
    webhook_tasks,
)
from tests.integration.mediakit import picture, upload
from tests.integration.recording import running
from workers import handlers
from workers.consumers import CONSUMERS
from workers.handlers import webhooks
from workers.tasks import run_task

SETTINGS = {
    "SHUTTERLOG_OUTBOUND_ALLOW_HOSTS": "127.0.0.1",
    "SHUTTERLOG_OUTBOUND_TIMEOUT": "3",
    "SHUTTERLOG_WEBHOOKS_ATTEMPTS": "3",
    "SHUTTERLOG_WEBHOOKS_RETRY_DELAY": "0.05",
    "SHUTTERLOG_WEBHOOKS_RETRY_MAX_DELAY": "0.2",
}
SERVICE_ENV = SETTINGS | {"SHUTTERLOG_WEBHOOKS_MAX_SUBSCRIPTIONS": "5"}
CIRCLE = (48.8584, 2.2945, 500.0)  # lat, lng, radius in meters
FAR = (-33.8568, 151.2153)


@pytest.fixture(scope="module")
def pool(module_env: Env) -> Iterator[list[Process]]:
    with running(module_env.vars, SETTINGS) as procs:
        yield procs


@pytest.fixture
def app(api: Api) -> tuple[str, str]:
    """An app of the test's own (subscriptions are per app)."""
    return api.create_app()


@pytest.fixture
def hub(app: tuple[str, str]) -> Iterator[FakeHub]:
    with FakeHub(secret=app[1]) as receiver:
        yield receiver


def listed(api: Api, app: tuple[str, str]) -> list[dict[str, Any]]:
    r = api.http.get("/v1/subscriptions", params={"client_id": app[0], "client_secret": app[1]})
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def error(r: httpx.Response) -> tuple[int, str, str]:
    m = r.json()["meta"]
    return r.status_code, m["error_type"], m["error_message"]


def posted(api: Api, token: str, caption: str = "", place: tuple[float, float] | None = None,
           **fields: str) -> str:
    if place is not None:
        fields |= {"lat": str(place[0]), "lng": str(place[1])}
    r = upload(api, token, picture(), caption=caption, **fields)
    assert r.status_code == 200, r.text
    return str(r.json()["data"]["id"])


def idle(env: Env) -> bool:
    """Every medium posted is rendered, the webhooks consumer has applied every rendering
    and no delivery task is waiting. (The consumer reads MediaRendered only: right after an
    upload it has nothing to do until the rendering is appended, so caught up alone would
    hold before the new medium could have been matched.)"""
    handlers.load()
    if not ConsumerStore(env.router).caught_up(CONSUMERS.wanted("media_render", "webhooks")):
        return False
    tasks = TaskStore(env.router)
    return all(not (set(tasks.counts(db)) & {"pending", "running"})
               for db in env.router.databases())


def test_the_challenge_must_be_echoed(api: Api, app: tuple[str, str], hub: FakeHub) -> None:
    """A callback echoing hub.challenge gets the subscription (in the v1 shape); a wrong
    echo, a non-2xx answer and an unreachable callback are refused and create nothing."""
    sub = created(subscribe(api, app, hub, object="tag", object_id="NoFilter"))
    assert sub == {"id": sub["id"], "type": "subscription", "object": "tag",
                   "object_id": "nofilter", "aspect": "media", "callback_url": hub.hook_url,
                   "status": "active"}
    [check] = hub.received("GET", "/hook")
    assert check.query["hub.mode"] == ["subscribe"]
    assert check.query["hub.verify_token"] == [hub.verify_token]
    hub.echo = "wrong"
    assert error(subscribe(api, app, hub, object="tag", object_id="x")) == (
        400, "APISubscriptionError", "callback_url verification failed: the callback "
        "answered 'not-the-challenge' instead of echoing hub.challenge")
    hub.echo, hub.challenge_status = "right", 404
    assert "answered HTTP 404" in error(subscribe(api, app, hub, object="tag",
                                                  object_id="x"))[2]
    dead = f"http://127.0.0.1:{free_port()}/hook"
    code, kind, message = error(subscribe(api, app, hub, object="tag", object_id="x",
                                          callback_url=dead))
    assert (code, kind) == (400, "APISubscriptionError") and "cannot reach" in message
    assert [s["id"] for s in listed(api, app)] == [sub["id"]]


def test_a_dripping_callback_is_cut_off(api: Api, app: tuple[str, str], hub: FakeHub
                                        ) -> None:
    """A callback whose body, or whose status line and headers, trickle in (each byte well
    within the read timeout) is refused once outbound.timeout (3 s) has passed."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    for answer in (drip(head, forever()), drip(b"", head)):  # the head alone: 20 s
        with Trickle(answer) as slow:
            started = time.monotonic()
            r = subscribe(api, app, hub, object="tag", object_id="x", callback_url=slow.url)
            took = time.monotonic() - started
        assert error(r) == (400, "APISubscriptionError", "callback_url verification failed: "
                            "the callback did not answer in time")
        assert took < 5


def test_a_redirect_body_is_never_read(api: Api, app: tuple[str, str], hub: FakeHub) -> None:
    """A callback answering 302 (to itself) with an endless body is followed without reading
    that body: verification stops at outbound.max_redirects at once, and each connection
    took no more than the socket buffers hold of the 128 MiB the fake would send."""
    with Trickle(endless_redirect()) as loop:
        started = time.monotonic()
        r = subscribe(api, app, hub, object="tag", object_id="x", callback_url=loop.url)
        took = time.monotonic() - started
        with loop.lock:
            sent = list(loop.sent)
    assert error(r) == (400, "APISubscriptionError", "callback_url verification failed: "
                        "the callback redirected too many times")
    assert took < 3 and len(sent) == 6 and max(sent) < 32 << 20, (took, sent)


def test_bad_requests_get_precise_errors_and_change_nothing(
        api: Api, app: tuple[str, str], hub: FakeHub) -> None:
    """Unknown objects, missing or malformed fields (a callback URL with a control character
    among them), bad coordinates, unknown locations and users, ids beyond a bigint, and
    wrong credentials are refused with named 4xx errors before any callback is asked; an
    app that must sign its requests is refused without a valid sig and served with one."""
    cases: list[tuple[dict[str, str], int, str, str]] = [
        ({"object": "comment", "object_id": "x"}, 400, "APIInvalidParametersError",
         "object must be one of: user, tag, location, geography"),
        ({"object": "tag"}, 400, "APIInvalidParametersError", "object_id must be a tag name"),
        ({"object": "tag", "object_id": "no spaces"}, 400, "APIInvalidParametersError",
         "object_id must be a tag name"),
        ({"object": "tag", "object_id": "x", "aspect": "likes"}, 400,
         "APIInvalidParametersError", "aspect must be one of: media"),
        ({"object": "location", "object_id": "12a"}, 400, "APIInvalidParametersError",
         "object_id must be a location id"),
        ({"object": "location", "object_id": "123"}, 400, "APIInvalidParametersError",
         "object_id: no location 123"),
        ({"object": "geography", "lng": "2"}, 400, "APIInvalidParametersError",
         "lat is required for object=geography"),
        ({"object": "geography", "lat": "nan", "lng": "2"}, 400, "APIInvalidParametersError",
         "lat must be a latitude in degrees between -90 and 90, got 'nan'"),
        ({"object": "geography", "lat": "1", "lng": "181"}, 400, "APIInvalidParametersError",
         "lng must be a longitude in degrees between -180 and 180, got '181'"),
        ({"object": "geography", "lat": "1", "lng": "2", "radius": "6000"}, 400,
         "APIInvalidParametersError", "radius must be a distance in meters above 0 and at "
         "most 5,000, got '6000'"),
        ({"object": "tag", "object_id": "x", "lat": "1"}, 400, "APIInvalidParametersError",
         "lat, lng and radius are for object=geography only"),
        ({"object": "tag", "object_id": "x", "callback_url": "ftp://example.com/"}, 400,
         "APIInvalidParametersError", "callback_url: "),
        ({"object": "tag", "object_id": "x", "callback_url": ""}, 400,
         "APIInvalidParametersError", "callback_url: "),
        ({"object": "tag", "object_id": "x", "callback_url": hub.hook_url + "\x01"}, 400,
         "APIInvalidParametersError", "callback_url: not a valid URL: Invalid non-printable"),
        ({"object": "tag", "object_id": "x", "client_secret": "nope"}, 400,
         "OAuthClientException", "Invalid client_secret"),
        ({"object": "tag", "object_id": "x", "client_id": "nope"}, 400,
         "OAuthClientException", "Invalid client_id"),
    ]
    user_id = int(api.user()[0]["id"])  # an id next to it is well formed but nobody's
    cases += [({"object": "user", "object_id": str(user_id + 1)}, 400,
               "APIInvalidParametersError", f"object_id: no user {user_id + 1}"),
              ({"object": "user", "object_id": str(2**63)}, 400, "APIInvalidParametersError",
               "object_id must be a user id (digits, at most 9223372036854775807)")]
    for fields, code, kind, needle in cases:
        got = error(subscribe(api, app, hub, **fields))
        assert got[:2] == (code, kind) and needle in got[2], (fields, got)
    r = api.http.post("/v1/subscriptions", data={"client_id": app[0], "object": "tag"})
    assert error(r) == (400, "APIInvalidParametersError", "client_secret is required")
    bad = api.http.get("/v1/subscriptions", params={"client_id": app[0],
                                                     "client_secret": "x" * 32})
    assert error(bad) == (400, "OAuthClientException", "Invalid client_secret")
    assert hub.requests == [] and listed(api, app) == []
    beyond = api.http.get(f"/v1/geographies/{2**63}/media/recent",
                          params={"client_id": app[0]})
    assert error(beyond)[:2] == (404, "APINotFoundError")
    signed = api.create_app(require_signed=True)
    form = {"client_id": signed[0], "client_secret": signed[1], "object": "tag",
            "object_id": "x", "aspect": "media", "callback_url": hub.hook_url,
            "verify_token": hub.verify_token}
    assert error(api.http.post("/v1/subscriptions", data=form)) == (
        403, "OAuthForbiddenException", "Invalid signed-request: Missing required parameter 'sig'")
    r = api.http.post("/v1/subscriptions", data=form | {"sig": "0" * 64})
    assert error(r)[:2] == (403, "OAuthForbiddenException")
    r = api.http.post("/v1/subscriptions",
                      data=form | {"sig": sign("/v1/subscriptions", form, signed[1])})
    assert r.status_code == 200, r.text


def test_private_addresses_are_refused(api: Api, app: tuple[str, str], module_env: Env
                                       ) -> None:
    """The metadata address is refused outright, a redirect from an allowed host to another
    loopback address is refused at that hop; without the operator's allow-list, 127.0.0.1
    and a name resolving to it are refused before any request is made."""
    r = api.http.post("/v1/subscriptions", data={
        "client_id": app[0], "client_secret": app[1], "object": "tag", "object_id": "x",
        "aspect": "media", "callback_url": "http://169.254.169.254/latest/meta-data/"})
    code, kind, message = error(r)
    assert (code, kind) == (400, "APIInvalidParametersError") and "cloud metadata" in message
    with FakeHub(app[1]) as start, FakeHub(app[1], host="127.0.0.2") as inside:
        start.script("GET", "/hook", Reply(302, headers={"Location": inside.hook_url}))
        code, kind, message = error(subscribe(api, app, start, object="tag", object_id="x"))
        assert (code, kind) == (400, "APISubscriptionError") and "loopback" in message
        assert len(start.requests) == 1 and inside.requests == []
    strict = start_service(module_env, SHUTTERLOG_OUTBOUND_ALLOW_HOSTS="")
    try:
        with FakeHub(app[1]) as hub:
            for url in (hub.hook_url, f"http://localhost:{hub.port}/hook"):
                r = strict.client.post("/v1/subscriptions", data={
                    "client_id": app[0], "client_secret": app[1], "object": "tag",
                    "object_id": "x", "aspect": "media", "callback_url": url,
                    "verify_token": hub.verify_token})
                code, kind, message = error(r)
                assert (code, kind) == (400, "APIInvalidParametersError"), r.text
                assert "loopback addresses are refused" in message
            assert hub.requests == []
    finally:
        strict.stop()
    assert listed(api, app) == []


def test_each_kind_of_subscription_gets_its_media_signed(
        api: Api, app: tuple[str, str], hub: FakeHub, pool: list[Process]) -> None:
    """Tag, location, geography and user subscriptions each receive exactly their media,
    in signed batches the receiver verifies; a private account's tagged medium in the circle
    reaches no tag or geography subscription (only the user subscription: the account
    authorized the app), and a medium matching nothing reaches none."""
    (public, tp), (authorizer, _), (private, _) = (
        api.user(), api.user(), api.user(is_private="true"))
    api.token(authorizer["username"], app=app)
    tv = api.token(private["username"], app=app)
    tag = f"hook{public['id'][-8:]}"
    place = posted(api, tp, place=FAR, location_name=f"Quay {tag}")
    wait_for(lambda: api.get(f"/v1/locations/{place}", tp).status_code == 200, 30,
             "the location recorded")
    subs = {
        "tag": created(subscribe(api, app, hub, object="tag", object_id=tag)),
        "location": created(subscribe(api, app, hub, object="location", object_id=place)),
        "geography": created(subscribe(api, app, hub, object="geography",
                                       lat=str(CIRCLE[0]), lng=str(CIRCLE[1]),
                                       radius=str(CIRCLE[2]))),
        "user": created(subscribe(api, app, hub, object="user")),
    }
    geo_sub = subs["geography"]
    assert geo_sub["object_id"] == geo_sub["id"] and geo_sub["radius"] == CIRCLE[2]
    media = {
        "tag": posted(api, tp, f"sunset #{tag}"),
        "location": posted(api, tp, place=FAR, location_id=place),
        "geography": posted(api, tp, place=(CIRCLE[0] + 0.001, CIRCLE[1])),
        "user": posted(api, api.token(authorizer["username"], app=app)),
    }
    posted(api, tp, "nothing to see", place=(CIRCLE[0] + 0.01, CIRCLE[1]))  # 1.1 km out
    secret = posted(api, tv, f"secret #{tag}", place=CIRCLE[:2])
    expected = {k: [m] for k, m in media.items()} | {
        "user": sorted([media["user"], secret])}
    wait_for(lambda: all(hub.of(s["id"]) == expected[k] for k, s in subs.items()), 60,
             "every subscription's updates")
    wait_for(lambda: idle(api.env), 60, "every delivery done")
    assert {k: hub.of(s["id"]) for k, s in subs.items()} == expected
    assert len(hub.updates) == 5 and all(r.header("X-Hub-Signature") for r in hub.posts())
    one = next(u for u in hub.updates.values() if u["data"]["media_id"] == media["user"])
    assert one == {"id": one["id"], "subscription_id": subs["user"]["id"], "object": "user",
                   "object_id": authorizer["id"], "changed_aspect": "media",
                   "time": one["time"], "data": {"media_id": media["user"]}}
    assert isinstance(one["time"], int)

    def recent() -> list[str]:
        r = api.http.get(f"/v1/geographies/{geo_sub['id']}/media/recent",
                         params={"client_id": app[0]})
        assert r.status_code == 200, r.text
        return [m["id"] for m in r.json()["data"]]

    wait_for(lambda: recent() == [media["geography"]], 30, "the geography's recent media")
    other = api.create_app()
    r = api.http.get(f"/v1/geographies/{geo_sub['id']}/media/recent",
                     params={"client_id": other[0]})
    assert error(r)[:2] == (404, "APINotFoundError")


def test_a_500_is_retried_and_the_same_update_arrives(
        api: Api, app: tuple[str, str], hub: FakeHub, pool: list[Process]) -> None:
    """The callback answers 500 once: the same signed body comes again and is accepted."""
    (_, token) = api.user()
    tag = f"retry{app[0][:8]}"
    sub = created(subscribe(api, app, hub, object="tag", object_id=tag))
    hub.script("POST", "/hook", Reply(500, {"error": "busy"}))
    m = posted(api, token, f"#{tag}")
    wait_for(lambda: hub.of(sub["id"]) == [m], 60, "the update after a retry")
    first, second = hub.posts()
    assert first.body == second.body
    assert first.header("X-Hub-Signature") == second.header("X-Hub-Signature")
    assert listed(api, app)[0]["status"] == "active"


def test_a_callback_that_does_not_answer_in_time_is_retried(
        api: Api, app: tuple[str, str], hub: FakeHub, pool: list[Process]) -> None:
    """A POST the callback leaves unanswered past outbound.timeout is sent again."""
    (_, token) = api.user()
    tag = f"slow{app[0][:8]}"
    sub = created(subscribe(api, app, hub, object="tag", object_id=tag))
    hub.stalls = 1
    try:
        m = posted(api, token, f"#{tag}")
        wait_for(lambda: hub.of(sub["id"]) == [m], 60, "the update after a timeout")
    finally:
        hub.release.set()
    first, second = hub.posts()
    assert first.body == second.body and listed(api, app)[0]["status"] == "active"


def test_a_callback_that_keeps_failing_is_disabled(
        api: Api, app: tuple[str, str], hub: FakeHub, pool: list[Process]) -> None:
    """After webhooks.attempts answers of 503 the subscription is disabled and GET says why;
    a 410 disables at once; later media are not sent to a disabled subscription."""
    (_, token) = api.user()
    tag = f"fail{app[0][:8]}"
    sub = created(subscribe(api, app, hub, object="tag", object_id=tag))
    hub.script("POST", "/hook", *[Reply(503)] * 3)
    posted(api, token, f"#{tag}")

    def disabled() -> dict[str, Any] | None:
        found = [s for s in listed(api, app) if s["id"] == sub["id"]]
        return found[0] if found and found[0]["status"] == "disabled" else None

    shown = wait_for(disabled, 60, "the subscription disabled")
    assert shown is not None
    assert shown["disabled_reason"] == (
        "webhook delivery failed for good: the callback answered HTTP 503")
    assert int(shown["disabled_time"]) > 0
    assert len(hub.posts()) == 3
    posted(api, token, f"again #{tag}")
    wait_for(lambda: idle(api.env), 60, "every delivery done")
    assert len(hub.posts()) == 3

    gone = created(subscribe(api, app, hub, object="tag", object_id=f"{tag}b"))
    hub.script("POST", "/hook", Reply(410))
    posted(api, token, f"#{tag}b")
    wait_for(lambda: any(s["id"] == gone["id"] and s["status"] == "disabled"
                         for s in listed(api, app)), 60, "disabled after a 410")
    assert len(hub.posts()) == 4


def test_delete_by_id_by_object_and_all(api: Api, app: tuple[str, str], hub: FakeHub
                                        ) -> None:
    """DELETE removes one subscription by id, every one of a kind, or all of them; an
    unknown id is 404 and id with object (or neither) is 400. An app holds at most
    webhooks.max_subscriptions."""
    ids = [created(subscribe(api, app, hub, object="tag", object_id=t))["id"]
           for t in ("one", "two", "three", "four")]
    geo = created(subscribe(api, app, hub, object="geography", lat="1", lng="2"))["id"]
    assert error(subscribe(api, app, hub, object="tag", object_id="six")) == (
        400, "APISubscriptionError", "an app may hold at most 5 subscriptions; delete some first")
    keys = {"client_id": app[0], "client_secret": app[1]}

    def delete(**params: str) -> httpx.Response:
        return api.http.delete("/v1/subscriptions", params=keys | params)

    r = delete(id=ids[0])
    assert r.status_code == 200 and r.json() == {"meta": {"code": 200}, "data": None}
    assert [s["id"] for s in listed(api, app)] == [*ids[1:], geo]
    assert error(delete(id=ids[0]))[:2] == (404, "APINotFoundError")
    assert error(delete(id=ids[1], object="tag"))[:2] == (400, "APIInvalidParametersError")
    assert error(delete())[:2] == (400, "APIInvalidParametersError")
    assert error(delete(object="comment"))[:2] == (400, "APIInvalidParametersError")
    created(subscribe(api, app, hub, object="tag", object_id="five"))
    assert delete(object="tag").status_code == 200
    assert [s["id"] for s in listed(api, app)] == [geo]
    assert delete(object="all").status_code == 200
    assert listed(api, app) == []
    assert error(api.http.delete("/v1/subscriptions", params={**keys, "client_secret": "x",
                                                              "object": "all"}))[1] == \
        "OAuthClientException"


def test_concurrent_subscriptions_respect_the_limit(api: Api, app: tuple[str, str],
                                                    module_env: Env) -> None:
    """With webhooks.max_subscriptions at 1, three POSTs whose verifications are all in
    flight at once (the callback answers none before all three asked) create exactly one
    subscription; the other two get the limit's error."""
    limited = start_service(module_env, **SETTINGS, SHUTTERLOG_WEBHOOKS_MAX_SUBSCRIPTIONS="1")
    together = threading.Barrier(3, timeout=20)
    answers: dict[int, httpx.Response] = {}
    try:
        with FakeHub(app[1]) as hub:
            hub.route("GET", "/gated", lambda r: (together.wait(), hub.challenge(r))[1])
            form = {"client_id": app[0], "client_secret": app[1], "aspect": "media",
                    "object": "tag", "callback_url": f"{hub.url}/gated",
                    "verify_token": hub.verify_token}

            def post(i: int) -> None:
                answers[i] = limited.client.post("/v1/subscriptions",
                                                 data=form | {"object_id": f"race{i}"})

            threads = [threading.Thread(target=post, args=(i,)) for i in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
    finally:
        limited.stop()
    assert sorted(r.status_code for r in answers.values()) == [200, 400, 400]
    assert [error(r) for r in answers.values() if r.status_code == 400] == [(
        400, "APISubscriptionError", "an app may hold at most 1 subscriptions; delete some "
        "first")] * 2
    assert len(listed(api, app)) == 1


def test_a_batch_applied_twice_redelivers_the_same_update_id(env: Env) -> None:
    """The consumer applying a batch again (a crash before its checkpoint) delivers the
    update again with the same id and signature: the receiver keeps it once."""
    client_id, secret = new_app(env, "Hooks")
    owner = account(env.store, env.router, Api.name())
    with FakeHub(secret) as hub:
        sub_id = appended(env, client_id, hub.hook_url, "tag", "again")
        media_id = ready_medium(env.store, env.router, owner, "once #again")
        drive(env, "webhooks")
        drive(env, "webhooks")  # from the origin again: what a crash before a checkpoint does
        assert deliver_all(env) == ["done", "done"]
        first, second = hub.posts()
        assert first.body == second.body and hub.repeats == 1
        [only] = hub.updates.values()
        assert only["id"].startswith(f"{sub_id}-") and only["data"] == {"media_id": str(media_id)}


def test_only_a_callback_failure_disables_a_subscription(env: Env) -> None:
    """A delivery that fails for a reason of ours (here a wrong secrets.key: the app's secret
    cannot be opened) fails its task but leaves the subscription active with no reason shown;
    the give-up hook ignores a database error (whose text names an address), and only a
    failure of the callback disables, with the callback's words."""
    client_id, secret = new_app(env, "Ours")
    owner = account(env.store, env.router, Api.name())
    with FakeHub(secret) as hub:
        sub_id = appended(env, client_id, hub.hook_url, "tag", "ours")
        ready_medium(env.store, env.router, owner, "#ours")
        drive(env, "webhooks")
        ctx = webhook_context(env, SHUTTERLOG_WEBHOOKS_ATTEMPTS="1",
                              SHUTTERLOG_SECRETS_KEY="not-the-key")
        [task] = webhook_tasks(env)
        try:
            assert run_task(ctx, task) == "failed"
            payload = {"client_id": client_id, "url": hub.hook_url,
                       "updates": [{"subscription_id": str(sub_id)}]}
            webhooks.disable(ctx, payload, psycopg2.OperationalError(
                'connection to server at "10.1.2.3", port 5432 failed'))
            kept = subscriptions.get(env.router, sub_id)
            assert kept is not None and (kept.status, kept.reason) == ("active", "")
            assert hub.posts() == []
            webhooks.disable(ctx, payload, webhooks.DeliveryFailed(
                "the callback answered HTTP 503"))
            gone = subscriptions.get(env.router, sub_id)
            assert gone is not None and (gone.status, gone.reason) == (
                "disabled", "webhook delivery failed for good: the callback answered HTTP 503")
        finally:
            ctx.close()


def test_authorized_apps_are_those_with_a_live_token(module_env: Env) -> None:
    """A user authorized the apps they hold a live token of: a revoked token, or one whose
    key expired, no longer counts."""
    tokens = Tokens(module_env.redis, token_ttl=3600, code_ttl=60, session_ttl=60)
    expired = tokens.issue(901, "app-a", "basic", False)
    tokens.issue(901, "app-b", "basic", False)
    revoked = tokens.issue(901, "app-c", "basic", False)
    tokens.issue(902, "app-b", "basic", False)
    assert tokens.revoke(revoked)
    module_env.redis.delete(token_key(digest(expired)))  # what expiry does to the key
    assert authorized_apps(module_env.redis, [901, 902, 903]) == {
        901: frozenset({"app-b"}), 902: frozenset({"app-b"}), 903: frozenset()}
