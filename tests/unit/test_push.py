"""The pure part of push: notifications, ids, backoff, and both services' wire contracts."""

import json
import uuid

import pytest

from server.domain.apns import (
    MAX_PAYLOAD,
    PayloadTooLarge,
    apns_body,
    apns_headers,
    apns_result,
    provider_token_rejected,
)
from server.domain.fcm import (
    DataTooLarge,
    access_token_rejected,
    error_of,
    fcm_message,
    fcm_result,
)
from server.domain.push import (
    Delivered,
    Failed,
    Notification,
    RetryLater,
    RetryPolicy,
    Unregistered,
    collapse_id,
    notification_id,
    parse_retry_after,
    should_unregister,
)

TOKEN = "ab" * 32


def note(**kw: object) -> Notification:
    fields: dict[str, object] = {"device_token": TOKEN, "platform": "ios",
                                 "id": notification_id(42, TOKEN), "title": "shutterlog",
                                 "body": "alice liked your photo"}
    return Notification(**(fields | kw))  # type: ignore[arg-type]


def fixed(delay: float) -> object:
    return lambda retry_after: max(delay, retry_after or 0.0)


def test_notification_id_is_a_stable_uuid_per_source_and_device() -> None:
    """The same event and device give the same UUID; another event or device another."""
    a = notification_id(42, TOKEN)
    assert a == notification_id("42", TOKEN)
    assert str(uuid.UUID(a)) == a
    assert len({a, notification_id(43, TOKEN), notification_id(42, "cd" * 32)}) == 3


def test_collapse_id_fits_apns_limit() -> None:
    """Short keys are kept; longer ones become a 64-character digest, stable per key."""
    assert collapse_id("like:123") == "like:123"
    long = collapse_id("x" * 100)
    assert len(long.encode()) == 64 and long == collapse_id("x" * 100)


@pytest.mark.parametrize("kw, problem", [
    ({"platform": "windows"}, "platform"),
    ({"id": "not-a-uuid"}, "id must be a UUID"),
    ({"collapse_key": "k" * 65}, "collapse_key"),
    ({"title": None, "body": None}, "an alert needs"),
    ({"push_type": "background"}, "background"),
    ({"data": {"aps": "x"}}, "data"),
    ({"data": {"n": 1}}, "data"),
    ({"device_token": ""}, "device_token"),
])
def test_invalid_notifications_are_refused(kw: dict[str, object], problem: str) -> None:
    """Each invalid field is refused at construction with a message naming it."""
    with pytest.raises(ValueError, match=problem):
        note(**kw)


def test_describe_hides_the_token_and_the_text() -> None:
    """The log summary carries a token prefix and the id, never the text or whole token."""
    text = note().describe()
    assert TOKEN not in text and "alice" not in text and note().id in text


def test_apns_body_and_headers() -> None:
    """An alert becomes the aps dictionary plus data, and the apns-* headers."""
    n = note(badge=3, sound="default", collapse_key="like:9", expiration=1700000000,
             body_loc_key="LIKED", body_loc_args=("alice",), data={"media": "9"})
    body = json.loads(apns_body(n))
    assert body == {"aps": {"alert": {"title": "shutterlog", "body": "alice liked your photo",
                                      "loc-key": "LIKED", "loc-args": ["alice"]},
                            "badge": 3, "sound": "default"}, "media": "9"}
    assert apns_headers(n, "com.example") == {
        "apns-topic": "com.example", "apns-push-type": "alert", "apns-priority": "10",
        "apns-id": n.id, "apns-collapse-id": "like:9", "apns-expiration": "1700000000"}


def test_background_notifications_go_at_priority_5() -> None:
    """A background push carries content-available and priority 5, even when asked high."""
    n = note(title=None, body=None, push_type="background", topic="com.other")
    assert json.loads(apns_body(n)) == {"aps": {"content-available": 1}}
    headers = apns_headers(n, "com.example")
    assert headers["apns-priority"] == "5" and headers["apns-topic"] == "com.other"


