"""The real-time WebSocket against a real service, Redis and PostgreSQL, with real clients
over TCP: live frames, authorization, resume without gap or duplicate, reset, slow clients,
bad tokens."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from server.domain.ids import MAX_SHARDS
from server.domain.log import Position
from server.store.realtime import RealtimeStore
from tests.drive import Driver
from tests.helpers import wait_for
from tests.integration.apiclient import Api, sign, start_service
from tests.integration.conftest import Env
from tests.integration.mediakit import post, settle

SERVICE_ENV = {"SHUTTERLOG_REALTIME_MAX_BUFFER_BYTES": "262144"}


class Client:
    """A WebSocket client of the stream that reads JSON frames."""

    def __init__(self, api: Api, token: str | None, sock: socket.socket | None = None,
                 params: dict[str, str] | None = None, **kwargs: Any) -> None:
        query = ({"access_token": token} if token is not None else {}) | (params or {})
        url = api.service.base.replace("http://", "ws://") + "/v1/stream" + (
            f"?{urlencode(query)}" if query else "")
        self.ws: ClientConnection = connect(url, sock=sock, open_timeout=10, **kwargs
                                            ).__enter__()

    def frame(self, timeout: float = 10) -> dict[str, Any]:
        return dict(json.loads(self.ws.recv(timeout)))

    def ready(self) -> dict[str, Any]:
        f = self.frame()
        assert f["type"] == "ready", f
        return f

    def subscribe(self, channel: str, after: str | None = None) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "subscribe", "channel": channel}
        if after is not None:
            frame["after"] = after
        self.ws.send(json.dumps(frame))
        return self.frame()

    def events(self, n: int) -> list[dict[str, Any]]:
        out = [self.frame() for _ in range(n)]
        assert all(f["type"] == "event" for f in out), out
        return out

    def refused(self, timeout: float = 10) -> str:
        """The reason of the 4001 close that comes next (no other frame before it)."""
        with pytest.raises(ConnectionClosed) as closed:
            self.frame(timeout)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001, closed.value
        return closed.value.rcvd.reason

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        c.close()


def open_client(api: Api, token: str | None, made: list[Client], **kwargs: Any) -> Client:
    c = Client(api, token, **kwargs)
    made.append(c)
    return c


def like(api: Api, token: str, media_id: str) -> None:
    r = api.post(f"/v1/media/{media_id}/likes", token)
    assert r.status_code == 200, r.text


def test_like_reaches_a_media_subscriber(api: Api, clients: list[Client]) -> None:
    """Subscribed to media:{id}, a like made through the API arrives as a frame with its log
    position and a cursor; the subscription offers permessage-deflate."""
    a, ta = api.user()
    b, tb = api.user()
    m = post(api, ta)
    c = open_client(api, ta, clients)
    assert c.ready()["user_id"] == a["id"]
    sub = c.subscribe(f"media:{m}")
    assert sub["type"] == "subscribed" and sub["channel"] == f"media:{m}", sub
    like(api, tb, m)
    settle(api.env)
    (f,) = c.events(1)
    assert f["event"] == "MediaLiked" and f["channel"] == f"media:{m}"
    assert f["data"]["user_id"] == b["id"] and f["data"]["media_id"] == m
    shard, _, position = f["position"].partition(":")
    assert Position.parse(position) and shard.isdigit()
    assert c.ws.response is not None
    assert "permessage-deflate" in (c.ws.response.headers.get("Sec-WebSocket-Extensions") or "")


def test_channels_refused_without_permission(api: Api, clients: list[Client]) -> None:
    """A private account's medium and profile are refused to a non-follower, a blocker's
    to the blocked; a malformed channel is refused; one's own feed is allowed."""
    p, tp = api.user(is_private="true")
    _, ta = api.user()
    _, tb = api.user()
    private = post(api, tp)
    public = post(api, ta)
    me = open_client(api, tb, clients)
    me.ready()
    for channel in (f"media:{private}", f"user:{p['id']}"):
        f = me.subscribe(channel)
        assert (f["type"], f["error"]) == ("error", "not_allowed"), f
    f = me.subscribe("nonsense:1")
    assert (f["type"], f["error"]) == ("error", "invalid_channel"), f
    assert me.subscribe("feed")["type"] == "subscribed"
    assert me.subscribe(f"media:{public}")["type"] == "subscribed"


