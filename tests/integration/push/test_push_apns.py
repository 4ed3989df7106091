"""The APNs provider against a local HTTP/2 TLS server that checks what Apple checks."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import pytest

from plugins.push.apns import ApnsProvider
from server.config import load
from server.domain.push import (
    Delivered,
    Failed,
    Notification,
    PushResult,
    RetryLater,
    Unregistered,
)
from tests.helpers import REPO, scrubbed_env, wait_for
from tests.push_helpers import (
    KEY_ID,
    TEAM_ID,
    TOPIC,
    PushWorld,
    apns_key,
    notification,
)

TOKEN = "a1" * 32


def note(token: str = TOKEN, source: object = 1, **fields: Any) -> Notification:
    return notification(token, "ios", source, **fields)


def test_delivers_with_apples_headers_and_a_valid_provider_token(
        world: PushWorld, apns: ApnsProvider) -> None:
    """A notification is delivered; the server saw the apns-* headers, the aps payload and a
    JWT signed by the team's key naming its kid, iss and iat."""
    n = note(collapse_key="like:7", expiration=int(world.clock() + 3600), badge=1)
    assert apns.send(n) == Delivered(n.id)
    [seen] = world.apns.received
    assert seen.status == 200 and seen.device_token == TOKEN
    assert {k: v for k, v in seen.headers.items() if k.startswith("apns-")} == {
        "apns-topic": TOPIC, "apns-push-type": "alert", "apns-priority": "10",
        "apns-id": n.id, "apns-collapse-id": "like:7",
        "apns-expiration": str(int(world.clock() + 3600))}
    assert seen.payload == {"aps": {"alert": {"title": "shutterlog",
                                              "body": "alice liked your photo"}, "badge": 1}}
    assert jwt.get_unverified_header(seen.jwt)["kid"] == KEY_ID
    claims = jwt.decode(seen.jwt, world.apns.public_key, algorithms=["ES256"])
    assert claims == {"iss": TEAM_ID, "iat": int(world.clock())}


def test_a_retried_notification_keeps_its_apns_id(world: PushWorld, apns: ApnsProvider) -> None:
    """Sending the same notification again (a redone batch) carries the same apns-id."""
    apns.send(note())
    apns.send(note())
    ids = {r.headers["apns-id"] for r in world.apns.received}
    assert ids == {note().id}


def test_410_unregisters_with_apples_timestamp(world: PushWorld, apns: ApnsProvider) -> None:
    """410 Unregistered becomes Unregistered carrying Apple's timestamp (milliseconds)."""
    world.apns.respond(TOKEN, 410, "Unregistered")
    assert apns.send(note()) == Unregistered("Unregistered", int(world.clock() * 1000))


@pytest.mark.parametrize("reason", ["BadDeviceToken", "DeviceTokenNotForTopic"])
def test_400_dead_token_reasons_unregister(world: PushWorld, apns: ApnsProvider,
                                           reason: str) -> None:
    """400 BadDeviceToken and DeviceTokenNotForTopic unregister the token (no timestamp)."""
    world.apns.respond(TOKEN, 400, reason)
    assert apns.send(note()) == Unregistered(reason)


def test_a_malformed_device_token_is_refused_by_the_server(apns: ApnsProvider) -> None:
    """The server's own check of a token that is not hex answers BadDeviceToken."""
    assert apns.send(note(token="not-a-device-token")) == Unregistered("BadDeviceToken")


@pytest.mark.parametrize("status, reason", [(429, "TooManyRequests"),
                                            (503, "ServiceUnavailable"),
                                            (500, "InternalServerError")])
def test_429_and_5xx_retry_later_with_growing_backoff(world: PushWorld, apns: ApnsProvider,
                                                      status: int, reason: str) -> None:
    """429 and 5xx answer RetryLater with the policy's delay, longer on later attempts."""
    world.apns.respond(TOKEN, status, reason, times=2)
    first, third = apns.send(note(), attempt=0), apns.send(note(), attempt=3)
    assert isinstance(first, RetryLater) and isinstance(third, RetryLater)
    assert first.reason == third.reason == reason
    assert 0.5 <= first.delay <= 1.0 and 4.0 <= third.delay <= 8.0
    assert apns.send(note(), attempt=4) == Delivered(note().id)


