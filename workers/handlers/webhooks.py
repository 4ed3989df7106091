"""The ``webhooks`` consumer and its delivery tasks: new media to the apps subscribed to them.

The consumer takes ``MediaRendered`` (a medium is new to the world when it is ready), reads
the media rows first (owner privacy, tags, location, place; one query per database) and,
when one is ready, only the active subscriptions they could match
(``server.domain.subscriptions.lookup``; one query per database): user subscriptions naming
an owner or no one, tag and location subscriptions of the public media's tags and locations,
and geographies whose centre lies in a bounding box of ``MAX_DISTANCE_M`` around a public
medium's place. When a user subscription is among them it reads the apps each owner holds a
live token of (two Redis round trips); then it matches
(``server.domain.subscriptions.matches``). Subscriptions are read for every batch, nothing
cached, so a new one gets the next media; a subscription gets media rendered at or after
its creation. The updates are grouped per (app, callback URL), at most
``webhooks.max_updates`` per POST, and each group becomes a durable ``webhook`` task
(``workers/tasks.py``): the consumer never waits for a callback, so a slow or dead receiver
holds no shard back.

A task re-reads its subscriptions (updates of deleted or disabled ones are dropped), signs
the JSON array with the app's client secret (``X-Hub-Signature``, HMAC-SHA1) and POSTs it
through the outbound-safe client (``ctx.outbound``). 5xx, 408, 429, timeouts and lost
connections are retried with exponential backoff (``webhooks.retry_delay`` doubling up to
``webhooks.retry_max_delay``, ``webhooks.attempts`` tries); a delivery that exhausts them,
or that the callback refuses for good (another 4xx, a redirect, a refused address), disables
its subscriptions with the reason (``SubscriptionDisabled``); a task that fails for a reason
of ours (a database or Redis outage, a wrong secrets key) disables nothing: it is logged and
marked failed for the operator. Delivery is at least once: a
re-applied batch or a worker dying after the POST sends an update again, with the same ``id``.

A side effect (callbacks are the outside world): replay never runs it, and a new deployment
starts at the log's head. Policy SKIP: an event it cannot handle is parked (``shutterlog
status``) and the other apps' deliveries on its shard go on.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import replace
from typing import Any

from server import callbacks
from server.config import Config
from server.db import Txn
from server.domain.events import Event
from server.domain.ids import shard_of
from server.domain.log import RecordedEvent
from server.domain.media import MediaRendered, State
from server.domain.subscriptions import (
    DELIVERED,
    REFUSED,
    NewMedium,
    SubscriptionDisabled,
    body,
    hub_signature,
    lookup,
    matches,
    subscription_stream,
    update,
)
from server.secretbox import SecretBox
from server.store import apps, media
from server.store import subscriptions as store
from server.store.apps import PURPOSE
from server.store.events import append_latest_txn
from server.store.tokens import authorized_apps
from workers.consumers import OnFailure, consumer
from workers.context import WorkerContext
from workers.tasks import TaskRefused, backoff, submit_tasks, task_handler

log = logging.getLogger(__name__)
KIND = "webhook"


@consumer("webhooks", "MediaRendered", batch_size=500, from_head=True, side_effect=True,
          on_failure=OnFailure.SKIP)
def webhooks(ctx: WorkerContext, events: list[RecordedEvent]) -> None:
    rendered = [(e, e.data) for e in events if isinstance(e.data, MediaRendered)]
    rows = media.hydrate(ctx.router, [d.media_id for _, d in rendered], 0)
    ready = {i: NewMedium(m.id, m.owner_id, m.owner_private, m.tags, m.location_id, m.lat,
                          m.lng) for i, m in rows.items() if m.state is State.READY}
    subs = store.candidates(ctx.router, lookup(ready.values())) if ready else []
    if not subs:
        return
    if any(s.object == "user" for s in subs):
        tokens = authorized_apps(ctx.redis, {m.owner for m in ready.values()})
        ready = {i: replace(m, owner_apps=tokens.get(m.owner, frozenset()))
                 for i, m in ready.items()}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for e, d in rendered:
        m = ready.get(d.media_id)
        if m is None:
            continue
        for s in subs:
            if s.created_ms <= e.created_ms and matches(s, m):
                groups[(s.client_id, s.callback_url)].append(update(s, m, e.id, e.created_ms))
    size = ctx.config.webhooks.max_updates
    payloads = [{"client_id": client_id, "url": url, "updates": updates[i:i + size]}
                for (client_id, url), updates in sorted(groups.items())
                for i in range(0, len(updates), size)]
    submit_tasks(ctx, KIND, payloads, shard=events[0].shard)


class DeliveryFailed(Exception):
    """A delivery worth another try (5xx, 408, 429, timeout, lost connection)."""


class DeliveryRefused(TaskRefused):
    """A delivery the callback refused for good (a redirect, another 4xx, a refused address)."""


#: What a callback did: the only failures that disable its subscriptions.
CALLBACK_FAILURES = (DeliveryFailed, DeliveryRefused)


def schedule(config: Config, attempt: int) -> float | None:
    """``webhooks.attempts`` tries, ``webhooks.retry_delay`` doubling between them."""
    w = config.webhooks
    return backoff(attempt, w.attempts, w.retry_delay, w.retry_max_delay)


def disable(ctx: WorkerContext, payload: dict[str, Any], error: Exception) -> None:
    """Disable the subscriptions of a delivery the callback failed for good (those still
    active), with the reason their app sees: only what the callback did. A failure of ours
    (database, Redis, the secrets key) disables nothing and shows nothing to the app: it is
    logged, and the task is marked failed for the operator (``shutterlog status``)."""
    if not isinstance(error, CALLBACK_FAILURES):
        log.error("webhook delivery to %s for app %s given up on an internal error, "
                  "subscriptions left active: %s", payload["url"], payload["client_id"],
                  type(error).__name__)
        return
    reason = f"webhook delivery failed for good: {error}"[:500]
    for sub_id in sorted({int(u["subscription_id"]) for u in payload["updates"]}):
        shard = shard_of(sub_id)

        def txn_fn(txn: Txn, sub_id: int = sub_id, shard: int = shard) -> bool:
            def decide() -> list[Event]:
                held = store.of_app_txn(txn, shard, payload["client_id"])
                if not any(s.id == sub_id and s.status == "active" for s in held):
                    return []
                return [SubscriptionDisabled(subscription_id=sub_id,
                                             client_id=payload["client_id"], reason=reason)]

            # deleted by its app at this moment: the transaction runs again and looks again
            return append_latest_txn(txn, ctx.store, shard, subscription_stream(sub_id),
                                     decide) is not None

        if ctx.router.database(shard).run_interaction("disable_subscription", txn_fn):
            log.warning("webhook subscription %d disabled: %s", sub_id, reason)


@task_handler(KIND, schedule=schedule, give_up=disable)
def deliver(ctx: WorkerContext, payload: dict[str, Any]) -> None:
    """POST one batch of updates (those whose subscription is still active)."""
    subs = store.by_ids(ctx.router, [int(u["subscription_id"]) for u in payload["updates"]])
    live = [u for u in payload["updates"]
            if (s := subs.get(int(u["subscription_id"]))) is not None and s.status == "active"]
    app = apps.get(ctx.router, payload["client_id"])
    if not live or app is None or app.revoked:
        return
    raw = body(live)
    secret = app.secret(SecretBox(ctx.config.secrets.key, PURPOSE))
    outcome, detail = callbacks.deliver(ctx.outbound, payload["url"], raw,
                                        hub_signature(secret, raw))
    ids = sorted({u["subscription_id"] for u in live})
    if outcome == DELIVERED:
        log.info("webhook: %d updates delivered for subscriptions %s", len(live), ids)
        return
    if outcome == REFUSED:
        raise DeliveryRefused(detail)
    raise DeliveryFailed(detail)
