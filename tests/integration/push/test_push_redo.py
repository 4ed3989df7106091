"""Redoing work never pushes twice: the push consumer applied again over the same events (a
batch redone after a crash), and its window task run twice, send each notification once."""

from __future__ import annotations

import secrets
from typing import Any

import msgpack

from zope.interface import implementer

from scripts.seed import account, ready_medium
from server import catalog
from server.db import Txn
from server.domain.devices import DeviceRegistered, device_stream, token_shard
from server.domain.ids import shard_of
from server.domain.likes import MediaLiked, like_stream
from server.domain.log import NewEvent
from server.domain.push import Delivered, Notification, PushResult
from server.interfaces import IPushProvider
from tests.drive import Driver
from tests.integration.conftest import Env
from workers.handlers.push import send_group


@implementer(IPushProvider)
class Recorder:
    """A provider that accepts everything and remembers it."""

    name = "recorder"

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    def send(self, notification: Notification, attempt: int = 0) -> PushResult:
        self.sent.append(notification)
        return Delivered(notification.id)

    def close(self) -> None:
        """Nothing to close."""


def push_tasks(env: Env) -> list[dict[str, Any]]:
    rows = [r for db in env.router.databases() for r in db.run_interaction(
        "tasks", Txn.fetchall, "SELECT payload FROM tasks WHERE kind = 'push' ORDER BY id")]
    return [msgpack.unpackb(bytes(r[0]), raw=False) for r in rows]


def test_a_redone_batch_and_a_redone_task_push_once(env: Env) -> None:
    """The consumer applied three times over the same likes schedules the window's task
    (twice: harmless), both runs send one notification per device, and once the window is
    sent, applying the batch again puts nothing in a group."""
    catalog.load()  # the inline projections (likes rows, device rows) of the appends below
    owner = account(env.store, env.router, "owner_" + secrets.token_hex(3))
    fans = [account(env.store, env.router, f"fan{i}_" + secrets.token_hex(3)) for i in range(3)]
    device = secrets.token_hex(32)
    env.store.append(token_shard(device, env.router.count), device_stream(device), [NewEvent(
        DeviceRegistered(token=device, user_id=owner, platform="ios", app="", locale=""))])
    m = ready_medium(env.store, env.router, owner)
    for fan in fans:
        env.store.append(shard_of(m), like_stream(m, fan), [NewEvent(
            MediaLiked(media_id=m, media_owner=owner, user_id=fan), actor=fan)])

    Driver(env).drive("push")
    Driver(env).drive("push")  # the same events again, as after a crash before the checkpoint
    tasks = push_tasks(env)
    assert len(tasks) == 2 and tasks[0] == tasks[1]

    driver = Driver(env)
    recorder = Recorder()
    driver.ctx.__dict__["push"] = {"ios": recorder, "android": recorder}
    for payload in tasks:
        send_group(driver.ctx, payload)
    [sent] = recorder.sent
    assert sent.device_token == device and sent.body is not None
    assert sent.body.endswith("and 2 others liked your photo")

    Driver(env).drive("push")  # and again after the window was sent
    assert len(push_tasks(env)) == 2
    assert env.redis.keys(f"push:items:{owner}:*") == []
