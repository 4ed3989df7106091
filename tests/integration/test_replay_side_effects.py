"""Replay against the outside world (issues 6, 8 and 9): with the API service, the real
relay and worker pool sending to the local APNs, posting to the fake Mastodon and delivering
to an app's webhook receiver, ``shutterlog replay all`` sends no notification again, posts
no status again, delivers no update again, appends no event and schedules no push, share or
webhook task; the pool still sends what happens afterwards.

The push consumer's own safety net (its records of notified causes and sent notifications,
kept ``push.dedupe_ttl`` seconds) would hide a replay that ran it; here they are kept a few
seconds and the replay starts once they are gone, so such a replay would push again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from server.store.tasks import TaskStore
from tests.fakes.hub import FakeHub
from tests.helpers import Service, wait_for
from tests.integration.conftest import Env
from tests.integration.hookkit import created, subscribe
from tests.integration.mediakit import picture, upload
from tests.integration.push.flowkit import Flow, running_flow
from tests.integration.replaykit import LIVE, cli, log_size, settled
from tests.integration.shareout.conftest import (
    PUBLIC_URL,
    Fakes,
    link,
    running_fakes,
    wait_shares,
)

#: The API verifies the Mastodon token and the webhook callback on loopback.
SERVICE_ENV = {"SHUTTERLOG_OUTBOUND_ALLOW_HOSTS": "127.0.0.1",
               "SHUTTERLOG_HTTP_PUBLIC_URL": PUBLIC_URL}
#: The consumers that talk to the outside world, and the kinds of task they schedule.
SIDE_EFFECTS = ("push", "shareout", "webhooks")
KINDS = ("push", "share", "unshare", "webhook")
#: Long enough for a collapse window (3 s) to end and be sent, short to wait out.
DEDUPE_TTL = "8"


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    with running_fakes() as f:
        yield f


@pytest.fixture(scope="module")
def flow(module_env: Env, service: Service, fakes: Fakes,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flow]:
    """A relay and a worker pool sending to the local APNs and FCM, the fake Mastodon and
    loopback webhook receivers; the side-effect consumers started at the log's head."""
    settings = fakes.env() | {"SHUTTERLOG_PUSH_DEDUPE_TTL": DEDUPE_TTL}
    with running_flow(module_env, service, tmp_path_factory.mktemp("sides"), settings,
                      SIDE_EFFECTS) as f:
        yield f


def tasks(env: Env) -> dict[str, dict[str, int]]:
    """Tasks of each side-effect kind by state, over every database."""
    store, out = TaskStore(env.router), {}
    for kind in KINDS:
        total: dict[str, int] = {}
        for db in env.router.databases():
            for state, n in store.counts(db, kind).items():
                total[state] = total.get(state, 0) + n
        out[kind] = total
    return out


def quiet(env: Env) -> None:
    """Wait until every projection and side-effect consumer has applied the whole log and
    no push, share or webhook task is waiting or running. A task scheduled with a delay (a
    push waits out its collapse window) is pending until it has been sent, and a consumer
    set back would lag until it had scheduled its tasks again: both are waited for."""
    settled(env, (*LIVE, *SIDE_EFFECTS))
    wait_for(lambda: not any(s.get("pending") or s.get("running") for s in tasks(env).values()),
             30, "push, share and webhook tasks to finish")


def forgotten(env: Env) -> bool:
    """Whether the push records of notified causes and sent notifications have expired."""
    return not any(key for pattern in ("push:done:*", "push:sent:*")
                   for key in env.redis.scan_iter(pattern))


def outside(flow: Flow, fakes: Fakes, hub: FakeHub) -> dict[str, int]:
    """What each outside service has received so far."""
    return {"apns": len(flow.world.apns.received), "fcm": len(flow.world.fcm.sent),
            "mastodon": len(fakes.mastodon.requests),
            "mastodon statuses": sum(fakes.mastodon.created.values()),
            "twitter": len(fakes.twitter.requests), "graph": len(fakes.graph.requests),
            "share webhook": len(fakes.receiver.requests), "hub": len(hub.requests),
            "hub updates": len(hub.posts())}


def test_replay_all_sends_posts_and_delivers_nothing_again(
        flow: Flow, fakes: Fakes, module_env: Env) -> None:
    """A like pushed to an iPhone, a post shared to Mastodon and delivered to a tag
    subscription; replay all exits 0 and, once the pool is quiet again, every outside
    service has received exactly what it had, the log and the task table are unchanged;
    a like afterwards is still pushed (the pool was listening all along)."""
    env, api = module_env, flow.api
    a, b = flow.person(android=False), flow.person(ios=False, android=False)
    r = link(api, a.token, "mastodon", fakes.fields("mastodon"))
    assert r.status_code == 200, r.text
    app = api.create_app()
    with FakeHub(secret=app[1]) as hub:
        tag = f"replayed{a.id % 10**8}"
        sub = created(subscribe(api, app, hub, object="tag", object_id=tag))
        assert len(hub.received("GET", "/hook")) == 1  # the receiver answered the challenge
        r = upload(api, a.token, picture(), caption=f"Harbour at dawn #{tag}",
                   share_to="mastodon")
        assert r.status_code == 200, r.text
        media_id = str(r.json()["data"]["id"])
        share = wait_shares(api, a.token, media_id, {"mastodon": "posted"})["mastodon"]
        assert fakes.mastodon.statuses[share["remote_id"]]["text"].startswith("Harbour at dawn")
        flow.like(b, int(media_id))  # once rendered (and so shared): before, it is not found
        assert flow.wait_ios(a) == [f"{b.username} liked your photo"]
        wait_for(lambda: hub.of(sub["id"]) == [media_id], 30, "the tag subscription's update")
        quiet(env)
        wait_for(lambda: forgotten(env), 30, "the push dedupe records to expire")
        before, events, scheduled = outside(flow, fakes, hub), log_size(env), tasks(env)
        assert (before["apns"], before["mastodon statuses"], before["hub updates"]) == (1, 1, 1)
        assert {k: sum(v.values()) for k, v in scheduled.items()} == {
            "push": 1, "share": 1, "unshare": 0, "webhook": 1}

        run = cli(env, "all", "--json")
        assert run.returncode == 0, run.stdout + run.stderr
        assert log_size(env) == events  # nothing appended: no device, link or share event
        assert tasks(env) == scheduled
        quiet(env)
        assert outside(flow, fakes, hub) == before
        assert log_size(env) == events and tasks(env) == scheduled

        c = flow.person(android=False)
        flow.like(b, flow.medium(c))
        assert flow.wait_ios(c) == [f"{b.username} liked your photo"]
        quiet(env)
        after: dict[str, Any] = outside(flow, fakes, hub)
        assert after == before | {"apns": before["apns"] + 1}
        assert len(flow.apns(a)) == 1
