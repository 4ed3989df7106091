"""The ``webhooks`` consumer reads only the subscriptions a batch of new media could match
(``server.domain.subscriptions.lookup``, ``server.store.subscriptions.candidates``): the
store's query returns exactly those, from every shard of both databases, through the
partial indexes; and driven end to end, subscriptions of other users, tags, locations and
places receive nothing while the matching ones receive their updates."""

from __future__ import annotations

import math

from scripts.seed import account, ready_medium
from server.db import Txn
from server.domain.geo import EARTH_RADIUS_M
from server.domain.ids import shard_of
from server.domain.log import NewEvent
from server.domain.shards import schema_name
from server.domain.subscriptions import (
    NewMedium,
    SubscriptionDeleted,
    SubscriptionDisabled,
    lookup,
    subscription_stream,
)
from server.store import subscriptions
from server.store.tokens import Tokens
from tests.drive import Driver
from tests.fakes.hub import FakeHub
from tests.integration.apiclient import Api
from tests.integration.conftest import Env
from tests.integration.hookkit import appended, deliver_all, new_app

PARIS = (48.8584, 2.2945)
SYDNEY = (-33.8568, 151.2153)
DATELINE = (10.0, 179.999)  # a point whose 5 km box crosses the antimeridian


def north(point: tuple[float, float], meters: float) -> tuple[float, float]:
    return point[0] + math.degrees(meters / EARTH_RADIUS_M), point[1]


def test_candidates_are_exactly_what_the_lookup_names(env: Env) -> None:
    """Over two shards of each database: user subscriptions of the batch's owners (a private
    one's too) and of every user, tag and location subscriptions of the public media only,
    geographies whose centre is within the 5 km box of a public medium's point (across the
    antimeridian too), and nothing disabled, deleted, or of another object with the same
    id; a batch of a private account's media alone reads its user subscriptions only."""
    shards = [s for db in env.router.databases() for s in env.router.shards_of(db)[:2]]
    targets: dict[str, tuple[str, str | None, tuple[float, float, float] | None]] = {
        "user 7": ("user", "7", None), "user 8": ("user", "8", None),
        "user 9": ("user", "9", None), "user all": ("user", None, None),
        "user 10": ("user", "10", None), "user 42": ("user", "42", None),
        "tag sunset": ("tag", "sunset", None), "tag secret": ("tag", "secret", None),
        "tag moon": ("tag", "moon", None),
        "location 42": ("location", "42", None), "location 43": ("location", "43", None),
        "location 7": ("location", "7", None),
        "geo paris": ("geography", None, (*PARIS, 100.0)),
        "geo 4 km north": ("geography", None, (*north(PARIS, 4000), 100.0)),
        "geo 6 km north": ("geography", None, (*north(PARIS, 6000), 5000.0)),
        "geo across": ("geography", None, (DATELINE[0], -179.999, 1000.0)),
        "geo sydney": ("geography", None, (*SYDNEY, 1000.0)),
        "tag sunset disabled": ("tag", "sunset", None),
        "user all deleted": ("user", None, None),
    }
    ids = {name: appended(env, "app", "https://app.example/cb", kind, object_id, circle,
                          shard=shards[i % len(shards)])
           for i, (name, (kind, object_id, circle)) in enumerate(targets.items())}
    ended = {"tag sunset disabled": SubscriptionDisabled(
        subscription_id=ids["tag sunset disabled"], client_id="app", reason="gone"),
             "user all deleted": SubscriptionDeleted(
        subscription_id=ids["user all deleted"], client_id="app")}
    for name, event in ended.items():
        env.store.append(shard_of(ids[name]), subscription_stream(ids[name]),
                         [NewEvent(event)], expected_version=1)
    batch = [NewMedium(1, 7, False, ("sunset",), 42, *PARIS),
             NewMedium(2, 8, True, ("secret",), 43, *SYDNEY),
             NewMedium(3, 9, False, (), None, *DATELINE)]
    expected = ["user 7", "user 8", "user 9", "user all", "tag sunset", "location 42",
                "geo paris", "geo 4 km north", "geo across"]
    found = subscriptions.candidates(env.router, lookup(batch))
    assert [s.id for s in found] == sorted(ids[n] for n in expected)
    assert {env.router.database(shard_of(s.id)).dsn for s in found} == {
        db.dsn for db in env.router.databases()}
    assert all(s.status == "active" for s in found)
    private_only = subscriptions.candidates(env.router, lookup(batch[1:2]))
    assert [s.id for s in private_only] == sorted(ids[n] for n in ("user 8", "user all"))


