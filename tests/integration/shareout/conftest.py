"""Share-out through our real processes: the fake Mastodon, X, Graph and webhook receiver
running for a test module, the API service (and, for the live tests, the relay and the
worker pool) pointed at them, and helpers to link accounts and read shares."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.fakes.facebook import FakeGraph
from tests.fakes.mastodon import FakeMastodon
from tests.fakes.twitter import FakeTwitter
from tests.fakes.webhook import FakeReceiver
from tests.helpers import Process, Service, wait_for
from tests.integration.apiclient import Api, start_service
from tests.integration.conftest import Env
from tests.integration.recording import relay, workers

MASTODON_TOKEN = "mastodon-token-7c1d2e9f"
TWITTER_TOKEN = "x-user-token-4b8a1f0e"
PAGE_ID, PAGE_TOKEN = "1234567890", "page-token-92ce5d13"
WEBHOOK_SECRET = "hook-secret-0123456789abcdef"
SECRETS = (MASTODON_TOKEN, TWITTER_TOKEN, PAGE_TOKEN, WEBHOOK_SECRET)
PUBLIC_URL = "https://photos.example"


@dataclass
class Fakes:
    """The four services, running."""

    mastodon: FakeMastodon
    twitter: FakeTwitter
    graph: FakeGraph
    receiver: FakeReceiver

    def env(self) -> dict[str, str]:
        """Settings pointing our processes at them (loopback allowed, fast retries)."""
        return {
            "SHUTTERLOG_OUTBOUND_ALLOW_HOSTS": "127.0.0.1",
            "SHUTTERLOG_SHAREOUT_TWITTER_API_URL": self.twitter.url,
            "SHUTTERLOG_SHAREOUT_FACEBOOK_GRAPH_URL": self.graph.base,
            "SHUTTERLOG_SHAREOUT_RETRY_BASE": "0.2",
            "SHUTTERLOG_SHAREOUT_MEDIA_POLL_SECONDS": "10",
            "SHUTTERLOG_HTTP_PUBLIC_URL": PUBLIC_URL,
            "SHUTTERLOG_WORKERS_TASK_LEASE": "3",
        }

    def fields(self, service: str) -> dict[str, str]:
        """The link request's fields for ``service``."""
        return {
            "mastodon": {"token": MASTODON_TOKEN, "instance_url": self.mastodon.url},
            "twitter": {"token": TWITTER_TOKEN},
            "facebook": {"token": PAGE_TOKEN, "page_id": PAGE_ID},
            "webhook": {"url": self.receiver.hook_url, "secret": WEBHOOK_SECRET},
        }[service]


@contextmanager
def running_fakes() -> Iterator[Fakes]:
    """The four services running for the block."""
    with ExitStack() as stack:
        yield Fakes(
            stack.enter_context(FakeMastodon(MASTODON_TOKEN, processing_polls=1)),
            stack.enter_context(FakeTwitter(TWITTER_TOKEN)),
            stack.enter_context(FakeGraph(PAGE_ID, PAGE_TOKEN)),
            stack.enter_context(FakeReceiver(WEBHOOK_SECRET)),
        )


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    with running_fakes() as f:
        yield f


@pytest.fixture(scope="module")
def service(module_env: Env, fakes: Fakes) -> Iterator[Service]:
    """The API service of the module, pointed at the fakes."""
    svc = start_service(module_env, **fakes.env())
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def pool(module_env: Env, fakes: Fakes) -> Iterator[dict[str, Process]]:
    """The relay and a worker pool, pointed at the fakes (a test may replace the workers)."""
    procs = {"relay": relay(module_env.vars, **fakes.env()),
             "workers": start_workers(module_env, fakes)}
    try:
        yield procs
    finally:
        for p in procs.values():
            if p.alive():
                p.stop()


def start_workers(env: Env, fakes: Fakes) -> Process:
    return workers(env.vars, concurrency=8, **fakes.env())


def link(api: Api, token: str | None, service: str, fields: dict[str, str]) -> httpx.Response:
    """POST a link (the remote token travels as the body field ``token``)."""
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    return api.http.post("/v1/users/self/linked_accounts", headers=auth,
                         data={"service": service} | fields)


def linked_user(api: Api, fakes: Fakes, *services: str) -> tuple[dict[str, Any], str]:
    """A new user with ``services`` linked."""
    user, token = api.user()
    for service in services:
        r = link(api, token, service, fakes.fields(service))
        assert r.status_code == 200, r.text
    return user, token


def shares(api: Api, token: str, media_id: str) -> dict[str, dict[str, Any]]:
    """The medium's shares as its owner sees them, by service."""
    r = api.get(f"/v1/media/{media_id}", token)
    assert r.status_code == 200, r.text
    return {s["service"]: s for s in r.json()["data"]["shares"]}


def wait_shares(api: Api, token: str, media_id: str, states: dict[str, str],
                timeout: float = 40) -> dict[str, dict[str, Any]]:
    """Wait until the medium's shares are in ``states`` (service -> state)."""
    def done() -> dict[str, dict[str, Any]]:
        found = shares(api, token, media_id)
        return found if {s: v["state"] for s, v in found.items()} == states else {}

    return wait_for(done, timeout, f"shares {states}")