def test_other_4xx_fail_the_notification(world: PushWorld, tmp_path: Path) -> None:
    """A topic the team may not push to fails the notification (no retry, no unregister)."""
    provider = ApnsProvider.from_config(world.config(apns_topic="com.other.app").push,
                                        clock=world.clock)
    try:
        assert provider.send(note()) == Failed("TopicDisallowed")
    finally:
        provider.close()


def test_long_bodies_are_cut_to_fit_and_oversized_payloads_never_sent(
        world: PushWorld, apns: ApnsProvider) -> None:
    """A long body is shortened to fit 4 KB (the server accepts it); data that cannot fit
    fails as PayloadTooLarge without a request."""
    assert isinstance(apns.send(note(body="x" * 6000)), Delivered)
    assert world.apns.received[0].status == 200
    assert apns.send(note(source=2, data={"blob": "y" * 5000})) == Failed("PayloadTooLarge")
    assert len(world.apns.received) == 1


def test_the_jwt_is_reused_until_its_lifetime_then_renewed(world: PushWorld) -> None:
    """One JWT serves every request for push.apns_jwt_lifetime seconds; the next is accepted
    by the server (which answers TooManyProviderTokenUpdates to renewals under 20 min)."""
    provider = ApnsProvider.from_config(world.config(apns_jwt_lifetime="1500").push,
                                        clock=world.clock)
    try:
        for i in range(3):
            assert isinstance(provider.send(note(source=i)), Delivered)
            world.clock.advance(499)
        assert len({r.jwt for r in world.apns.received}) == 1
        world.clock.advance(3)  # 1500 s since the first token
        assert isinstance(provider.send(note(source=9)), Delivered)
        tokens = [r.jwt for r in world.apns.received]
        assert len(set(tokens)) == 2 and provider.token.minted == 2
        iat = jwt.decode(tokens[-1], options={"verify_signature": False})["iat"]
        assert iat == int(world.clock())
    finally:
        provider.close()


def test_the_server_refuses_renewals_under_20_minutes(world: PushWorld,
                                                      apns: ApnsProvider) -> None:
    """The local APNs enforces Apple's rule: a new token within 20 minutes on a connection
    is answered 429 TooManyProviderTokenUpdates (proving the renewal test means something)."""
    assert isinstance(apns.send(note()), Delivered)
    world.clock.advance(60)
    apns.token._mint()  # a renewal the provider itself never makes this early
    result = apns.send(note(source=2))
    assert isinstance(result, RetryLater) and result.reason == "TooManyProviderTokenUpdates"


@pytest.mark.parametrize("reason", ["ExpiredProviderToken", "InvalidProviderToken"])
def test_a_rejected_jwt_is_renewed_once_and_the_request_retried(
        world: PushWorld, apns: ApnsProvider, reason: str) -> None:
    """403 Expired/InvalidProviderToken: a new JWT at once (outside the 20-minute rule), the
    same notification sent again with it, and delivered."""
    world.apns.respond(TOKEN, 403, reason)
    n = note()
    assert apns.send(n) == Delivered(n.id)
    first, second = world.apns.received
    assert (first.status, second.status) == (403, 200)
    assert first.jwt != second.jwt and apns.token.minted == 2
    assert first.headers["apns-id"] == second.headers["apns-id"] == n.id


def test_a_second_rejection_fails_without_looping(world: PushWorld, apns: ApnsProvider) -> None:
    """A JWT rejected again after the renewal fails the notification: two requests, no more."""
    world.apns.respond(TOKEN, 403, "InvalidProviderToken", times=2)
    assert apns.send(note()) == Failed("InvalidProviderToken")
    assert len(world.apns.received) == 2 and apns.token.minted == 2


def test_a_stale_clock_is_caught_by_the_servers_iat_check(world: PushWorld) -> None:
    """A provider whose clock is two hours behind makes JWTs the server finds expired:
    renewed once, still expired, failed."""
    behind = type(world.clock)(world.clock() - 7200)
    provider = ApnsProvider.from_config(world.config().push, clock=behind)
    try:
        assert provider.send(note()) == Failed("ExpiredProviderToken")
        assert [r.reason for r in world.apns.received] == ["ExpiredProviderToken"] * 2
    finally:
        provider.close()