def test_a_long_body_is_cut_to_fit_4kb() -> None:
    """A body that would overflow 4 KB is shortened with an ellipsis to fit exactly."""
    body = apns_body(note(body="é" * 5000))
    assert len(body) <= MAX_PAYLOAD
    assert json.loads(body)["aps"]["alert"]["body"].endswith("…")


def test_a_payload_that_cannot_fit_is_refused() -> None:
    """Data alone over the limit cannot be cut: PayloadTooLarge."""
    with pytest.raises(PayloadTooLarge):
        apns_body(note(data={"blob": "x" * 5000}))


@pytest.mark.parametrize("status, body, expected", [
    (200, b"", Delivered("id-1")),
    (410, b'{"reason":"Unregistered","timestamp":1700000000123}',
     Unregistered("Unregistered", 1700000000123)),
    (400, b'{"reason":"BadDeviceToken"}', Unregistered("BadDeviceToken")),
    (400, b'{"reason":"DeviceTokenNotForTopic"}', Unregistered("DeviceTokenNotForTopic")),
    (400, b'{"reason":"BadCollapseId"}', Failed("BadCollapseId")),
    (413, b'{"reason":"PayloadTooLarge"}', Failed("PayloadTooLarge")),
    (403, b'{"reason":"ExpiredProviderToken"}', Failed("ExpiredProviderToken")),
    (429, b'{"reason":"TooManyRequests"}', RetryLater("TooManyRequests", 7.0)),
    (503, b'{"reason":"ServiceUnavailable"}', RetryLater("ServiceUnavailable", 7.0)),
    (500, b"garbage", RetryLater("HTTP 500", 7.0)),
])
def test_apns_answers_map_to_results(status: int, body: bytes, expected: object) -> None:
    """Each APNs status and reason maps to its result (410 keeps Apple's timestamp)."""
    assert apns_result(status, body, "id-1", fixed(7.0)) == expected  # type: ignore[arg-type]


def test_only_provider_token_errors_ask_for_a_new_jwt() -> None:
    """403 Expired/InvalidProviderToken ask for a new JWT; other 403s and statuses do not."""
    assert provider_token_rejected(403, "ExpiredProviderToken")
    assert provider_token_rejected(403, "InvalidProviderToken")
    assert not provider_token_rejected(403, "BadCertificate")
    assert not provider_token_rejected(429, "TooManyProviderTokenUpdates")


def test_fcm_message_shape() -> None:
    """An alert becomes notification, data, android (collapse_key, ttl, tag) and apns parts."""
    n = note(platform="android", collapse_key="like:9", expiration=1000, badge=2,
             title_loc_key="T", title_loc_args=("a",), data={"media": "9"}, priority="normal")
    m = fcm_message(n, now=400.0)["message"]
    assert m["token"] == TOKEN
    assert m["notification"] == {"title": "shutterlog", "body": "alice liked your photo"}
    assert m["data"] == {"media": "9"}
    assert m["android"] == {"priority": "NORMAL", "collapse_key": "like:9", "ttl": "600s",
                            "notification": {"title_loc_key": "T", "title_loc_args": ["a"],
                                             "notification_count": 2, "tag": "like:9"}}
    assert m["apns"]["headers"] == {"apns-priority": "5", "apns-push-type": "alert",
                                    "apns-collapse-id": "like:9", "apns-expiration": "1000"}
    assert m["apns"]["payload"]["aps"] == {"alert": {"title-loc-key": "T",
                                                     "title-loc-args": ["a"]}, "badge": 2}


def test_fcm_data_over_4kb_is_refused() -> None:
    """FCM's 4 KB data limit is checked before sending."""
    with pytest.raises(DataTooLarge):
        fcm_message(note(platform="android", data={"blob": "x" * 5000}), now=0)


