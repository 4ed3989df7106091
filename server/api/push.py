"""``/v1/users/self/devices`` and ``/v1/users/self/notification_settings``.

A registration is decided and appended in ONE transaction on the token's shard (where its
stream and its ``push_devices`` row live): the row is read and locked, a token held by
someone else moves to the caller (``DeviceUnregistered`` reason ``moved``, then
``DeviceRegistered``, one append). Settings are one event on the caller's shard carrying the
whole set of kinds switched off.
"""

from __future__ import annotations

import hashlib
from typing import Any

from klein import Klein

from server.api.endpoint import API, Call, Reply
from server.api.envelope import invalid, not_found
from server.api.params import Param
from server.context import ServiceContext
from server.db import Txn
from server.domain import devices as rules
from server.domain import notifications as notes
from server.domain.devices import Device, DeviceError
from server.domain.events import Event
from server.domain.ids import shard_of
from server.domain.push import PLATFORMS
from server.interfaces import IEventStore
from server.store import devices, notifications
from server.store.events import append_latest_txn

DEVICE = {"type": "object", "properties": {
    "token": {"type": "string"}, "platform": {"type": "string", "enum": list(PLATFORMS)},
    "app": {"type": "string"}, "locale": {"type": "string"},
    "registered_time": {"type": "string"}}}
SETTINGS = {"type": "object", "properties": {k: {"type": "boolean"} for k in notes.KINDS}}


def device_json(d: Device) -> dict[str, Any]:
    return {"token": d.token, "platform": d.platform, "app": d.app, "locale": d.locale,
            "registered_time": str(d.registered_ms // 1000)}


def register_txn(txn: Txn, store: IEventStore, shard: int, user_id: int, platform: str,
                 token: str, app: str, locale: str, key: str | None) -> Device:
    if key is None or store.replayed_txn(txn, shard, key) is None:
        append_latest_txn(
            txn, store, shard, rules.device_stream(token), lambda: rules.decide_register(
                devices.device_txn(txn, token, lock=True), user_id, platform, token, app,
                locale), user_id, key)
    found = devices.device_txn(txn, token)
    if found is None or found.user_id != user_id:  # a retry after the token moved on
        raise not_found("this device is no longer registered to you")
    return found


def unregister_txn(txn: Txn, store: IEventStore, shard: int, user_id: int, token: str) -> None:
    def decide() -> list[Event]:
        events = rules.decide_unregister(devices.device_txn(txn, token, lock=True), user_id)
        if not events:
            raise not_found("no such device registered to you")
        return events

    append_latest_txn(txn, store, shard, rules.device_stream(token), decide, user_id, None)


def settings_txn(txn: Txn, store: IEventStore, user_id: int, changes: dict[str, bool],
                 key: str | None) -> frozenset[str]:
    shard = shard_of(user_id)
    if key is None or store.replayed_txn(txn, shard, key) is None:
        append_latest_txn(txn, store, shard, notes.settings_stream(user_id), lambda: (
            notes.decide_settings(user_id, notifications.disabled_txn(txn, user_id), changes)),
            user_id, key)
    return notifications.disabled_txn(txn, user_id)


def routes(app: Klein, ctx: ServiceContext) -> None:
    api = API(app, ctx)

    def token_shard(token: str) -> int:
        return rules.token_shard(token, ctx.router.count)

    @api.endpoint(
        "POST", "/v1/users/self/devices", "Register a device for push notifications",
        scope="basic", tag="push", data=DEVICE,
        params=(
            Param("platform", where="body", required=True, enum=PLATFORMS),
            Param("token", where="body", required=True,
                  description="APNs device token (hex) or FCM registration token"),
            Param("app", where="body", default="",
                  description="bundle id (the APNs topic) or package name"),
            Param("locale", where="body", default="", description="e.g. en-US"),
        ),
        description="Appends DeviceRegistered (every time: its time is compared with a "
        "provider's 'unregistered at'). A token registered by another user moves to the "
        "caller (DeviceUnregistered, reason moved, for the other user).",
    )
    def register(call: Call) -> Reply:
        p = call.params
        try:
            rules.check_device(p["platform"], p["token"], p["app"], p["locale"])
        except DeviceError as e:
            raise invalid(str(e)) from None
        token = rules.canonical_token(p["token"]) if p["platform"] == "ios" else p["token"]
        digest = hashlib.sha256(token.encode()).hexdigest()[:16]
        key = call.idempotency_key(f"u{call.user_id}:{digest}")
        shard = token_shard(token)
        device = ctx.router.database(shard).run_interaction(
            "register_device", register_txn, ctx.store, shard, call.user_id, p["platform"],
            token, p["app"], p["locale"], key)
        return Reply(device_json(device))

    @api.endpoint("GET", "/v1/users/self/devices", "The caller's registered devices",
                  scope="basic", tag="push", data={"type": "array", "items": DEVICE})
    def listing(call: Call) -> Reply:
        return Reply([device_json(d) for d in devices.devices_of(ctx.router, call.user_id)])

    @api.endpoint(
        "DELETE", "/v1/users/self/devices/{token}", "Unregister one of the caller's devices",
        scope="basic", tag="push", data={"type": "null"},
        params=(Param("token", where="path", required=True, max_length=rules.TOKEN_MAX),),
        description="Appends DeviceUnregistered (reason user). A token that is not the "
        "caller's: 404. An APNs token's case does not matter.",
    )
    def unregister(call: Call) -> Reply:
        token = rules.canonical_token(call.params["token"])
        shard = token_shard(token)
        ctx.router.database(shard).run_interaction(
            "unregister_device", unregister_txn, ctx.store, shard, call.user_id, token)
        return Reply(None)

    @api.endpoint("GET", "/v1/users/self/notification_settings",
                  "Which kinds of push notification the caller receives", scope="basic",
                  tag="push", data=SETTINGS)
    def get_settings(call: Call) -> Reply:
        disabled = ctx.router.database(shard_of(call.user_id)).run_interaction(
            "notification_settings", notifications.disabled_txn, call.user_id)
        return Reply(notes.settings_json(disabled))

    @api.endpoint(
        "POST", "/v1/users/self/notification_settings",
        "Switch kinds of push notification on or off", scope="basic", tag="push",
        data=SETTINGS,
        params=tuple(Param(k, bool, where="body") for k in notes.KINDS),
        description="Send any of the kinds as true or false; the others keep their value. "
        "Appends NotificationSettingsChanged (nothing when nothing changes).",
    )
    def set_settings(call: Call) -> Reply:
        unknown = sorted(set(call.body) - set(notes.KINDS) - {"access_token", "sig"})
        if unknown:
            raise invalid(f"unknown notification kind: {unknown[0]} "
                          f"(kinds: {', '.join(notes.KINDS)})")
        changes = {k: v for k, v in call.params.items() if v is not None}
        if not changes:
            raise invalid(f"name at least one kind to switch: {', '.join(notes.KINDS)}")
        key = call.idempotency_key(f"u{call.user_id}")
        disabled = ctx.router.database(shard_of(call.user_id)).run_interaction(
            "set_notification_settings", settings_txn, ctx.store, call.user_id, changes, key)
        return Reply(notes.settings_json(disabled))
