"""The ``push`` consumer and the ``push`` task: from the log to APNs and FCM.

The consumer (a side effect: replay never runs it) turns likes, comments, mentions, follows,
follow requests and approvals into causes (``server.domain.notifications.plan``) and adds
them to their recipient's collapse group in Redis (``server.store.pushes``). The first cause
of a group opens a window of ``push.collapse_window`` seconds, counted from its event, and
schedules one durable task due when the window ends. That task takes the window's causes,
checks them against the state of that moment (kinds switched off, blocked actors, likes taken
back, deleted comments and media, follows undone), applies the user's rate cap, and sends one
notification per device of the recipient, with the group's collapse id.

Each notification's id is derived from the recipient, the group and the event that opened
the window, and is claimed in Redis before it is sent (``push:sent:{id}``), so a task run
again (a worker killed mid-send, a redone batch) never sends it twice; the price is that a
send cut off between the claim and the request is lost, not repeated. Results: delivered and
failed are recorded in the claim; unregistered appends ``DeviceUnregistered`` (unless the
token was registered again after the service's timestamp); retry-later releases the claim
and has the task retried, not before the service's delay.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

import gevent.pool

from server.db import Txn
from server.domain import devices as device_rules
from server.domain import notifications as rules
from server.domain.comments import CommentAdded
from server.domain.devices import Device
from server.domain.ids import shard_of
from server.domain.log import RecordedEvent
from server.domain.media import MediaPosted
from server.domain.notifications import Pending
from server.domain.push import (
    Delivered,
    Failed,
    Notification,
    PushResult,
    RetryLater,
    Unregistered,
)
from server.interfaces import IEventStore
from server.store import accounts, devices, notifications
from server.store.events import append_latest_txn
from server.store.pushes import PushQueue
from workers import metrics
from workers.consumers import OnFailure, consumer
from workers.context import WorkerContext
from workers.handlers.activity import resolve
from workers.tasks import RetryAfter, submit_tasks, task_handler

log = logging.getLogger(__name__)

TASK = "push"


def queue(ctx: WorkerContext) -> PushQueue:
    """The collapse groups, dedupe records and rate caps (Redis)."""
    return PushQueue(ctx.redis, ctx.config.push.dedupe_ttl)


@consumer("push", *rules.TYPES, batch_size=500, on_failure=OnFailure.SKIP, side_effect=True,
          from_head=True)
def push(ctx: WorkerContext, events: list[RecordedEvent]) -> None:
    """Add each event's causes to their groups; schedule the task of each window opened."""
    groups: dict[tuple[int, str], list[Pending]] = defaultdict(list)
    for e in events:
        d = e.data
        mentioned = resolve(ctx, d.mentions) if isinstance(d, CommentAdded | MediaPosted) \
            else []
        for p in rules.plan(d, e.id, e.created_ms, mentioned):
            groups[(p.recipient, p.group)].append(p)
    q = queue(ctx)
    window = ctx.config.push.collapse_window
    due: dict[float, list[dict[str, Any]]] = defaultdict(list)
    now = time.time()
    for (recipient, group), causes in groups.items():
        first = min(causes, key=lambda p: p.event_id)
        if q.add(recipient, group, causes, first.event_id) == first.event_id:
            delay = round(max(0.0, first.created_ms / 1000 + window - now), 1)
            due[delay].append({"user": recipient, "group": group, "opener": first.event_id})
    for delay, payloads in due.items():
        submit_tasks(ctx, TASK, payloads, shard=shard_of(payloads[0]["user"]), delay=delay)


@task_handler(TASK)
def send_group(ctx: WorkerContext, payload: dict[str, Any]) -> None:
    """Send the notification of one window of one collapse group (see the module)."""
    recipient, group, opener = payload["user"], payload["group"], payload["opener"]
    q = queue(ctx)
    causes = q.drain(recipient, group, opener)
    if not causes:
        return
    targets = devices.devices_of(ctx.router, recipient)
    keep = _deliverable(ctx, recipient, causes) if targets else []
    if not keep:
        metrics.PUSH_GROUPS.labels("empty").inc()
    elif not q.allow(recipient, f"{group}:{opener}", int(time.time() * 1000),
                     ctx.config.push.user_rate_per_minute):
        metrics.PUSH_GROUPS.labels("capped").inc()
        log.info("push to user %d over the rate cap: group %s dropped", recipient, group)
    else:
        _send(ctx, q, recipient, group, opener, keep, targets)
        metrics.PUSH_GROUPS.labels("sent").inc()
    q.done(recipient, group, opener, [p.key for p in causes])


def _deliverable(ctx: WorkerContext, recipient: int, causes: list[Pending]) -> list[Pending]:
    actors = sorted({p.actor for p in causes})
    disabled, blocked = ctx.router.database(shard_of(recipient)).run_interaction(
        "push_recipient", notifications.recipient_txn, recipient, actors)
    alive = notifications.standing(ctx.router, [p for p in causes if p.kind not in disabled])
    return rules.deliverable(causes, disabled, blocked, lambda p: p.key in alive)


def _send(ctx: WorkerContext, q: PushQueue, recipient: int, group: str, opener: int,
          causes: list[Pending], targets: list[Device]) -> None:
    """One notification per device; raises ``RetryAfter`` when a service asked to wait."""
    users = accounts.users_by_id(ctx.router, [p.actor for p in causes])
    body = rules.text(causes, lambda u: users[u].username if u in users else "someone")
    notes = [(d, rules.notification(d, recipient, group, opener, causes, body))
             for d in targets]
    pool = gevent.pool.Pool(ctx.config.push.concurrency)
    waits = [r for r in pool.imap_unordered(lambda t: _send_one(ctx, q, recipient, *t), notes)
             if isinstance(r, RetryLater)]
    if waits:
        raise RetryAfter(waits[0].reason, max(r.delay for r in waits))


def _send_one(ctx: WorkerContext, q: PushQueue, recipient: int, device: Device,
              n: Notification) -> PushResult | None:
    provider = ctx.push[n.platform]
    if not q.claim(n.id):
        metrics.PUSHES.labels(provider.name, "duplicate").inc()
        return None
    result = provider.send(n)
    if isinstance(result, RetryLater):
        q.release(n.id)
        metrics.PUSHES.labels(provider.name, "retry").inc()
        return result
    if isinstance(result, Unregistered):
        shard = device_rules.token_shard(device.token, ctx.router.count)
        try:
            ctx.router.database(shard).run_interaction(
                "push_dead_device", dead_device_txn, ctx.store, shard, recipient,
                device.token, result)
        except Exception:
            q.release(n.id)  # the retried task asks the service again, and records it then
            raise
        q.settle(n.id, f"unregistered: {result.reason}")
        metrics.PUSHES.labels(provider.name, "unregistered").inc()
    elif isinstance(result, Failed):
        q.settle(n.id, f"failed: {result.reason}")
        metrics.PUSHES.labels(provider.name, "failed").inc()
        log.warning("push %s failed: %s", n.describe(), result.reason)
    else:
        assert isinstance(result, Delivered)
        q.settle(n.id, "delivered")
        metrics.PUSHES.labels(provider.name, "delivered").inc()
    return result


def dead_device_txn(txn: Txn, store: IEventStore, shard: int, user_id: int, token: str,
                    result: Unregistered) -> None:
    """Unregister ``user_id``'s device after the service called its token dead (unless it
    moved on or was registered again after the service's timestamp)."""
    append_latest_txn(txn, store, shard, device_rules.device_stream(token), lambda: (
        device_rules.decide_dead(devices.device_txn(txn, token, lock=True), user_id, result)))
