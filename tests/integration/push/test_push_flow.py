"""Notifications end to end: API, log, relay, worker pool, push consumer and task, to the
local APNs (HTTP/2, JWT, topic, push type checked) and FCM servers; what the rules keep out."""

from __future__ import annotations

import concurrent.futures

from tests.integration.push.flowkit import Flow


def test_a_like_reaches_the_owners_ios_and_android_devices(flow: Flow) -> None:
    """One like: one notification per device, with APNs' headers (topic, push type, collapse
    id, an apns-id) and FCM's collapse key; the owner's own like of the medium adds nothing."""
    owner, liker = flow.person(), flow.person(ios=False, android=False)
    m = flow.medium(owner)
    flow.like(owner, m)
    flow.like(liker, m)
    text = f"{liker.username} liked your photo"
    assert flow.wait_ios(owner) == [text]
    assert flow.wait_android(owner) == [text]
    [seen] = flow.apns(owner)
    assert seen.headers["apns-topic"] == "com.example.shutterlog"
    assert seen.headers["apns-push-type"] == "alert"
    assert seen.headers["apns-collapse-id"] == f"like:{m}"
    assert seen.payload["kind"] == "likes" and seen.payload["media_id"] == str(m)
    [sent] = flow.fcm(owner)
    assert sent.message["android"]["collapse_key"] == f"like:{m}"
    assert sent.message["data"]["count"] == "1"


def test_a_burst_of_likes_collapses_into_one(flow: Flow) -> None:
    """Twelve likes within the window make one notification per device: "x and 11 others"."""
    owner = flow.person()
    likers = [flow.person(ios=False, android=False) for _ in range(12)]
    m = flow.medium(owner)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda p: flow.like(p, m), likers))
    [body] = flow.wait_ios(owner)
    names = {p.username for p in likers}
    first, rest = body.split(" and ", 1)
    assert first in names and rest == "11 others liked your photo"
    assert flow.wait_android(owner) == [body]
    flow.settle()
    assert len(flow.apns(owner)) == 1 and len(flow.fcm(owner)) == 1


def test_each_kind_has_its_words(flow: Flow) -> None:
    """Comments, mentions, new followers, follow requests and approvals each notify the
    right person with the activity feed's words."""
    alice = flow.person(ios=True, android=False, is_private="true")
    bob, carol = flow.person(ios=True, android=False), flow.person(ios=True, android=False)
    m = flow.medium(bob)
    flow.comment(alice, m, f"nice one @{carol.username}")
    assert flow.wait_ios(bob) == [f"{alice.username} commented: nice one @{carol.username}"]
    assert flow.wait_ios(carol) == [
        f"{alice.username} mentioned you: nice one @{carol.username}"]
    flow.relate(carol, alice, "follow")  # alice is private: a request
    assert flow.wait_ios(alice) == [f"{carol.username} requested to follow you"]
    flow.relate(alice, carol, "approve")
    assert flow.wait_ios(carol, 2)[1] == f"{alice.username} accepted your follow request"
    flow.relate(alice, bob, "follow")  # bob is public
    assert flow.wait_ios(bob, 2)[1] == f"{alice.username} started following you"


def test_settings_blocks_and_deletions_keep_notifications_out(flow: Flow) -> None:
    """A kind switched off, an actor blocked before the window ends, a medium deleted before
    it ends: none of them notifies; a comment afterwards still does (the control)."""
    owner = flow.person(ios=True, android=False)
    fan, pest, late = (flow.person(ios=False, android=False) for _ in range(3))
    r = flow.api.post("/v1/users/self/notification_settings", owner.token, likes="false")
    assert r.status_code == 200, r.text
    m1, m2, m3 = flow.medium(owner), flow.medium(owner), flow.medium(owner)
    flow.like(fan, m1)  # likes are off
    flow.comment(pest, m2, "hello")
    flow.relate(owner, pest, "block")  # blocked before the comment's window ends
    flow.comment(late, m3, "gone soon")
    r = flow.api.http.delete(f"/v1/media/{m3}",
                             headers={"Authorization": f"Bearer {owner.token}"})
    assert r.status_code == 200, r.text
    control = flow.medium(owner)
    flow.comment(fan, control, "still here")
    assert flow.wait_ios(owner) == [f"{fan.username} commented: still here"]
    flow.settle()
    assert flow.ios_bodies(owner) == [f"{fan.username} commented: still here"]


def test_the_rate_cap_drops_what_exceeds_it(flow: Flow) -> None:
    """With a cap of 4 a minute, six notifications in a row reach the device four times."""
    owner, fan = flow.person(ios=True, android=False), flow.person(ios=False, android=False)
    for m in [flow.medium(owner) for _ in range(6)]:
        flow.like(fan, m)
    flow.wait_ios(owner, 4)
    flow.settle()
    assert len(flow.ios_bodies(owner)) == 4


def test_a_token_goes_to_its_newest_owner(flow: Flow) -> None:
    """After B registers A's phone, likes of B's photos reach it and A's do not (A's other
    device still gets them)."""
    a, b, fan = flow.person(), flow.person(ios=False, android=False), \
        flow.person(ios=False, android=False)
    b.ios = flow.register(b, a.ios, "ios")
    assert flow.devices(a) == [a.android]
    ma, mb = flow.medium(a), flow.medium(b)
    flow.like(fan, ma)
    flow.like(fan, mb)
    flow.wait_android(a)
    flow.wait_ios(b)
    flow.settle()
    assert [r.headers["apns-collapse-id"] for r in flow.apns(b)] == [f"like:{mb}"]