def test_the_lookup_uses_the_partial_indexes(env: Env) -> None:
    """In a shard of 20,000 subscriptions (most of them active) the lookup finds user, tag and
    location subscriptions through ``subscriptions_object`` and geographies through
    ``subscriptions_geography``, never scanning the table."""
    shard = env.router.shards_of(env.router.databases()[0])[0]
    table = f"{schema_name(shard)}.subscriptions"
    db = env.router.database(shard)

    def fill(txn: Txn) -> None:
        txn.execute(
            f"INSERT INTO {table} (id, client_id, object, object_id, lat, lng, radius_m, "
            "callback_url, status, created_ms) "
            "SELECT g, 'app-' || g % 500, (ARRAY['user', 'tag', 'location', 'geography'])"
            "[g % 4 + 1], CASE WHEN g % 4 < 3 THEN 'k' || g END, "
            "CASE WHEN g % 4 = 3 THEN -80 + g % 1600 * 0.1 END, "
            "CASE WHEN g % 4 = 3 THEN -179 + g % 3580 * 0.1 END, 1000, 'https://a.example/', "
            "CASE WHEN g % 10 = 0 THEN 'disabled' ELSE 'active' END, 0 "
            "FROM generate_series(1, 20000) g")
        txn.execute(f"ANALYZE {table}")

    db.run_interaction("fill", fill)
    batch = [NewMedium(1, 7, False, ("sunset", "k5"), 42, *PARIS)]
    plan = "\n".join(r[0] for r in db.run_interaction(
        "explain", Txn.fetchall, "EXPLAIN " + subscriptions.candidates_sql([shard]),
        subscriptions.candidates_params(lookup(batch))))
    assert "Bitmap Index Scan on subscriptions_object" in plan, plan
    assert "Index Scan on subscriptions_geography" in plan, plan
    assert "Seq Scan" not in plan, plan


def test_a_batch_reaches_only_the_subscriptions_of_its_media(env: Env) -> None:
    """Subscriptions of another user, tag, location or place (one whose box holds the point
    but whose circle does not), of a user who did not authorize the app, and a private
    account's tag and place get nothing; the matching ones, in two apps, get exactly their
    media. A subscription made between two batches gets the second one's medium only."""
    (one, one_secret), (two, two_secret) = new_app(env, "One"), new_app(env, "Two")
    alice = account(env.store, env.router, Api.name())
    bob = account(env.store, env.router, Api.name())
    carol = account(env.store, env.router, Api.name(), private=True)
    tokens = Tokens(env.redis, token_ttl=3600, code_ttl=60, session_ttl=60)
    for user in (alice, carol):
        tokens.issue(user, one, "basic", False)
    with FakeHub(one_secret) as hub_one, FakeHub(two_secret) as hub_two:
        targets = {
            "alice": (hub_one, one, "user", str(alice), None),
            "bob": (hub_one, one, "user", str(bob), None),
            "everyone": (hub_one, one, "user", None, None),
            "sunset": (hub_one, one, "tag", "sunset", None),
            "moon": (hub_one, one, "tag", "moon", None),
            "here": (hub_one, one, "location", "42", None),
            "there": (hub_one, one, "location", "43", None),
            "paris": (hub_one, one, "geography", None, (*PARIS, 500.0)),
            "near miss": (hub_one, one, "geography", None, (*north(PARIS, 3000), 1000.0)),
            "sydney": (hub_one, one, "geography", None, (*SYDNEY, 5000.0)),
            "two sunset": (hub_two, two, "tag", "sunset", None),
            "two alice": (hub_two, two, "user", str(alice), None),
        }
        subs = {name: (hub, appended(env, app, hub.hook_url, kind, object_id, circle))
                for name, (hub, app, kind, object_id, circle) in targets.items()}
        first = ready_medium(env.store, env.router, alice, "#sunset", place=PARIS,
                             location_id=42)
        secret = ready_medium(env.store, env.router, carol, "#sunset", place=PARIS,
                              location_id=42)
        driver = Driver(env)
        driver.drive("webhooks")
        subs["late"] = (hub_one, appended(env, one, hub_one.hook_url, "tag", "sunset"))
        second = ready_medium(env.store, env.router, alice, "again #sunset", place=SYDNEY)
        driver.drive("webhooks")
        assert set(deliver_all(env)) == {"done"}
        got = {name: hub.of(str(sub_id)) for name, (hub, sub_id) in subs.items()}
    media = {"first": str(first), "secret": str(secret), "second": str(second)}
    expected = {"alice": ["first", "second"], "everyone": ["first", "secret", "second"],
                "sunset": ["first", "second"], "here": ["first"], "paris": ["first"],
                "sydney": ["second"], "two sunset": ["first", "second"], "late": ["second"]}
    assert got == {name: sorted(media[m] for m in expected.get(name, [])) for name in subs}