def test_blocks_hide_media_and_events(api: Api, clients: list[Client]) -> None:
    """A user the owner blocks cannot subscribe to the owner's medium; a viewer who blocks
    someone never receives that user's events."""
    a, ta = api.user()
    b, tb = api.user()
    x, tx = api.user()
    m = post(api, ta)
    api.relate(ta, b["id"], "block")
    settle(api.env)
    blocked = open_client(api, tb, clients)
    blocked.ready()
    f = blocked.subscribe(f"media:{m}")
    assert (f["type"], f["error"]) == ("error", "not_allowed"), f
    v, tv = api.user()
    api.relate(tv, x["id"], "block")
    viewer = open_client(api, tv, clients)
    viewer.ready()
    assert viewer.subscribe(f"media:{m}")["type"] == "subscribed"
    like(api, tx, m)
    like(api, ta, m)
    settle(api.env)
    (f,) = viewer.events(1)
    assert f["data"]["user_id"] == a["id"], f  # x's like never came


def test_resume_gets_exactly_what_was_missed_then_live(api: Api, clients: list[Client]
                                                       ) -> None:
    """Disconnected, three likes and a comment happen; reconnecting with the last cursor
    gives exactly those four in order, then live events, no duplicate."""
    a, ta = api.user()
    likers = [api.user() for _ in range(5)]
    m = post(api, ta)
    c = open_client(api, ta, clients)
    c.ready()
    c.subscribe(f"media:{m}")
    like(api, likers[0][1], m)
    settle(api.env)
    last = c.events(1)[0]["cursor"]
    c.close()
    for _, t in likers[1:4]:
        like(api, t, m)
    r = api.post(f"/v1/media/{m}/comments", likers[1][1], text="nice one")
    assert r.status_code == 200, r.text
    settle(api.env)
    again = open_client(api, ta, clients)
    again.ready()
    assert again.subscribe(f"media:{m}", after=last)["type"] == "subscribed"
    missed = again.events(4)
    assert [f["event"] for f in missed] == ["MediaLiked"] * 3 + ["CommentAdded"]
    assert [f["data"].get("user_id") for f in missed[:3]] == [u["id"] for u, _ in likers[1:4]]
    cursors = [f["cursor"] for f in missed]
    assert len(set(cursors)) == 4 and all(cu > last for cu in cursors)
    like(api, likers[4][1], m)
    settle(api.env)
    (live,) = again.events(1)
    assert live["data"]["user_id"] == likers[4][0]["id"]


def test_too_old_a_cursor_gets_a_reset(api: Api, clients: list[Client]) -> None:
    """A cursor older than the history (trimmed to two entries here) gets a reset frame,
    then live events."""
    _, ta = api.user()
    likers = [api.user() for _ in range(4)]
    m = post(api, ta)
    c = open_client(api, ta, clients)
    c.ready()
    start = c.subscribe(f"media:{m}")["cursor"]
    c.close()
    for _, t in likers[:3]:
        like(api, t, m)
    small = Driver(api.env)
    cfg = api.env.config
    small.ctx.config = dataclasses.replace(
        cfg, realtime=dataclasses.replace(cfg.realtime, history_size=2))
    small.drive("realtime")
    again = open_client(api, ta, clients)
    again.ready()
    sub = again.subscribe(f"media:{m}", after=start)
    reset = again.frame()
    assert sub["type"] == "subscribed" and reset["type"] == "reset", (sub, reset)
    assert reset["cursor"] == sub["cursor"]
    like(api, likers[3][1], m)
    settle(api.env)
    (live,) = again.events(1)
    assert live["data"]["user_id"] == likers[3][0]["id"]