def fcm_error(status: int, rpc: str, code: str | None = None,
              fields: tuple[str, ...] = ()) -> bytes:
    details: list[dict[str, object]] = []
    if code:
        details.append({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                        "errorCode": code})
    if fields:
        details.append({"@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [{"field": f} for f in fields]})
    return json.dumps({"error": {"code": status, "status": rpc, "message": "m",
                                 "details": details}}).encode()


@pytest.mark.parametrize("status, body, retry_after, expected", [
    (200, b'{"name":"projects/p/messages/1"}', None, Delivered("projects/p/messages/1")),
    (404, fcm_error(404, "NOT_FOUND", "UNREGISTERED"), None, Unregistered("UNREGISTERED")),
    (403, fcm_error(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH"), None,
     Unregistered("SENDER_ID_MISMATCH")),
    (400, fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"), None,
     Unregistered("INVALID_ARGUMENT")),
    (400, fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", ("message.token",)), None,
     Unregistered("INVALID_ARGUMENT")),
    (400, fcm_error(400, "INVALID_ARGUMENT", None, ("message.data[0].value",)), None,
     Failed("INVALID_ARGUMENT: message.data[0].value")),
    (429, fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"), 60.0,
     RetryLater("QUOTA_EXCEEDED", 60.0)),
    (503, fcm_error(503, "UNAVAILABLE", "UNAVAILABLE"), None, RetryLater("UNAVAILABLE", 7.0)),
    (500, fcm_error(500, "INTERNAL", "INTERNAL"), None, RetryLater("INTERNAL", 7.0)),
    (502, b"<html>bad gateway</html>", None, RetryLater("HTTP 502", 7.0)),
    (401, fcm_error(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR"), None,
     Failed("THIRD_PARTY_AUTH_ERROR")),
])
def test_fcm_answers_map_to_results(status: int, body: bytes, retry_after: float | None,
                                    expected: object) -> None:
    """Each FCM error code maps to its result; an invalid argument about another field of the
    message fails only the message, and Retry-After sets the least delay."""
    result = fcm_result(status, body, retry_after, fixed(7.0))  # type: ignore[arg-type]
    assert result == expected


def test_a_refused_access_token_is_told_apart_from_third_party_auth() -> None:
    """401 UNAUTHENTICATED asks for a new access token; THIRD_PARTY_AUTH_ERROR does not."""
    assert access_token_rejected(401, error_of(fcm_error(401, "UNAUTHENTICATED")))
    assert not access_token_rejected(
        401, error_of(fcm_error(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR")))
    assert not access_token_rejected(403, error_of(fcm_error(403, "PERMISSION_DENIED")))


def test_backoff_grows_is_capped_deterministic_and_honours_retry_after() -> None:
    """Delays lie in [50%, 100%] of base*2^attempt up to the cap, repeat per notification,
    and never fall below the service's Retry-After."""
    policy = RetryPolicy(base=1.0, factor=2.0, cap=60.0)
    for attempt in range(10):
        d = policy.delay(attempt, "n1")
        ceiling = min(60.0, 2.0 ** attempt)
        assert ceiling / 2 <= d <= ceiling
        assert d == policy.delay(attempt, "n1")
    assert policy.delay(0, "n1", retry_after=30.0) == 30.0
    assert {policy.delay(3, f"n{i}") for i in range(20)} != {policy.delay(3, "n0")}


def test_next_try_stops_at_the_attempt_limit_and_at_expiry() -> None:
    """No retry after the last attempt, nor one that would land after the expiration."""
    policy = RetryPolicy(attempts=3)
    wait = RetryLater("TooManyRequests", 10.0)
    assert policy.next_try(note(), 0, wait, now=100.0) == 110.0
    assert policy.next_try(note(), 2, wait, now=100.0) is None
    assert policy.next_try(note(expiration=105), 0, wait, now=100.0) is None
    assert policy.next_try(note(expiration=200), 0, wait, now=100.0) == 110.0


def test_retry_after_in_seconds_or_as_a_date() -> None:
    """Retry-After is read as seconds or as an HTTP date relative to now."""
    assert parse_retry_after("120", now=0) == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412420.0) == 60.0
    assert parse_retry_after(None, now=0) is None
    assert parse_retry_after("soon", now=0) is None


def test_unregister_unless_registered_again_after_apples_timestamp() -> None:
    """A token registered after Apple's timestamp stays; one registered before goes."""
    dead = Unregistered("Unregistered", at_ms=2_000)
    assert should_unregister(dead, registered_ms=1_000)
    assert not should_unregister(dead, registered_ms=3_000)
    assert should_unregister(Unregistered("BadDeviceToken"), registered_ms=3_000)
