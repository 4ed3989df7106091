"""The pure rules of push notifications: devices, who is notified of what, texts, settings."""

from __future__ import annotations

import pytest

from server.domain import notifications as rules
from server.domain.comments import CommentAdded
from server.domain.devices import (
    Device,
    DeviceError,
    DeviceRegistered,
    DeviceUnregistered,
    check_device,
    decide_dead,
    decide_register,
    decide_unregister,
    device_stream,
    token_shard,
)
from server.domain.graph import FollowApproved, FollowRequested, UserFollowed
from server.domain.likes import MediaLiked
from server.domain.notifications import Pending
from server.domain.push import Unregistered
from workers import handlers
from workers.consumers import CONSUMERS, OnFailure

IOS = "ab" * 32
ALICE, BOB, CAROL = 1, 2, 3


def device(user: int = ALICE, registered_ms: int = 1000) -> Device:
    return Device(IOS, user, "ios", "com.example", "en", registered_ms)


def test_token_placement_is_stable_and_spread() -> None:
    """A token's shard and stream depend on the token alone, and tokens spread over shards."""
    assert token_shard(IOS, 16) == token_shard(IOS, 16)
    assert len({token_shard(f"{i:064x}", 16) for i in range(200)}) == 16
    assert device_stream(IOS) == device_stream(IOS) != device_stream("cd" * 32)


@pytest.mark.parametrize(("platform", "token", "app", "locale", "words"), [
    ("web", IOS, "", "", "platform"),
    ("ios", "", "", "", "must not be empty"),
    ("ios", "ab" * 300, "", "", "at most 512"),
    ("ios", "abc" * 23, "", "", "even number"),
    ("ios", "gg" * 32, "", "", "hexadecimal"),
    ("android", "a b", "", "", "FCM registration token"),
    ("ios", IOS, "-leading", "", "app must be"),
    ("ios", IOS, "", "x", "locale must be"),
])
def test_bad_devices_are_named(platform: str, token: str, app: str, locale: str,
                               words: str) -> None:
    """Each malformed registration field raises DeviceError naming it."""
    with pytest.raises(DeviceError, match=words):
        check_device(platform, token, app, locale)


def test_good_devices_pass() -> None:
    """APNs hex tokens, FCM tokens with : - _ and bundle ids and locales are accepted."""
    check_device("ios", IOS, "com.example.app", "en-US")
    check_device("android", "dGVzdA:APA91b-x_y.z", "com.example.app", "pt_BR")


def test_registration_moves_a_token_from_another_user() -> None:
    """A new token registers; the same owner registers again; another user's token moves."""
    assert decide_register(None, ALICE, "ios", IOS, "", "") == [
        DeviceRegistered(token=IOS, user_id=ALICE, platform="ios", app="", locale="")]
    assert len(decide_register(device(ALICE), ALICE, "ios", IOS, "", "")) == 1
    moved = decide_register(device(ALICE), BOB, "ios", IOS, "", "")
    assert moved[0] == DeviceUnregistered(token=IOS, user_id=ALICE, reason="moved")
    assert moved[1].user_id == BOB  # type: ignore[attr-defined]


def test_only_the_owner_unregisters() -> None:
    """Removing a token that is not yours (or nobody's) decides nothing."""
    assert decide_unregister(device(ALICE), BOB) == []
    assert decide_unregister(None, ALICE) == []
    assert decide_unregister(device(ALICE), ALICE)[0].reason == "user"  # type: ignore[attr-defined]


def test_dead_tokens_respect_a_later_registration() -> None:
    """A provider's dead-token verdict unregisters, unless the token was registered after
    the service's timestamp or has moved to another user."""
    dead = Unregistered("Unregistered", 5000)
    [event] = decide_dead(device(registered_ms=4000), ALICE, dead)
    assert event == DeviceUnregistered(token=IOS, user_id=ALICE, reason="provider",
                                       at_ms=5000, detail="Unregistered")
    assert decide_dead(device(registered_ms=6000), ALICE, dead) == []
    assert decide_dead(device(BOB), ALICE, dead) == []
    assert len(decide_dead(device(registered_ms=9999), ALICE, Unregistered("BadDeviceToken"))) == 1