def test_a_slow_client_is_cut_off_while_a_fast_one_keeps_receiving(
        api: Api, clients: list[Client]) -> None:
    """A client that never reads is closed once its buffer passes the bound (4008, counted
    in /metrics); a fast client on the same channel receives every frame."""
    _, ta = api.user()
    m = post(api, ta)
    fast = open_client(api, ta, clients, compression=None, max_size=None)
    fast.ready()
    fast.subscribe(f"media:{m}")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", int(api.service.base.rsplit(":", 1)[1])))
    slow = open_client(api, ta, clients, sock=sock, compression=None, max_queue=1)
    slow.ready()
    slow.subscribe(f"media:{m}")
    store = RealtimeStore(api.env.redis, 5000, 60_000)
    pad = "x" * 4000
    got: list[int] = []
    # Published as from a shard no log has: the history skips what a shard already published
    # (the medium's own MediaRendered went to this source from its real shard, at a position
    # far above these made-up ones; as "shard 0" they were all skipped when that was its shard).
    shard = MAX_SHARDS
    for i in range(0, 2500, 20):  # the fast client reads each batch before the next comes
        store.publish((f"media:{m}", shard, Position(1, j + 1), json.dumps(
            {"position": f"0:1.{j + 1}", "event": "Test", "users": [], "lat": None,
             "lng": None, "data": {"n": j, "pad": pad}})) for j in range(i, i + 20))
        got += [f["data"]["n"] for f in fast.events(20)]
    assert got == list(range(2500))

    def cut() -> bool:
        text = api.http.get("/metrics").text
        return "shutterlog_stream_slow_closed_total 1.0" in text

    wait_for(cut, 20, "the slow client to be cut off")
    with pytest.raises(ConnectionClosed):
        while True:
            slow.ws.recv(10)


def test_bad_token_is_refused_with_a_close_code(api: Api, clients: list[Client]) -> None:
    """An invalid token closes the stream with 4001 and a reason; a good token in an auth
    frame is accepted."""
    assert "invalid" in open_client(api, "not-a-token", clients).refused()
    u, t = api.user()
    late = open_client(api, None, clients)
    late.ws.send(json.dumps({"type": "auth", "access_token": t}))
    assert late.ready()["user_id"] == u["id"]


def test_require_signed_app_tokens_need_a_sig(api: Api, clients: list[Client]) -> None:
    """A token of an app created with --require-signed is refused (4001) without a sig or
    with a wrong one, in the URL or in an auth frame; signed over /stream and the query
    parameters, or over the auth frame's fields, it is accepted."""
    client_id, secret = api.create_app(require_signed=True)
    u = api.signup()
    token = api.token(u["username"], app=(client_id, secret))
    assert "Missing required parameter 'sig'" in open_client(api, token, clients).refused()
    wrong = open_client(api, token, clients, params={"sig": "0" * 64})
    assert "Signature does not match" in wrong.refused()
    sig = sign("/v1/stream", {"access_token": token}, secret)
    assert open_client(api, token, clients, params={"sig": sig}).ready()["user_id"] == u["id"]
    frame = {"type": "auth", "access_token": token}
    unsigned = open_client(api, None, clients)
    unsigned.ws.send(json.dumps(frame))
    assert "Missing required parameter 'sig'" in unsigned.refused()
    signed = open_client(api, None, clients)
    signed.ws.send(json.dumps(frame | {"sig": sign("/v1/stream", frame, secret)}))
    assert signed.ready()["user_id"] == u["id"]


def test_revoked_tokens_end_their_streams(api: Api, clients: list[Client]) -> None:
    """Revoking a token closes the streams using it with 4001 ("revoked") while a stream
    of another token of the user goes on; revoking all the user's tokens closes that one
    too."""
    u, first = api.user()
    second, third = api.token(u["username"]), api.token(u["username"])
    one, two = open_client(api, first, clients), open_client(api, second, clients)
    for c in (one, two):
        c.ready()
        assert c.subscribe("activity")["type"] == "subscribed"
    assert api.post("/oauth/revoke", first).json()["data"] == {"revoked": 1}
    assert "revoked" in one.refused()
    assert two.subscribe("feed")["type"] == "subscribed"
    assert api.post("/oauth/revoke", third, all="true").json()["data"] == {"revoked": 2}
    assert "revoked" in two.refused()


def test_an_expiring_token_ends_its_stream(module_env: Env) -> None:
    """With oauth.token_ttl of 3 s, a stream authenticated with a fresh token is closed
    with 4001 ("expired") when the token expires."""
    svc = start_service(module_env, SHUTTERLOG_OAUTH_TOKEN_TTL="3")
    api = Api(module_env, svc)
    made: list[Client] = []
    try:
        _, token = api.user()
        c = open_client(api, token, made)
        c.ready()
        assert "expired" in c.refused(timeout=15)
    finally:
        for c in made:
            c.close()
        api.close()
        svc.stop()


