"""``/v1/subscriptions``: webhook subscriptions in the shape of the Instagram real-time API,
and ``/v1/geographies/{id}/media/recent``.

Apps, not users, call these: they authenticate with ``client_id`` and ``client_secret``
(compared in constant time with the app's sealed secret), not an access token. Creating a
subscription checks the target (``server/domain/subscriptions.py``), refuses a callback URL
whose host is or resolves to a private, loopback, link-local or metadata address (unless
``outbound.allow_hosts`` allows it), then verifies the callback: a ``GET`` with
``hub.mode=subscribe``, ``hub.challenge`` and ``hub.verify_token`` that must answer 2xx with
the challenge, made in the threadpool (handlers run there) with ``outbound.timeout``. Only
then is ``SubscriptionCreated`` appended, on ``subscription:{id}`` in the app's shard, after
counting the app's subscriptions again under its advisory lock (``webhooks.max_subscriptions``
holds against concurrent requests).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from klein import Klein

from server import callbacks
from server.api.endpoint import API, Call, Reply
from server.api.envelope import APIError, invalid, not_found
from server.api.mediaview import MEDIA_LIST, public_objects
from server.api.params import Param
from server.context import ServiceContext
from server.db import RetryTransaction, Txn
from server.domain import geo
from server.domain.log import AppendRequest, NewEvent, StreamConflict
from server.domain.oauth import app_shard
from server.domain.outbound import UnsafeURL
from server.domain.subscriptions import (
    ASPECTS,
    OBJECTS,
    Subscription,
    SubscriptionCreated,
    SubscriptionDeleted,
    SubscriptionError,
    parse_target,
    secret_matches,
    subscription_stream,
)
from server.outbound import check_url, configured_client, policy_from
from server.shards import mapped_shard
from server.store import accounts, apps
from server.store import subscriptions as store
from server.store.apps import App

SUBSCRIPTION: dict[str, Any] = {
    "type": "object",
    "required": ["id", "type", "object", "object_id", "aspect", "callback_url", "status"],
    "properties": {
        "id": {"type": "string"}, "type": {"type": "string", "enum": ["subscription"]},
        "object": {"type": "string", "enum": list(OBJECTS)},
        "object_id": {"oneOf": [{"type": "string"}, {"type": "null"}]},
        "aspect": {"type": "string", "enum": list(ASPECTS)},
        "callback_url": {"type": "string"},
        "status": {"type": "string", "enum": ["active", "disabled"]},
        "disabled_reason": {"type": "string"}, "disabled_time": {"type": "string"},
        "lat": {"type": "number"}, "lng": {"type": "number"}, "radius": {"type": "number"},
    },
}
CLIENT_ID = Param("client_id", required=True, max_length=64, description="the app's client id")
CLIENT_SECRET = Param("client_secret", required=True, max_length=200,
                      description="the app's client secret")
CLIENT_ERROR = "OAuthClientException"


def subscription_json(s: Subscription) -> dict[str, Any]:
    out: dict[str, Any] = {"id": str(s.id), "type": "subscription", "object": s.object,
                           "object_id": s.shown_object_id, "aspect": "media",
                           "callback_url": s.callback_url, "status": s.status}
    if s.object == "geography":
        out |= {"lat": s.lat, "lng": s.lng, "radius": s.radius_m}
    if s.status == "disabled":
        out |= {"disabled_reason": s.reason,
                "disabled_time": str((s.disabled_ms or s.created_ms) // 1000)}
    return out


def client_app(call: Call, with_secret: bool = True) -> App:
    """The calling app: its ``client_id`` must name a live app and, ``with_secret``,
    ``client_secret`` must be its secret (constant-time comparison); an app created with
    ``--require-signed`` must sign the request (``sig``)."""
    app = apps.get(call.ctx.router, call.params["client_id"])
    if app is None or app.revoked:
        raise APIError(400, CLIENT_ERROR, "Invalid client_id")
    if with_secret and not secret_matches(app.secret(call.ctx.box),
                                          call.params["client_secret"]):
        raise APIError(400, CLIENT_ERROR, "Invalid client_secret")
    if app.require_signed and "sig" not in call.query and "sig" not in call.body:
        # (a sig that is given was checked against this app by the pipeline)
        raise APIError(403, "OAuthForbiddenException",
                       "Invalid signed-request: Missing required parameter 'sig'")
    return app


def subscription_error(message: str) -> APIError:
    return APIError(400, "APISubscriptionError", message)


def routes(app: Klein, ctx: ServiceContext) -> None:
    api = API(app, ctx)

    def in_app_shard(client_id: str, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        shard = app_shard(client_id, ctx.router.count)
        return ctx.router.database(shard).run_interaction(name, fn, shard, *args)

    @api.endpoint(
        "POST", "/v1/subscriptions", "Subscribe a callback to new media", scope=None,
        tag="subscriptions", data=SUBSCRIPTION, body_types=("application/x-www-form-urlencoded",),
        params=(
            Param("client_id", where="body", required=True, max_length=64),
            Param("client_secret", where="body", required=True, max_length=200),
            Param("object", where="body", required=True, enum=OBJECTS),
            Param("aspect", where="body", required=True, enum=ASPECTS),
            Param("object_id", where="body", max_length=100,
                  description="tag name, location id, or user id (user: optional)"),
            Param("lat", where="body", max_length=40, description="geography: latitude"),
            Param("lng", where="body", max_length=40, description="geography: longitude"),
            Param("radius", where="body", max_length=40,
                  description="geography: meters, above 0, at most 5,000 (default 1,000)"),
            Param("callback_url", where="body", required=True, max_length=2000),
            Param("verify_token", where="body", default="", max_length=200,
                  description="sent back as hub.verify_token in the verification request"),
        ),
        description="The callback is verified first: GET callback_url?hub.mode=subscribe&"
        "hub.challenge=X&hub.verify_token=T must answer 2xx with X as its body "
        "(APISubscriptionError otherwise). Callback URLs on private, loopback, link-local "
        "or metadata addresses are refused.")
    def create_subscription(call: Call) -> Reply:
        client = client_app(call)
        p = call.params
        try:
            target = parse_target(p)
        except SubscriptionError as e:
            raise invalid(str(e)) from None
        policy = policy_from(ctx.config)
        try:
            check_url(p["callback_url"], policy)
        except UnsafeURL as e:
            raise invalid(f"callback_url: {e}") from None
        if target.object == "location" and target.object_id is not None and \
                ctx.locations.get(int(target.object_id)) is None:
            raise invalid(f"object_id: no location {target.object_id}")
        if target.object == "user" and target.object_id is not None and (
                mapped_shard(ctx.router, int(target.object_id)) is None
                or not accounts.users_by_id(ctx.router, [int(target.object_id)])):
            raise invalid(f"object_id: no user {target.object_id}")
        key = call.idempotency_key(f"app:{client.client_id}")
        first = in_app_shard(client.client_id, "subscription_replayed", replayed, key)
        if first is not None:
            return Reply(subscription_json(first))
        in_app_shard(client.client_id, "subscriptions", within_limit, client.client_id)
        with configured_client(ctx.config) as http:
            failure = callbacks.verify(http, p["callback_url"], p["verify_token"],
                                       secrets.token_urlsafe(16))
        if failure is not None:
            raise subscription_error(f"callback_url verification failed: {failure}")

        def txn_fn(txn: Txn, shard: int) -> Subscription:
            again = replayed(txn, shard, key)
            if again is not None:
                return again
            store.lock_app_txn(txn, client.client_id)  # concurrent requests count in turn
            within_limit(txn, shard, client.client_id)
            sub_id = accounts.new_id(txn, shard)
            event = SubscriptionCreated(
                subscription_id=sub_id, client_id=client.client_id, object=target.object,
                object_id=target.object_id, lat=target.lat, lng=target.lng,
                radius_m=target.radius_m, callback_url=p["callback_url"])
            ctx.store.append_txn(txn, [AppendRequest(
                shard, subscription_stream(sub_id), (NewEvent(event),), expected_version=0,
                idempotency_key=key)])
            return only(txn, shard, client.client_id, sub_id)

        return Reply(subscription_json(in_app_shard(client.client_id, "subscribe", txn_fn)))

    def within_limit(txn: Txn, shard: int, client_id: str) -> None:
        """Refuse a new subscription of an app holding ``webhooks.max_subscriptions``: once
        before the (slow) verification, for an early answer, and again, under the app's lock,
        in the transaction that appends it."""
        limit = ctx.config.webhooks.max_subscriptions
        if len(store.of_app_txn(txn, shard, client_id)) >= limit:
            raise subscription_error(f"an app may hold at most {limit} subscriptions; delete "
                                     "some first")

    def replayed(txn: Txn, shard: int, key: str | None) -> Subscription | None:
        """The subscription a retried request (same Idempotency-Key) created, if any."""
        found = ctx.store.replayed_txn(txn, shard, key) if key is not None else None
        if found is None:
            return None
        event = ctx.store.get_txn(txn, found.event_ids[0])
        assert event is not None and isinstance(event.data, SubscriptionCreated)
        return only(txn, shard, event.data.client_id, event.data.subscription_id)

    def only(txn: Txn, shard: int, client_id: str, sub_id: int) -> Subscription:
        found = [s for s in store.of_app_txn(txn, shard, client_id) if s.id == sub_id]
        if not found:
            raise not_found("this subscription was deleted")
        return found[0]

    @api.endpoint("GET", "/v1/subscriptions", "The app's subscriptions", scope=None,
                  tag="subscriptions", params=(CLIENT_ID, CLIENT_SECRET),
                  data={"type": "array", "items": SUBSCRIPTION},
                  description="Active and disabled ones; a disabled subscription says why "
                  "(disabled_reason) and since when (disabled_time).")
    def list_subscriptions(call: Call) -> Reply:
        client = client_app(call)
        return Reply([subscription_json(s) for s in in_app_shard(
            client.client_id, "subscriptions", store.of_app_txn, client.client_id)])

    @api.endpoint(
        "DELETE", "/v1/subscriptions", "Delete subscriptions", scope=None, tag="subscriptions",
        data={"type": "null"},
        params=(CLIENT_ID, CLIENT_SECRET,
                Param("id", pattern=r"^[0-9]{1,19}$", description="one subscription"),
                Param("object", enum=("all", *OBJECTS),
                      description="every subscription to this kind of object, or all")),
        description="Give id or object (not both).")
    def delete_subscriptions(call: Call) -> Reply:
        client = client_app(call)
        sub_id, obj = call.params["id"], call.params["object"]
        if (sub_id is None) == (obj is None):
            raise invalid("give id or object (all, user, tag, location, geography), not both")

        def txn_fn(txn: Txn, shard: int) -> None:
            held = store.of_app_txn(txn, shard, client.client_id)
            if sub_id is not None:
                doomed = [s for s in held if s.id == int(sub_id)]
                if not doomed:
                    raise not_found(f"no subscription {sub_id} of this app")
            else:
                doomed = [s for s in held if obj in ("all", s.object)]
            requests = []
            for s in doomed:
                stream = subscription_stream(s.id)
                event = SubscriptionDeleted(subscription_id=s.id, client_id=client.client_id)
                requests.append(AppendRequest(
                    shard, stream, (NewEvent(event),),
                    expected_version=ctx.store.stream_version_txn(txn, stream)))
            if requests:
                try:
                    ctx.store.append_txn(txn, requests)
                except StreamConflict as e:  # disabled at this moment: decide again
                    raise RetryTransaction(str(e)) from e

        in_app_shard(client.client_id, "unsubscribe", txn_fn)
        return Reply(None)

    @api.endpoint(
        "GET", "/v1/geographies/{geo_id}/media/recent", "Recent media in a geography",
        scope=None, tag="subscriptions", data=MEDIA_LIST,
        params=(Param("geo_id", where="path", required=True, pattern=r"^[0-9]{1,19}$",
                      description="a geography subscription's id"),
                CLIENT_ID, Param("count", description="how many, 1 to 100 (default 20)"),
                Param("min_id", pattern=r"^[0-9]{1,19}$",
                      description="only media with a higher id")),
        description="Public media in the circle of one of the app's geography subscriptions, "
        "newest first (the geo index). Authenticated with client_id, as the v1 API did.")
    def geography_recent(call: Call) -> Reply:
        client = client_app(call, with_secret=False)
        found = store.get(ctx.router, int(call.params["geo_id"]))
        if found is None or found.object != "geography" or found.status == "deleted" \
                or found.client_id != client.client_id or found.lat is None \
                or found.lng is None or found.radius_m is None:
            raise not_found("no geography of this app with this id")
        try:
            count = geo.parse_count(call.params["count"])
        except geo.GeoValueError as e:
            raise invalid(str(e)) from None
        query = geo.GeoQuery(found.lat, found.lng, found.radius_m,
                             limit=min(geo.MAX_LIMIT, 2 * count + 10))
        low = int(call.params["min_id"] or 0)
        hits = [h.media_id for h in ctx.geo.search(query) if h.media_id > low]
        return Reply(public_objects(call, hits)[:count])