def test_plan_names_the_recipient_and_group_and_never_the_actor() -> None:
    """Likes and comments go to the owner, mentions to the mentioned, follows to the
    followee, approvals to the follower; nobody is told about their own doing."""
    like = rules.plan(MediaLiked(media_id=10, media_owner=ALICE, user_id=BOB), 100, 1)
    assert [(p.recipient, p.kind, p.group, p.actor) for p in like] == [
        (ALICE, "likes", "like:10", BOB)]
    assert rules.plan(MediaLiked(media_id=10, media_owner=ALICE, user_id=ALICE), 100, 1) == []
    comment = CommentAdded(comment_id=20, media_id=10, media_owner=ALICE, author=BOB,
                           text="hi @carol @bob", tags=(), mentions=("carol", "bob"))
    planned = rules.plan(comment, 101, 1, mentioned=[CAROL, BOB])
    assert [(p.recipient, p.kind, p.group) for p in planned] == [
        (ALICE, "comments", "comment:10"), (CAROL, "mentions", "mention:20")]
    follows = [(e, rules.plan(e, 102, 1)[0]) for e in (
        UserFollowed(follower=BOB, followee=ALICE), FollowRequested(follower=BOB, followee=ALICE),
        FollowApproved(follower=BOB, followee=ALICE))]
    assert [(p.recipient, p.kind, p.actor, p.check) for _, p in follows] == [
        (ALICE, "follows", BOB, "following"), (ALICE, "follow_requests", BOB, "requesting"),
        (BOB, "follow_approvals", ALICE, "approved")]


def cause(actor: int, event_id: int, kind: str = "likes") -> Pending:
    return Pending(ALICE, kind, "like:10", f"l:10:{actor}", actor, event_id, event_id, "like",
                   media_id=10)


def test_deliverable_drops_off_kinds_blocked_actors_and_fallen_causes() -> None:
    """Kinds switched off, blocked actors and causes no longer standing are left out; the
    rest come newest first, one per actor."""
    causes = [cause(BOB, 1), cause(CAROL, 2), cause(4, 3), cause(BOB, 4)]
    kept = rules.deliverable(causes, frozenset(), frozenset({CAROL}), lambda p: p.actor != 4)
    assert [(p.actor, p.event_id) for p in kept] == [(BOB, 4)]
    assert rules.deliverable(causes, frozenset({"likes"}), frozenset(), lambda p: True) == []


def test_texts_name_the_first_and_count_the_others() -> None:
    """One, two and many likers; several followers; a comment's own words."""
    names = {n: f"user{n}" for n in range(20)}.__getitem__
    assert rules.text([cause(1, 1)], names) == "user1 liked your photo"
    assert rules.text([cause(1, 2), cause(2, 1)], names) == "user1 and user2 liked your photo"
    assert rules.text([cause(n, 20 - n) for n in range(1, 14)], names) == \
        "user1 and 12 others liked your photo"
    follows = [Pending(ALICE, "follows", "follow", f"f:{n}", n, n, n, "following")
               for n in (5, 6, 7)]
    assert rules.text(follows, names) == "user5 and 2 others started following you"
    one = Pending(ALICE, "comments", "comment:10", "c:9", 5, 9, 9, "comment", 10, 9, "nice")
    assert rules.text([one], names) == "user5 commented: nice"


def test_a_notification_id_is_stable_per_window_and_device() -> None:
    """Computed again (a redone task), a notification has the same id; another window or
    device gets another; the collapse id is the group."""
    n1 = rules.notification(device(), ALICE, "like:10", 100, [cause(BOB, 100)], "x")
    n2 = rules.notification(device(), ALICE, "like:10", 100, [cause(BOB, 100)], "x")
    n3 = rules.notification(device(), ALICE, "like:10", 101, [cause(BOB, 101)], "x")
    assert n1.id == n2.id != n3.id
    assert n1.collapse_key == "like:10" and n1.topic == "com.example"
    assert n1.data == {"kind": "likes", "user_id": str(BOB), "count": "1", "media_id": "10"}


def test_settings_switch_only_what_changes() -> None:
    """Switching a kind off then on, or to what it already is, decides accordingly."""
    [off] = rules.decide_settings(ALICE, frozenset(), {"likes": False, "follows": True})
    assert off.disabled == ("likes",)  # type: ignore[attr-defined]
    assert rules.decide_settings(ALICE, frozenset({"likes"}), {"likes": False}) == []
    [on] = rules.decide_settings(ALICE, frozenset({"likes", "follows"}), {"likes": True})
    assert on.disabled == ("follows",)  # type: ignore[attr-defined]
    assert rules.settings_json(frozenset({"likes"}))["likes"] is False


def test_the_push_consumer_is_a_side_effect() -> None:
    """Replay never runs the push consumer, a parked event does not stop it, and a new
    deployment starts it at the head (no pushes about the past)."""
    handlers.load()
    c = CONSUMERS.get("push")
    assert c.side_effect and c.from_head and c.on_failure is OnFailure.SKIP