def test_feed_tag_and_geo_channels(api: Api, clients: list[Client]) -> None:
    """A follower's live feed gets the followee's new post; a tag channel gets media with
    the tag; a geo channel gets media inside its circle and not those outside."""
    a, ta = api.user()
    b, tb = api.user()
    api.relate(tb, a["id"], "follow")
    settle(api.env)
    c = open_client(api, tb, clients)
    c.ready()
    tag = api.name("tag")
    for channel in ("feed", f"tag:{tag}", "geo:48.8566,2.3522,1000"):
        assert c.subscribe(channel)["type"] == "subscribed"
    post(api, ta, caption="far away", lat="40.0", lng="-3.7")
    near = post(api, ta, caption=f"near #{tag}", lat="48.8600", lng="2.3500")
    frames = c.events(4)
    by_channel: dict[str, list[str]] = {}
    for f in frames:
        assert f["event"] == "MediaRendered"
        by_channel.setdefault(f["channel"], []).append(f["data"]["media_id"])
    assert by_channel["geo:48.8566,2.3522,1000"] == [near]
    assert by_channel[f"tag:{tag}"] == [near]
    assert len(by_channel["feed"]) == 2 and by_channel["feed"][1] == near


def test_redis_pubsub_loss_is_caught_up(api: Api, clients: list[Client]) -> None:
    """When Redis drops the service's pub/sub connection, the service resubscribes and
    serves what was published meanwhile from the history: no gap, no duplicate."""
    _, ta = api.user()
    likers = [api.user() for _ in range(2)]
    m = post(api, ta)
    c = open_client(api, ta, clients)
    c.ready()
    c.subscribe(f"media:{m}")
    killed = api.env.redis.client_kill_filter(_type="pubsub")
    assert killed >= 1
    like(api, likers[0][1], m)
    settle(api.env)
    (first,) = c.events(1)
    like(api, likers[1][1], m)
    settle(api.env)
    (second,) = c.events(1)
    assert [first["data"]["user_id"], second["data"]["user_id"]] == [
        u["id"] for u, _ in likers]


def masked(text: str) -> bytes:
    """A client text frame (masked, as clients' are), to write raw so that several frames
    reach the server in one read."""
    data, key = text.encode(), os.urandom(4)
    n = len(data)
    length = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return b"\x81" + length + key + bytes(b ^ key[i % 4] for i, b in enumerate(data))


def test_frames_sent_before_ready_are_answered(api: Api, clients: list[Client]) -> None:
    """Subscribes sent with the auth frame (they arrive while the token is checked) are
    each answered after ``ready``; more than a frame's worth of bytes before ``ready``
    closes with 4002."""
    a, ta = api.user()
    m = post(api, ta)
    c = open_client(api, None, clients)
    c.ws.socket.sendall(b"".join(masked(json.dumps(f)) for f in (
        {"type": "auth", "access_token": ta},
        {"type": "subscribe", "channel": f"media:{m}"},
        {"type": "subscribe", "channel": f"user:{a['id']}"})))
    c.ready()
    answers = {(f["type"], f["channel"]) for f in (c.frame(), c.frame())}
    assert answers == {("subscribed", f"media:{m}"), ("subscribed", f"user:{a['id']}")}
    flood = open_client(api, None, clients)
    pad = "x" * 40_000
    flood.ws.socket.sendall(b"".join(masked(json.dumps(f)) for f in (
        {"type": "auth", "access_token": ta},
        {"type": "subscribe", "channel": f"media:{m}", "pad": pad},
        {"type": "subscribe", "channel": f"user:{a['id']}", "pad": pad})))
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            flood.frame()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4002


def test_malformed_channels_and_cursors_get_error_frames(api: Api, clients: list[Client]
                                                         ) -> None:
    """An unsubscribe naming no string, a cursor beyond Redis's 64-bit ids and a channel
    with a trailing newline are answered with error frames; the connection stays."""
    _, ta = api.user()
    m = post(api, ta)
    c = open_client(api, ta, clients)
    c.ready()
    c.ws.send(json.dumps({"type": "unsubscribe", "channel": [1]}))
    f = c.frame()
    assert (f["type"], f["error"]) == ("error", "not_subscribed"), f
    f = c.subscribe(f"media:{m}", after="99999999999999999999-0")
    assert (f["type"], f["error"]) == ("error", "invalid_channel"), f
    assert c.subscribe("feed")["type"] == "subscribed"
    f = c.subscribe("feed\n")
    assert (f["type"], f["error"]) == ("error", "invalid_channel"), f
    assert c.subscribe(f"media:{m}")["type"] == "subscribed"


