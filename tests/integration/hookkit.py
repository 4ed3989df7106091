"""What the webhook subscription tests share: subscribing an app's receiver
(``tests/fakes/hub.py``) through the API and reading the subscription created; for tests
that drive the consumer without the service, an app, a subscription made by its event
alone, and running the delivery tasks."""

from __future__ import annotations

from typing import Any

import httpx

from server import catalog
from server.config import load
from server.db import Txn
from server.domain.log import NewEvent
from server.domain.oauth import app_shard
from server.domain.subscriptions import SubscriptionCreated, subscription_stream
from server.store.accounts import new_id
from tests.fakes.hub import FakeHub
from tests.integration.apiclient import Api, create_app
from tests.integration.conftest import Env
from workers.context import WorkerContext
from workers.tasks import run_task


def subscribe(api: Api, app: tuple[str, str], hub: FakeHub, **fields: Any) -> httpx.Response:
    """POST /v1/subscriptions for ``app`` with ``hub`` as the callback (which the service
    verifies by its challenge before creating anything)."""
    form = {"client_id": app[0], "client_secret": app[1], "aspect": "media",
            "callback_url": hub.hook_url, "verify_token": hub.verify_token} | fields
    return api.http.post("/v1/subscriptions", data=form)


def created(r: httpx.Response) -> dict[str, Any]:
    """The subscription a successful POST created."""
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def appended(env: Env, client_id: str, callback_url: str, kind: str,
             object_id: str | None = None, circle: tuple[float, float, float] | None = None,
             shard: int | None = None) -> int:
    """The id of a subscription created by appending its ``SubscriptionCreated`` (no
    challenge, no limit), in the app's shard unless ``shard`` names another; ``circle``: a
    geography's (lat, lng, radius in meters)."""
    catalog.load()  # the inline projection writes the row
    if shard is None:
        shard = app_shard(client_id, env.router.count)
    sub_id = env.router.database(shard).run_interaction("id", new_id, shard)
    lat, lng, radius = circle if circle is not None else (None, None, None)
    env.store.append(shard, subscription_stream(sub_id), [NewEvent(SubscriptionCreated(
        subscription_id=sub_id, client_id=client_id, object=kind, object_id=object_id,
        lat=lat, lng=lng, radius_m=radius, callback_url=callback_url))], expected_version=0)
    return int(sub_id)


def new_app(env: Env, name: str) -> tuple[str, str]:
    """An app's (client id, client secret), for a test without a service."""
    catalog.load()  # the inline projections, as every process of ours loads them
    return create_app(env, name=name)


def webhook_context(env: Env, **settings: str) -> WorkerContext:
    """A worker's context that may call back to loopback (the receivers), with ``settings``
    (``SHUTTERLOG_...`` variables) on top; the caller closes it."""
    config = load(env=env.vars | {"SHUTTERLOG_OUTBOUND_ALLOW_HOSTS": "127.0.0.1"} | settings,
                  search_default=False)
    return WorkerContext(config, env.router, env.store, env.redis)


def webhook_tasks(env: Env) -> list[int]:
    """The ids of every ``webhook`` task, oldest first per database."""
    return [r[0] for db in env.router.databases() for r in db.run_interaction(
        "tasks", Txn.fetchall, "SELECT id FROM tasks WHERE kind = 'webhook' ORDER BY id")]


def deliver_all(env: Env) -> list[str]:
    """Run every ``webhook`` task once, in a worker's context; their outcomes (a task run
    before answers ``busy``)."""
    ctx = webhook_context(env)
    try:
        return [run_task(ctx, t) for t in webhook_tasks(env)]
    finally:
        ctx.close()
