"""End-to-end push tests' world: the API service, the real relay and worker pool configured
for the local APNs and FCM, and people with devices."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.fakes.apns import Received
from scripts.fakes.fcm import Sent
from server.db import Txn
from server.domain.devices import device_stream, token_shard
from tests.helpers import Process, Service, wait_for
from tests.integration.apiclient import Api
from tests.integration.conftest import Env
from tests.integration.mediakit import post_direct
from tests.integration.recording import relay, workers
from tests.push_helpers import TOPIC, PushWorld, push_world

#: Settings of the relay and workers: short windows and leases so tests run in seconds.
SETTINGS = {"collapse_window": "3", "user_rate_per_minute": "4"}
TASK_LEASE = "3"


@dataclass
class Person:
    id: int
    username: str
    token: str  # access token
    ios: str = ""  # device tokens
    android: str = ""


@dataclass
class Flow:
    api: Api
    world: PushWorld
    env: Env
    vars: dict[str, str]
    procs: list[Process] = field(default_factory=list)

    # --- processes ---------------------------------------------------------------------------

    def start_workers(self) -> Process:
        worker = workers(self.vars, concurrency=8)
        self.procs.append(worker)
        return worker

    def worker(self) -> Process:
        return [p for p in self.procs if p.name == "workers" and p.alive()][-1]

    # --- people and what they do ------------------------------------------------------------

    def person(self, ios: bool = True, android: bool = True, **fields: Any) -> Person:
        user, token = self.api.user(**fields)
        p = Person(int(user["id"]), user["username"], token)
        if ios:
            p.ios = self.register(p, secrets.token_hex(32), "ios")
        if android:
            p.android = self.register(p, "fcm-" + secrets.token_urlsafe(100), "android")
        return p

    def register(self, p: Person, device: str, platform: str) -> str:
        r = self.api.http.post("/v1/users/self/devices", data={
            "platform": platform, "token": device, "app": TOPIC},
            headers={"Authorization": f"Bearer {p.token}"})
        assert r.status_code == 200, r.text
        return device

    def devices(self, p: Person) -> list[str]:
        r = self.api.get("/v1/users/self/devices", p.token)
        assert r.status_code == 200, r.text
        return sorted(d["token"] for d in r.json()["data"])

    def medium(self, owner: Person) -> int:
        return post_direct(self.env, owner.id)

    def like(self, p: Person, media_id: int) -> None:
        r = self.api.post(f"/v1/media/{media_id}/likes", p.token)
        assert r.status_code == 200, r.text

    def comment(self, p: Person, media_id: int, text: str) -> int:
        r = self.api.post(f"/v1/media/{media_id}/comments", p.token, text=text)
        assert r.status_code == 200, r.text
        return int(r.json()["data"]["id"])

    def relate(self, p: Person, other: Person, action: str) -> None:
        self.api.relate(p.token, str(other.id), action)

    # --- what the services received ---------------------------------------------------------

    def apns(self, p: Person) -> list[Received]:
        return self.world.apns.for_token(p.ios)

    def fcm(self, p: Person) -> list[Sent]:
        return self.world.fcm.for_token(p.android)

    def ios_bodies(self, p: Person) -> list[str]:
        return [r.payload["aps"]["alert"]["body"] for r in self.apns(p) if r.status == 200]

    def android_bodies(self, p: Person) -> list[str]:
        return [s.message["notification"]["body"] for s in self.fcm(p) if s.status == 200]

    def wait_ios(self, p: Person, n: int = 1, what: str = "notifications") -> list[str]:
        wait_for(lambda: len(self.ios_bodies(p)) >= n, 30, f"{n} iOS {what} to {p.username}")
        return self.ios_bodies(p)

    def wait_android(self, p: Person, n: int = 1, what: str = "notifications") -> list[str]:
        wait_for(lambda: len(self.android_bodies(p)) >= n, 30,
                 f"{n} Android {what} to {p.username}")
        return self.android_bodies(p)

    def checkpoints(self, consumer: str = "push") -> int:
        """Checkpoints of ``consumer`` (push starts at the head: events before the relay
        made them would never be seen)."""
        return sum(db.run_interaction("checkpoints", Txn.fetchall, (
            "SELECT count(*) FROM checkpoints WHERE consumer = %s"), (consumer,))[0][0]
            for db in self.env.router.databases())

    def busy_tasks(self) -> int:
        """Push tasks not yet done or failed, in every database."""
        return sum(db.run_interaction("busy", Txn.fetchall, (
            "SELECT count(*) FROM tasks WHERE kind = 'push' AND state IN "
            "('pending', 'running')"))[0][0] for db in self.env.router.databases())

    def settle(self) -> None:
        """Wait until every push task scheduled so far has finished."""
        wait_for(lambda: self.busy_tasks() == 0, 30, "push tasks to finish")

    def device_events(self, device: str) -> list[tuple[str, int, str, int]]:
        """(type, user, reason, at_ms) of a device stream's events."""
        shard = token_shard(device, self.env.router.count)
        return [(e.type, e.data.user_id, getattr(e.data, "reason", ""),  # type: ignore[attr-defined]
                 getattr(e.data, "at_ms", 0))
                for e in self.env.store.read_stream(shard, device_stream(device))]


def started(flow: Flow, consumer: str) -> bool:
    """Whether the relay has made ``consumer``'s checkpoints on every shard."""
    return flow.checkpoints(consumer) == flow.env.router.count


@contextmanager
def running_flow(env: Env, service: Service, tmp: Path, extra: dict[str, str] | None = None,
                 from_head: tuple[str, ...] = ("push",)) -> Iterator[Flow]:
    """Local APNs and FCM (on the wall clock), a relay and a worker pool pointed at them
    (with ``extra`` settings too); waits until the relay has started every consumer of
    ``from_head`` at the log's head."""
    with push_world(tmp, wall=True) as world:
        variables = env.vars | world.env(**SETTINGS) | {
            "SHUTTERLOG_WORKERS_TASK_LEASE": TASK_LEASE} | (extra or {})
        flow = Flow(Api(env, service), world, env, variables, [relay(variables)])
        flow.start_workers()
        for name in from_head:
            wait_for(functools.partial(started, flow, name), 30,
                     f"the relay to start the {name} consumer at the log's head")
        try:
            yield flow
        finally:
            for p in flow.procs:
                if p.alive():
                    assert p.stop() == 0, p.output.text()
