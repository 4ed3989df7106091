"""The device and notification-settings API over HTTP: registration, the token moving to its
newest owner, removal, idempotency, settings, and every refusal changing nothing."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from server.domain.devices import device_stream, token_shard
from tests.integration.apiclient import Api

DEVICES = "/v1/users/self/devices"
SETTINGS = "/v1/users/self/notification_settings"


def ios_token() -> str:
    return secrets.token_hex(32)


def android_token() -> str:
    return "fcm:" + secrets.token_urlsafe(120)


def post_device(api: Api, access: str | None, fields: dict[str, str],
                headers: dict[str, str] | None = None) -> httpx.Response:
    """POST the device form (its ``token`` field is the device's, not the access token)."""
    auth = {"Authorization": f"Bearer {access}"} if access else {}
    return api.http.post(DEVICES, data=fields, headers=auth | (headers or {}))


def register(api: Api, access: str, device: str, platform: str = "ios",
             **extra: str) -> httpx.Response:
    return post_device(api, access, {"platform": platform, "token": device} | extra)


def devices(api: Api, token: str) -> list[dict[str, Any]]:
    r = api.get(DEVICES, token)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def stream_types(api: Api, device: str) -> list[tuple[str, int, str]]:
    """(type, user, reason) of the device stream's events, in order."""
    shard = token_shard(device, api.env.router.count)
    return [(e.type, e.data.user_id, getattr(e.data, "reason", ""))  # type: ignore[attr-defined]
            for e in api.env.store.read_stream(shard, device_stream(device))]


def refused(r: httpx.Response, words: str) -> None:
    assert r.status_code == 400, r.text
    meta = r.json()["meta"]
    assert meta["error_type"] == "APIInvalidParametersError"
    assert words in meta["error_message"], meta


def test_register_list_and_unregister(api: Api) -> None:
    """An iOS and an Android device are registered (events and rows), listed, and removed
    with DeviceUnregistered reason user; removing again is 404."""
    user, tok = api.user()
    ios, android = ios_token(), android_token()
    r = register(api, tok, ios, app="com.example.shutterlog", locale="en-US")
    assert r.status_code == 200, r.text
    assert r.json()["data"] | {"registered_time": "x"} == {
        "token": ios, "platform": "ios", "app": "com.example.shutterlog", "locale": "en-US",
        "registered_time": "x"}
    assert register(api, tok, android, "android").status_code == 200
    assert sorted(d["token"] for d in devices(api, tok)) == sorted([ios, android])
    r = api.http.delete(f"{DEVICES}/{ios}", headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 200, r.text
    assert [d["token"] for d in devices(api, tok)] == [android]
    assert stream_types(api, ios) == [("DeviceRegistered", int(user["id"]), ""),
                                      ("DeviceUnregistered", int(user["id"]), "user")]
    r = api.http.delete(f"{DEVICES}/{ios}", headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 404, r.text
    r = api.http.delete(f"{DEVICES}/{android}", headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 200, r.text
    assert devices(api, tok) == []


def test_a_token_moves_to_its_newest_owner(api: Api) -> None:
    """A token registered by B after A is B's alone: A's device is unregistered (reason
    moved) in the same append, and A can no longer remove it."""
    a, ta = api.user()
    b, tb = api.user()
    device = ios_token()
    assert register(api, ta, device).status_code == 200
    assert register(api, tb, device).status_code == 200
    assert devices(api, ta) == []
    assert [d["token"] for d in devices(api, tb)] == [device]
    assert stream_types(api, device) == [
        ("DeviceRegistered", int(a["id"]), ""), ("DeviceUnregistered", int(a["id"]), "moved"),
        ("DeviceRegistered", int(b["id"]), "")]
    r = api.http.delete(f"{DEVICES}/{device}", headers={"Authorization": f"Bearer {ta}"})
    assert r.status_code == 404
    assert [d["token"] for d in devices(api, tb)] == [device]


def test_an_apns_token_is_one_device_in_any_case(api: Api) -> None:
    """An APNs token is hex: "AB12.." and "ab12.." are one phone. Registered by A in upper
    case and by B in lower case it moves to B; one user registering both spellings has
    one device; it is listed, and removed, in lower case (an FCM token keeps its case)."""
    (_, ta), (_, tb) = api.user(), api.user()
    device = ios_token()
    assert register(api, ta, device.upper()).status_code == 200
    assert register(api, tb, device).status_code == 200
    assert devices(api, ta) == []
    assert register(api, tb, device.upper()).status_code == 200
    assert [d["token"] for d in devices(api, tb)] == [device]
    r = api.http.delete(f"{DEVICES}/{device.upper()}", headers={"Authorization": f"Bearer {tb}"})
    assert r.status_code == 200, r.text
    assert devices(api, tb) == []
    android = "fcm:" + "Ab" * 40
    assert register(api, tb, android, "android").status_code == 200
    assert [d["token"] for d in devices(api, tb)] == [android]


def test_registering_again_is_recorded_and_idempotency_key_replays(api: Api) -> None:
    """Each registration appends (its time matters for dead-token reports); a retry with the
    same Idempotency-Key appends nothing more."""
    _, tok = api.user()
    device = android_token()
    key = {"Idempotency-Key": secrets.token_hex(8)}
    for _ in range(3):
        r = post_device(api, tok, {"platform": "android", "token": device}, key)
        assert r.status_code == 200, r.text
    assert len(stream_types(api, device)) == 1
    assert register(api, tok, device, "android").status_code == 200
    assert len(stream_types(api, device)) == 2


@pytest.mark.parametrize(("fields", "words"), [
    ({"platform": "windows", "token": "ab" * 32}, "platform must be one of: ios, android"),
    ({"token": "ab" * 32}, "platform is required"),
    ({"platform": "ios"}, "token is required"),
    ({"platform": "ios", "token": ""}, "token must not be empty"),
    ({"platform": "android", "token": "x" * 513}, "token must be at most 512 characters"),
    ({"platform": "ios", "token": "zz" * 32}, "APNs device token"),
    ({"platform": "ios", "token": "ab" * 8}, "APNs device token"),
    ({"platform": "android", "token": "bad token with spaces"}, "FCM registration token"),
    ({"platform": "ios", "token": "ab" * 32, "app": "com.example/../x"}, "app must be"),
    ({"platform": "ios", "token": "ab" * 32, "locale": "english please"}, "locale must be"),
])
def test_bad_registrations_are_refused_and_change_nothing(
        api: Api, fields: dict[str, str], words: str) -> None:
    """Each malformed field gets a 400 naming it, and no device or event appears."""
    _, tok = api.user()
    refused(post_device(api, tok, fields), words)
    assert devices(api, tok) == []
    if fields.get("token"):
        assert stream_types(api, fields["token"]) == []


def test_device_endpoints_need_a_token(api: Api) -> None:
    """Without an access token every device and settings endpoint answers 400
    OAuthParameterException."""
    for r in (post_device(api, None, {"platform": "ios", "token": ios_token()}),
              api.get(DEVICES, None), api.http.delete(f"{DEVICES}/{ios_token()}"),
              api.get(SETTINGS, None), api.post(SETTINGS, None, likes="false")):
        assert r.status_code == 400
        assert r.json()["meta"]["error_type"] == "OAuthParameterException"


def test_settings_switch_kinds_and_refuse_unknown_ones(api: Api) -> None:
    """All kinds are on by default; a POST switches the named ones and keeps the others;
    unknown kinds, non-booleans and an empty POST are refused without a change."""
    _, tok = api.user()
    everything = {"likes": True, "comments": True, "mentions": True, "follows": True,
                  "follow_requests": True, "follow_approvals": True}
    assert api.get(SETTINGS, tok).json()["data"] == everything
    r = api.post(SETTINGS, tok, likes="false", follows="false")
    assert r.status_code == 200, r.text
    expected = everything | {"likes": False, "follows": False}
    assert r.json()["data"] == expected
    r = api.post(SETTINGS, tok, follows="true")
    assert r.json()["data"] == expected | {"follows": True}
    refused(api.post(SETTINGS, tok, likes="false", pokes="false"), "unknown notification "
            "kind: pokes")
    refused(api.post(SETTINGS, tok, likes="sometimes"), "likes must be a boolean")
    refused(api.post(SETTINGS, tok), "name at least one kind")
    assert api.get(SETTINGS, tok).json()["data"] == expected | {"follows": True}