def test_a_key_apple_does_not_know_is_refused(world: PushWorld, tmp_path: Path) -> None:
    """A JWT signed by another key fails signature verification: InvalidProviderToken."""
    other, _ = apns_key(tmp_path, "Other.p8")
    provider = ApnsProvider.from_config(world.config(apns_key_file=str(other)).push,
                                        clock=world.clock)
    try:
        assert provider.send(note()) == Failed("InvalidProviderToken")
    finally:
        provider.close()


def test_unreachable_or_untrusted_servers_retry_later(world: PushWorld) -> None:
    """A closed port and a server whose certificate is not trusted (no CA file: the system
    store) both answer RetryLater; verification is never switched off."""
    for extra in ({"apns_url": "https://127.0.0.1:1"}, {"ca_file": ""}):
        provider = ApnsProvider.from_config(world.config(**extra).push, clock=world.clock)
        try:
            result = provider.send(note())
            assert isinstance(result, RetryLater), result
        finally:
            provider.close()
    assert world.apns.received == []


def test_greenlets_share_one_connection_with_many_streams(world: PushWorld) -> None:
    """Under gevent's monkey-patching (as in the worker pool), 80 sends from one process
    multiplex as 80 concurrent streams of one connection."""
    world.apns.hold_until(80)
    env = world.env(concurrency="80")
    assert green_sends(env, 80) == {"Delivered": 80}
    assert world.apns.connections == 1 and world.apns.max_open_streams == 80
    assert load(env=env, search_default=False).push.concurrency == 80


def green_sends(env: dict[str, str], count: int) -> dict[str, int]:
    """``count`` concurrent iOS sends from a gevent-patched process with ``env``'s settings
    (``green_push``); its outcomes by kind."""
    out = subprocess.run(
        [sys.executable, "-m", "tests.integration.push.green_push", "ios", str(count)],
        cwd=REPO, env=scrubbed_env(env), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    outcomes: dict[str, int] = json.loads(out.stdout.splitlines()[-1])
    return outcomes


def test_the_servers_stream_limit_is_kept(world: PushWorld) -> None:
    """A server allowing 5 concurrent streams gets 5 at once from 20 concurrent sends, no
    more, all on one connection."""
    world.apns.max_streams = 5
    world.apns.hold_until(5)
    assert green_sends(world.env(concurrency="20"), 20) == {"Delivered": 20}
    assert world.apns.connections == 1 and world.apns.max_open_streams == 5


def _send_while_held(world: PushWorld, apns: ApnsProvider, cut: Callable[[], None],
                     ) -> PushResult:
    """What a send answers when ``cut`` acts on the connection while APNs holds its answer."""
    world.apns.hold_all()
    with ThreadPoolExecutor(1) as pool:
        sending = pool.submit(apns.send, note())
        wait_for(lambda: world.apns.received, 10, "the request to reach APNs")
        cut()
        result = sending.result(timeout=10)
    world.apns.stop_holding()
    return result


@pytest.mark.parametrize("cut", ["drop_connections", "goaway"])
def test_a_lost_or_closing_connection_retries_later_and_reconnects(
        world: PushWorld, apns: ApnsProvider, cut: str) -> None:
    """A connection lost, or closed by GOAWAY, while a request waits: that request answers
    RetryLater at once, and the next send opens a new connection and is delivered."""
    result = _send_while_held(world, apns, getattr(world.apns, cut))
    assert isinstance(result, RetryLater) and result.reason == "RemoteProtocolError"
    assert apns.send(note(source=2)) == Delivered(note(source=2).id)
    assert world.apns.connections == 2


def test_an_answer_later_than_the_timeout_retries_later(world: PushWorld) -> None:
    """No answer within push.timeout: RetryLater (ReadTimeout), the stream given up; the
    connection keeps serving."""
    provider = ApnsProvider.from_config(world.config(timeout="1").push, clock=world.clock)
    try:
        result = _send_while_held(world, provider, lambda: None)
        assert isinstance(result, RetryLater) and result.reason == "ReadTimeout"
        assert isinstance(provider.send(note(source=2)), Delivered)
        assert world.apns.connections == 1
    finally:
        provider.close()
