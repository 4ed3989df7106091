"""What the services' answers do, end to end: dead tokens leave the device table through
``DeviceUnregistered`` (unless registered again after Apple's timestamp), 429/503 and FCM's
UNAVAILABLE are retried until delivered, and a worker killed mid-send never causes a
second push of the same notification."""

from __future__ import annotations

import time
from collections import Counter

from server.store.pushes import PushQueue
from tests.helpers import wait_for
from tests.integration.push.flowkit import Flow, Person


def liked(flow: Flow, owner: Person) -> int:
    """Someone likes a new medium of ``owner``; returns the medium."""
    fan = flow.person(ios=False, android=False)
    m = flow.medium(owner)
    flow.like(fan, m)
    return m


def answered(flow: Flow, p: Person, status: int) -> None:
    wait_for(lambda: any(r.status == status for r in flow.apns(p)), 30,
             f"APNs to answer {status}")
    flow.settle()


def test_410_unregisters_the_device_with_apples_timestamp(flow: Flow) -> None:
    """410 Unregistered: DeviceUnregistered (reason provider, Apple's timestamp) is in the
    log and the device is gone; the user's Android device still got the notification."""
    owner = flow.person()
    flow.world.apns.respond(owner.ios, 410, "Unregistered")
    liked(flow, owner)
    flow.wait_android(owner)
    answered(flow, owner, 410)
    [error] = [r for r in flow.apns(owner) if r.status == 410]
    events = flow.device_events(owner.ios)
    assert [e[:3] for e in events] == [("DeviceRegistered", owner.id, ""),
                                       ("DeviceUnregistered", owner.id, "provider")]
    assert abs(events[1][3] - time.time() * 1000) < 60_000
    assert flow.devices(owner) == [owner.android]
    assert error.headers["apns-collapse-id"].startswith("like:")


def test_410_older_than_the_registration_keeps_the_device(flow: Flow) -> None:
    """A token registered again after Apple's timestamp stays registered: no event."""
    owner = flow.person(ios=True, android=False)
    flow.world.apns.respond(owner.ios, 410, "Unregistered",
                            timestamp_ms=int(time.time() * 1000) - 3_600_000)
    liked(flow, owner)
    answered(flow, owner, 410)
    assert [e[0] for e in flow.device_events(owner.ios)] == ["DeviceRegistered"]
    assert flow.devices(owner) == [owner.ios]


def test_bad_device_token_and_fcm_unregistered_unregister(flow: Flow) -> None:
    """400 BadDeviceToken and FCM's UNREGISTERED both unregister their device."""
    owner = flow.person()
    flow.world.apns.respond(owner.ios, 400, "BadDeviceToken")
    flow.world.fcm.respond(owner.android, "UNREGISTERED")
    liked(flow, owner)
    answered(flow, owner, 400)
    assert flow.devices(owner) == []
    for device in (owner.ios, owner.android):
        assert [e[:3] for e in flow.device_events(device)][-1] == (
            "DeviceUnregistered", owner.id, "provider")


def test_a_failed_notification_is_recorded_and_not_retried(flow: Flow) -> None:
    """APNs 413 PayloadTooLarge and an FCM INVALID_ARGUMENT about a message field fail that
    notification: recorded in its dedupe record, sent once, the devices kept."""
    owner = flow.person()
    flow.world.apns.respond(owner.ios, 413, "PayloadTooLarge")
    flow.world.fcm.respond(owner.android, "INVALID_ARGUMENT", fields=("message.android.ttl",))
    liked(flow, owner)
    answered(flow, owner, 413)
    [sent] = flow.apns(owner)
    assert PushQueue(flow.env.redis, 60).outcome(sent.headers["apns-id"]) == \
        "failed: PayloadTooLarge"
    assert [s.status for s in flow.fcm(owner)] == [400]
    assert flow.devices(owner) == sorted([owner.ios, owner.android])


def test_429_and_503_are_retried_until_delivered(flow: Flow) -> None:
    """APNs 429 then 503, FCM UNAVAILABLE with Retry-After: the task is retried until each
    device has it, once, under the same apns-id; nothing is unregistered."""
    owner = flow.person()
    flow.world.apns.respond(owner.ios, 429, "TooManyRequests")
    flow.world.apns.respond(owner.ios, 503, "ServiceUnavailable")
    flow.world.fcm.respond(owner.android, "UNAVAILABLE", retry_after="1")
    liked(flow, owner)
    flow.wait_ios(owner)
    flow.wait_android(owner)
    flow.settle()
    assert [r.status for r in flow.apns(owner)] == [429, 503, 200]
    assert len({r.headers["apns-id"] for r in flow.apns(owner)}) == 1
    assert [s.status for s in flow.fcm(owner)] == [503, 200]
    assert flow.devices(owner) == sorted([owner.ios, owner.android])


def test_a_worker_killed_mid_send_never_sends_twice(flow: Flow) -> None:
    """Five notifications are in flight (APNs holds its answers) when the worker gets
    SIGKILL; a new worker redoes the tasks, and each notification id reached APNs once."""
    people = [flow.person(ios=True, android=False) for _ in range(5)]
    flow.world.apns.hold_all()
    try:
        for p in people:
            liked(flow, p)
        wait_for(lambda: all(flow.apns(p) for p in people), 30, "five sends in flight")
        flow.worker().kill()
    finally:
        flow.world.apns.stop_holding()
    flow.start_workers()
    flow.settle()
    ids = Counter(r.headers["apns-id"] for p in people for r in flow.apns(p))
    assert len(ids) == 5 and set(ids.values()) == {1}
    # ... and the next notification goes out as usual from the new worker
    again = people[0]
    liked(flow, again)
    flow.wait_ios(again)
