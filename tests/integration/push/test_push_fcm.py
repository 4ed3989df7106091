"""The FCM HTTP v1 provider against a local FCM and OAuth2 token endpoint over TLS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from plugins.push.fcm import FcmProvider
from server.domain.push import (
    Delivered,
    Failed,
    Notification,
    RetryLater,
    Unregistered,
)
from tests.push_helpers import PROJECT, PushWorld, notification, service_account

TOKEN = "fcm-registration-token-" + "x" * 40


def note(token: str = TOKEN, **fields: Any) -> Notification:
    return notification(token, "android", body="bob commented: nice", **fields)


def test_delivers_a_message_with_a_granted_access_token(world: PushWorld,
                                                        fcm: FcmProvider) -> None:
    """The service account's JWT grant yields an access token; the message is delivered
    with it, shaped as FCM v1 wants (collapse_key on android, apns-collapse-id on apns)."""
    result = fcm.send(note(collapse_key="comment:5"))
    assert isinstance(result, Delivered)
    assert result.provider_id.startswith(f"projects/{PROJECT}/messages/")
    [sent] = world.fcm.sent
    assert sent.bearer == world.fcm.grants[0] and sent.status == 200
    assert sent.message["token"] == TOKEN
    assert sent.message["notification"] == {"title": "shutterlog",
                                            "body": "bob commented: nice"}
    assert sent.message["android"]["collapse_key"] == "comment:5"
    assert sent.message["apns"]["headers"]["apns-collapse-id"] == "comment:5"


def test_the_access_token_is_cached_until_near_expiry(world: PushWorld,
                                                      fcm: FcmProvider) -> None:
    """One token serves sends until five minutes before it expires; then a new one."""
    for _ in range(3):
        assert isinstance(fcm.send(note()), Delivered)
    world.clock.advance(3600 - 300 - 1)
    assert isinstance(fcm.send(note()), Delivered)
    assert len(world.fcm.grants) == 1
    world.clock.advance(2)
    assert isinstance(fcm.send(note()), Delivered)
    assert len(world.fcm.grants) == 2
    assert world.fcm.sent[-1].bearer == world.fcm.grants[1]


def test_a_401_gets_a_new_token_once_and_retries(world: PushWorld, fcm: FcmProvider) -> None:
    """An access token FCM no longer accepts (401) is replaced at once; the send succeeds."""
    assert isinstance(fcm.send(note()), Delivered)
    world.fcm.revoke_tokens()
    assert isinstance(fcm.send(note()), Delivered)
    assert len(world.fcm.grants) == 2
    assert [s.status for s in world.fcm.sent] == [200, 200]  # the 401 is not a send


def test_third_party_auth_errors_fail_without_a_new_token(world: PushWorld,
                                                          fcm: FcmProvider) -> None:
    """THIRD_PARTY_AUTH_ERROR (a 401 about the APNs credentials in Firebase) fails the
    notification and does not replace our access token."""
    world.fcm.respond(TOKEN, "THIRD_PARTY_AUTH_ERROR")
    assert fcm.send(note()) == Failed("THIRD_PARTY_AUTH_ERROR")
    assert len(world.fcm.grants) == 1 and len(world.fcm.sent) == 1


@pytest.mark.parametrize("code", ["UNREGISTERED", "SENDER_ID_MISMATCH", "INVALID_ARGUMENT"])
def test_dead_tokens_unregister(world: PushWorld, fcm: FcmProvider, code: str) -> None:
    """UNREGISTERED, SENDER_ID_MISMATCH and INVALID_ARGUMENT about the token unregister it."""
    world.fcm.respond(TOKEN, code)
    assert fcm.send(note()) == Unregistered(code)


def test_a_malformed_token_is_refused_by_the_server(fcm: FcmProvider) -> None:
    """The server's own token check answers INVALID_ARGUMENT with the FCM code: unregistered."""
    assert fcm.send(note(token="short")) == Unregistered("INVALID_ARGUMENT")


def test_an_invalid_argument_about_the_message_fails_only_it(world: PushWorld,
                                                             fcm: FcmProvider) -> None:
    """INVALID_ARGUMENT naming another field (a BadRequest detail) fails the notification
    and leaves the token registered."""
    world.fcm.respond(TOKEN, "INVALID_ARGUMENT", fields=("message.android.ttl",))
    assert fcm.send(note()) == Failed("INVALID_ARGUMENT: message.android.ttl")


@pytest.mark.parametrize("code, retry_after, least", [
    ("QUOTA_EXCEEDED", "120", 120.0),
    ("UNAVAILABLE", "Thu, 01 Jan 2099 00:00:00 GMT", 1.0e9),
    ("INTERNAL", None, 0.5),
])
def test_overload_and_outages_retry_later_honouring_retry_after(
        world: PushWorld, fcm: FcmProvider, code: str, retry_after: str | None,
        least: float) -> None:
    """QUOTA_EXCEEDED, UNAVAILABLE and INTERNAL retry later, no sooner than Retry-After (in
    seconds or as a date), else after the backoff."""
    world.fcm.respond(TOKEN, code, retry_after=retry_after)
    result = fcm.send(note())
    assert isinstance(result, RetryLater) and result.reason == code
    assert least <= result.delay
    if retry_after is None:
        assert result.delay <= 1.0


def test_a_service_account_google_does_not_trust_is_refused(world: PushWorld,
                                                            tmp_path: Path) -> None:
    """A key the token endpoint cannot verify gets no access token: the send fails, and no
    message reaches FCM."""
    other, _ = service_account(tmp_path, world.fcm.token_uri, "other.json")
    provider = FcmProvider.from_config(world.config(fcm_credentials_file=str(other)).push,
                                       clock=world.clock)
    try:
        assert provider.send(note()) == Failed("access token refused")
        assert world.fcm.sent == [] and world.fcm.grants == []
    finally:
        provider.close()


def test_an_unreachable_token_endpoint_retries_later(world: PushWorld) -> None:
    """Without an access token for network reasons the notification waits for a retry."""
    provider = FcmProvider.from_config(
        world.config(fcm_token_uri="https://127.0.0.1:1/token").push, clock=world.clock)
    try:
        result = provider.send(note())
        assert isinstance(result, RetryLater), result
    finally:
        provider.close()