def _body(n: int) -> str:
    return json.dumps({"position": f"1:1.{n}", "event": "Test", "users": [], "lat": None,
                       "lng": None, "data": {"n": n}})


def test_a_restarted_feed_history_resets_older_cursors(env: Env) -> None:
    """A device saw A on its live feed; the feed stops being live (B is dropped); another
    device marks it live again, C comes. Resuming after A gets a reset (B is missing);
    resuming after the cursor the new subscriber got gets C."""
    store = RealtimeStore(env.redis, 100, 60_000)
    store.mark_live([42], 0)
    assert store.publish([("feed:42", 1, Position(1, 1), _body(1))]) == 1
    seen_a = store.history("feed:42", None).last
    env.redis.delete("rt:live:feed:42")  # the marker expired, nobody refreshed it
    assert store.publish([("feed:42", 1, Position(1, 2), _body(2))]) == 0
    store.mark_live([42], 0)
    fresh = store.history("feed:42", None).last
    assert fresh > seen_a
    assert store.publish([("feed:42", 1, Position(1, 3), _body(3))]) == 1
    assert store.history("feed:42", seen_a).reset
    h = store.history("feed:42", fresh)
    assert not h.reset and [json.loads(m.body)["data"]["n"] for m in h.messages] == [3]


def test_an_expired_history_resets_older_cursors(env: Env) -> None:
    """A client saw A, B came, the quiet source's history expired (its keys are gone), C
    came: resuming after A gets a reset, not C alone."""
    store = RealtimeStore(env.redis, 100, 60_000)
    store.publish([("media:777", 1, Position(1, 1), _body(1))])
    seen_a = store.history("media:777", None).last
    store.publish([("media:777", 1, Position(1, 2), _body(2))])
    seen_b_ms = int(store.history("media:777", None).last.split("-")[0])
    env.redis.delete("rt:media:777", "rt:media:777:meta")  # what their expiry does
    # an expiry comes history_ttl after B: Redis's clock is past B's millisecond by then (a
    # new stream's ids restart from the clock, so within B's millisecond they could repeat)
    wait_for(lambda: _redis_ms(env) > seen_b_ms, 5, "Redis's clock to pass B's millisecond")
    store.publish([("media:777", 1, Position(1, 3), _body(3))])
    assert store.history("media:777", seen_a).reset


def _redis_ms(env: Env) -> int:
    seconds, micros = env.redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


def test_unfollowing_a_private_account_ends_its_subscriptions(api: Api, clients: list[Client]
                                                              ) -> None:
    """An approved follower subscribed to a private account's profile and medium
    unfollows: both subscriptions end (``unsubscribed``, ``not_allowed``) and none of the
    account's later events reaches them; their other channels go on."""
    p, tp = api.user(is_private="true")
    f, tf = api.user()
    api.relate(tf, p["id"], "follow")
    api.relate(tp, f["id"], "approve")
    m = post(api, tp)
    c = open_client(api, tf, clients)
    c.ready()
    mine = f"user:{f['id']}"
    for channel in (f"user:{p['id']}", f"media:{m}", mine):
        assert c.subscribe(channel)["type"] == "subscribed"
    api.relate(tf, p["id"], "unfollow")
    settle(api.env)
    like(api, tp, m)
    post(api, tp, caption="followers only")
    post(api, tf, caption="published after all of the above")
    frames: list[dict[str, Any]] = []
    while not frames or frames[-1].get("channel") != mine:
        frames.append(c.frame())
    ended = {fr["channel"] for fr in frames if fr["type"] == "unsubscribed"}
    assert ended == {f"user:{p['id']}", f"media:{m}"}, frames
    assert all(fr.get("error") == "not_allowed" for fr in frames[:-1]), frames
    assert [fr["type"] for fr in frames] == ["unsubscribed", "unsubscribed", "event"], frames
