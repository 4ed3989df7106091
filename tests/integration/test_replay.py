"""``shutterlog replay``: rebuilt projections equal the live ones after a random workload, a
flushed Redis is restored exactly, writes made during a replay are in the swapped
projection, a replay killed mid-run leaves live state alone and the next run resumes, side
effects never run; ``--dry-run``, ``--json``, ``--help`` and usage errors.

The live system is the real relay and worker pool; the CLI runs as a subprocess."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest

from plugins.geo import open_index
from scripts import seed
from server.db import Txn
from server.domain.checkpoints import lock_key
from server.domain.ids import shard_of
from server.domain.log import ORIGIN, Position
from server.domain.replay import SPECS, Progress
from server.domain.shards import schema_name
from server.store import replay as rstore
from server.store.replay import RedisNamespaces
from tests.helpers import Process, wait_for
from tests.integration.apiclient import Api
from tests.integration.conftest import Env
from tests.integration.recording import running
from tests.integration.replay_probe import CALLS
from tests.integration.replaykit import cli, log_size, settled
from workers import handlers
from workers.consumers import CONSUMERS
from workers.context import WorkerContext
from workers.rebuilds import FollowersBuild
from workers.replay import Item, Replayer, Request

REDIS = [s for s in SPECS.values() if s.kind == "redis" and s.name != "realtime"]


def summary(run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The summary object of a ``--json`` run (its last line)."""
    lines = [json.loads(x) for x in run.stdout.splitlines()]
    assert lines and lines[-1]["type"] == "summary", run.stdout + run.stderr
    return dict(lines[-1])


def messages(run: subprocess.CompletedProcess[str]) -> list[str]:
    return [d["message"] for d in map(json.loads, run.stdout.splitlines())
            if d["type"] == "message"]


def snapshot(env: Env) -> dict[str, Any]:
    """Every live Redis projection key (real-time histories aside), normalized."""
    ns = RedisNamespaces(env.redis)
    return {k: v for spec in REDIS for k, v in ns.snapshot(ns.live_keys(spec)).items()}


@pytest.fixture(scope="module")
def pool(module_env: Env) -> Iterator[list[Process]]:
    with running(module_env.vars) as procs:
        yield procs


@pytest.fixture(scope="module")
def world(module_env: Env, service: Any, pool: list[Process]) -> dict[str, Any]:
    """A random world: seeded users, posts (tags, places) and follows, then follows, likes,
    comments with mentions, deletions, blocks, unfollows and a private account through the
    API."""
    api, rng = Api(module_env, service), random.Random(7)
    env = api.env
    users = [seed.account(env.store, env.router, f"rp{i}") for i in range(200)]
    pairs = sorted({(a, b) for a, b in (rng.sample(users, 2) for _ in range(1200))})
    seed.follow(env.store, pairs)
    media = [seed.ready_medium(env.store, env.router, rng.choice(users),
                               caption=f"#t{rng.randrange(12)} #all",
                               place=(48.85 + rng.random() / 100, 2.35) if rng.random() < .3
                               else None) for _ in range(300)]
    actors = [api.user() for _ in range(6)]
    for me, token in actors:
        for u in rng.sample(users, 8):
            api.relate(token, str(u), "follow")
        for m in rng.sample(media, 10):
            assert api.post(f"/v1/media/{m}/likes", token).status_code == 200
        for m in rng.sample(media, 4):
            r = api.post(f"/v1/media/{m}/comments", token,
                         text=f"nice @{actors[0][0]['username']} #c{rng.randrange(3)}")
            assert r.status_code == 200, r.text
        own = seed.ready_medium(env.store, env.router, int(me["id"]), caption="#mine")
        media.append(own)
    t0, t1 = actors[0][1], actors[1][1]
    for m in rng.sample(media[:300], 5):
        api.http.delete(f"/v1/media/{m}/likes", headers={"Authorization": f"Bearer {t0}"})
    api.relate(t0, actors[1][0]["id"], "follow")
    api.relate(t1, actors[0][0]["id"], "follow")
    api.relate(t0, actors[1][0]["id"], "block")
    api.relate(actors[2][1], str(users[0]), "unfollow")
    api.relate(actors[2][1], str(users[1]), "follow")
    assert api.post("/v1/users/self", actors[3][1], is_private="true").status_code == 200
    gone = api.http.delete(f"/v1/media/{media[-1]}",
                           headers={"Authorization": f"Bearer {actors[-1][1]}"})
    assert gone.status_code == 200, gone.text
    settled(env)
    return {"users": users, "media": media, "actors": actors}


def test_help_and_usage_errors(module_env: Env) -> None:
    """--help lists the projections; unknown projections, --shard on a projection that
    mixes shards, --until with no event's id and a negative --limit exit 2 with the
    reason."""
    h = cli(module_env, "--help")
    assert h.returncode == 0 and "feeds" in h.stdout and "--verify" in h.stdout
    bad = cli(module_env, "nosuch")
    assert bad.returncode == 2 and "unknown projection 'nosuch'" in bad.stderr
    mixed = cli(module_env, "feeds", "--shard", "1")
    assert mixed.returncode == 2 and "--shard applies to" in mixed.stderr
    both = cli(module_env, "feeds", "--verify", "--until", "5")
    assert both.returncode == 2, both.stderr
    for until in ("0", "-3"):  # no event has such an id: nothing may be rebuilt or swapped
        run = cli(module_env, "tags", "--until", until)
        assert run.returncode == 2 and "is not an event id" in run.stdout + run.stderr, run
    negative = cli(module_env, "tags", "--verify", "--limit", "-1")
    assert negative.returncode == 2 and "is negative" in negative.stderr


def test_verify_after_a_random_workload_finds_no_difference(module_env: Env,
                                                            world: dict[str, Any]) -> None:
    """replay all --verify: every projection rebuilt from the log equals the live one."""
    run = cli(module_env, "all", "--verify", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    s = summary(run)
    assert s["differences"] == 0, s
    assert {p["projection"] for p in s["projections"]} == set(SPECS) - {"realtime"}
    assert all(p["status"] == "verified" for p in s["projections"])
    assert sum(p["events"] for p in s["projections"]) > 3000
    assert not list(module_env.redis.scan_iter("replay:*")), "scratch namespaces left behind"
    progress = [d for d in map(json.loads, run.stdout.splitlines()) if d["type"] == "progress"]
    assert progress and progress[-1]["done"] == progress[-1]["total"] > 0


def test_verify_reports_each_difference_and_exits_1(module_env: Env, world: dict[str, Any]
                                                    ) -> None:
    """A feed missing a medium and a wrong count are each reported as (key, expected,
    found), and counted even when ``--limit 0`` prints none; replaying those projections
    repairs them."""
    r = module_env.redis
    feed = next(k.decode() for k in r.scan_iter("feed:*") if r.zcard(k) > 1)
    member = next(m for m in r.zrange(feed, 0, -1) if m != b"-")
    r.zrem(feed, member)
    counts = next(k.decode() for k in r.scan_iter("counts:*"))
    field = next(f for f in r.hkeys(counts) if f.endswith(b":l"))
    r.hset(counts, field, 999)
    run = cli(module_env, "feeds", "counters", "--verify", "--json")
    assert run.returncode == 1, run.stdout + run.stderr
    diffs = {d["key"]: d for p in summary(run)["projections"] for d in p["differences"]}
    assert diffs[f"{feed} {member.decode()}"]["found"] is None
    assert diffs[f"{counts} {field.decode()}"]["found"] == "999"
    assert diffs[f"{counts} {field.decode()}"]["expected"] != "999"
    assert summary(run)["differences"] == 2
    # --limit bounds what is printed, not what is found: the exit status still says 1
    quiet = cli(module_env, "feeds", "counters", "--verify", "--json", "--limit", "0")
    assert quiet.returncode == 1, quiet.stdout + quiet.stderr
    assert summary(quiet)["differences"] == 2
    assert all(p["differences"] == [] for p in summary(quiet)["projections"])
    human = cli(module_env, "feeds", "counters", "--verify")
    assert human.returncode == 1 and f"{feed} {member.decode()}" in human.stdout
    assert "expected:" in human.stdout and "found:    None" in human.stdout
    assert "events/s" in human.stderr and "\r" not in human.stderr  # plain lines, no bar
    fixed = cli(module_env, "feeds", "counters")
    assert fixed.returncode == 0, fixed.stderr
    assert cli(module_env, "feeds", "counters", "--verify").returncode == 0


def test_one_replay_of_a_projection_at_a_time(module_env: Env) -> None:
    """A replay of a projection another replay holds exits 3 and says so."""
    conn = psycopg2.connect(module_env.router.databases()[0].dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(7007, hashtext('tags'))")
        busy = cli(module_env, "tags")
        assert busy.returncode == 3 and "another replay of tags is running" in busy.stderr
    finally:
        conn.close()


def test_dry_run_changes_nothing(module_env: Env, world: dict[str, Any]) -> None:
    """--dry-run says what would happen and records no run, keys or tables."""
    before = runs(module_env)
    run = cli(module_env, "all", "--dry-run", "--json")
    assert run.returncode == 0, run.stderr
    assert all(p["status"] == "dry-run" for p in summary(run)["projections"])
    assert any("starts from the origin" in m for m in messages(run))
    assert any("dry run: about" in m for m in messages(run))
    assert runs(module_env) == before
    assert not list(module_env.redis.scan_iter("replay:*"))


def test_replay_never_runs_a_side_effect_consumer(module_env: Env, world: dict[str, Any]
                                                  ) -> None:
    """replay all with a side-effect consumer registered (workers.modules): it is never
    called, no event is appended, and no real-time message is published while the
    histories are rebuilt."""
    pubsub = module_env.redis.pubsub()
    pubsub.psubscribe("rt:*")
    pubsub.get_message(timeout=5)
    events = log_size(module_env)
    run = cli(module_env, "all", "--json",
              SHUTTERLOG_WORKERS_MODULES="tests.integration.replay_probe")
    assert run.returncode == 0, run.stdout + run.stderr
    assert module_env.redis.get(CALLS) is None
    assert log_size(module_env) == events  # nothing appended: no mirror, no rendition
    assert pubsub.get_message(timeout=0.5) is None
    pubsub.close()


def test_writes_during_a_replay_are_in_the_swapped_projection(
        api: Api, module_env: Env, world: dict[str, Any]) -> None:
    """With the live counters and fanout held (a long batch), a replay builds, then waits
    at the swap; likes and a post made meanwhile are applied by the replay's catch-up: its
    checkpoints pass them and the swapped projections show them."""
    env = module_env
    held = hold(env, ("counters", "fanout"))
    try:
        follower, token = world["actors"][4]
        owner = world["users"][5]
        api.relate(token, str(owner), "follow")
        replay = Process([sys.executable, "-m", "scripts.cli", "replay", "feeds", "counters",
                          "--json"], env.vars, "replay")
        liked = world["media"][10]
        assert api.post(f"/v1/media/{liked}/likes", token).status_code == 200
        post = seed.ready_medium(env.store, env.router, owner, caption="during")
        wait_for(lambda: waiting(env), 60, "the replay to wait for the live locks")
    finally:
        release(held)
    wait_for(lambda: not replay.alive(), 120, "the replay to finish")
    assert replay.stop() == 0, replay.output.text()
    last = max(positions_of(env, [post, liked]))
    for projection in ("feeds", "counters"):
        run_positions = run_checkpoints(env, projection)
        assert max(run_positions) >= last
    assert env.redis.zscore(f"feed:{follower['id']}", post) is not None
    likes = api.get(f"/v1/media/{liked}", token).json()["data"]["likes"]["count"]
    assert env.redis.hget(*counter_slot(liked)) == str(likes).encode()
    settled(env)
    assert cli(env, "feeds", "counters", "--verify").returncode == 0


def test_killed_replay_leaves_live_state_and_resumes(module_env: Env, world: dict[str, Any]
                                                     ) -> None:
    """kill -9 of a replay waiting to swap: live keys, liked rows and geo points unchanged,
    its namespaces (Redis prefix, shadow tables, geo namespace) left; the next run says it
    resumes and finishes; --fresh starts over."""
    env = module_env
    before = live_state(env)
    held = hold(env, ("liked",))  # the first of them to swap: all wait
    names = ("liked", "counters", "tags", "geo")
    try:
        replay = Process([sys.executable, "-m", "scripts.cli", "replay", *names, "--json"],
                         env.vars, "replay")
        wait_for(lambda: waiting(env), 60, "the replay to wait for the live locks")
        replay.kill()
    finally:
        release(held)
    assert live_state(env) == before
    assert list(env.redis.scan_iter("replay:*")), "the namespace should be left to resume"
    again = cli(env, *names, "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    said = messages(again)
    for name in names:
        assert any(f"{name}: run" in m and "resumes where it stopped" in m for m in said), said
    assert live_state(env) == before
    assert not list(env.redis.scan_iter("replay:*"))
    geo = open_index(env.config, env.router)
    try:
        assert geo.namespaces() == [geo.live()]  # the rebuilt one, the old one dropped
    finally:
        geo.close()
    fresh = cli(env, "tags", "--fresh", "--json")
    assert any("starts from the origin" in m for m in messages(fresh)), fresh.stdout


def live_state(env: Env) -> tuple[Any, ...]:
    """The Redis projections, every liked row and every geo point."""
    geo = open_index(env.config, env.router)
    try:
        points = geo.count()
    finally:
        geo.close()
    liked = []
    for db in env.router.databases():
        for shard in env.router.shards_of(db):
            liked += db.run_interaction("liked", Txn.fetchall, "SELECT user_id, media_id, "
                                        f"like_id FROM {schema_name(shard)}.liked")
    return snapshot(env), sorted(liked), points


def test_bulk_reads_return_what_read_page_returns(module_env: Env, world: dict[str, Any]
                                                 ) -> None:
    """The replay's bulk page reader keeps the one ordering contract: page by page, the same
    events (decoded alike), the same next position and the same ``more``."""
    store = module_env.store
    for types in (None, {"MediaLiked", "MediaRendered"}, {"FollowerAdded"}):
        for shard in range(module_env.router.count):
            a = b = ORIGIN
            while True:
                pa = store.read_page(shard, a, 97, types)
                pb = store.read_page_bulk(shard, b, 97, types)
                assert pb.events == pa.events
                assert (pb.next, pb.more, pb.scanned) == (pa.next, pa.more, pa.scanned)
                a, b = pa.next, pb.next
                if not pa.more:
                    break


def test_until_stops_before_later_events_and_the_pool_applies_them(
        module_env: Env, world: dict[str, Any]) -> None:
    """--until ID: the rebuild stops each shard before its first event above ID, the live
    checkpoints are set there, and the worker pool applies the rest."""
    env = module_env
    cut = sorted(e.id for e in env.store.latest(400, {"MediaLiked", "MediaPosted"}))[0]
    run = cli(env, "counters", "--until", str(cut), "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    assert summary(run)["projections"][0]["status"] == "swapped"
    stops = run_checkpoint_ids(env, "counters")
    assert stops and max(stops) <= cut
    settled(env)
    assert cli(env, "counters", "--verify").returncode == 0
    refused = cli(env, "followers", "--until", str(cut))
    assert refused.returncode == 2 and "no live consumer" in refused.stderr


def test_ctrl_c_leaves_live_state_and_says_so(module_env: Env, world: dict[str, Any]) -> None:
    """SIGINT while the replay waits for the live locks: exit 130, a message saying so, live
    keys unchanged."""
    env = module_env
    before = snapshot(env)
    held = hold(env, ("tags",))
    try:
        replay = Process([sys.executable, "-m", "scripts.cli", "replay", "tags"], env.vars,
                         "replay")
        wait_for(lambda: waiting(env), 60, "the replay to wait for the live locks")
        replay.signal(signal.SIGINT)
        wait_for(lambda: not replay.alive(), 30, "the replay to stop")
        assert replay.stop() == 130, replay.output.text()
    finally:
        release(held)
    assert "interrupted: projections not swapped yet are untouched" in replay.output.text()
    assert snapshot(env) == before


def test_followers_side_rebuilt_per_shard(module_env: Env, world: dict[str, Any]) -> None:
    """followers --shard S rebuilds that shard's followers table without appending an event;
    a lost edge there is reported by --verify and restored by the replay."""
    env = module_env
    followee = next(u for u in world["users"] if followers_of(env, u))
    shard = shard_of(followee)
    events_before = log_size(env)
    db = env.router.database(shard)
    schema = schema_name(shard)
    lost = db.run_interaction("x", Txn.fetchone,
                              f"DELETE FROM {schema}.followers WHERE followee = %s "
                              "RETURNING follower", (followee,))
    assert lost is not None
    check = cli(env, "followers", "--shard", str(shard), "--verify", "--json")
    assert check.returncode == 1, check.stdout
    run = cli(env, "followers", "--shard", str(shard), "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    assert lost[0] in followers_of(env, followee)
    assert log_size(env) == events_before
    assert cli(env, "followers", "--verify").returncode == 0


def test_flushing_redis_then_replay_all_restores_everything(module_env: Env, service: Any,
                                                            world: dict[str, Any]) -> None:
    """FLUSHALL, then replay all: every feed, recent media, activity feed, counter and tag
    set is back exactly as before (completeness markers aside)."""
    env = module_env
    settled(env)
    before = snapshot(env)
    assert any(k.startswith("feed:") for k in before)
    assert any(k.startswith("activity:") for k in before)
    assert any(k.startswith("counts:") for k in before)
    env.redis.flushall()
    run = cli(env, "all", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    after = snapshot(env)
    assert after == before, {k for k in set(before) | set(after)
                             if before.get(k) != after.get(k)}
    assert env.redis.zscore(next(k for k in after if k.startswith("feed:")), "-") == 0
    # Real-time histories rebuilt too, each marked so that older cursors get a reset.
    history = next(k.decode() for k in env.redis.scan_iter("rt:user:*")
                   if not k.endswith(b":meta"))
    first = env.redis.xrange(history, count=1)[0][0]
    assert env.redis.hget(f"{history}:meta", "low") == first
    # Feeds read at once, complete (no rebuild, no partial page); tokens were flushed too.
    api = Api(env, service)
    me = world["actors"][2][0]
    feed = api.get("/v1/users/self/feed", api.token(me["username"]), count=100)
    assert feed.status_code == 200 and "partial" not in feed.json()["meta"]
    ids = [int(m["id"]) for m in feed.json()["data"]]
    stored = [int(m) for m in env.redis.zrevrange(f"feed:{me['id']}", 0, -1) if m != b"-"]
    assert ids and ids == stored[:len(ids)]


class Recorder:
    """A reporter keeping what an in-process run says."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.progress_seen: list[Progress] = []

    def say(self, message: str, **fields: object) -> None:
        self.messages.append(message)

    def progress(self, progress: Progress) -> None:
        self.progress_seen.append(progress)


def replay_here(env: Env, *names: str, reporter: Recorder | None = None,
                **request: Any) -> list[Item]:
    """A replay run in this process (so that a test can make it crash where it wants)."""
    handlers.load()
    ctx = WorkerContext(env.config, env.router, env.store, env.redis)
    r = Replayer(ctx, CONSUMERS, reporter or Recorder(), lock_timeout=10)
    try:
        return r.execute(Request([SPECS[n] for n in names], **request))
    finally:
        r.close()


def test_crash_right_after_a_redis_swap_then_a_rerun_keeps_the_projection(
        module_env: Env, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A replay of tags dies right after its MULTI/EXEC, before its namespace's leftovers
    are dropped (kill -9 there): the swap itself went through, and the next run does not
    resume the emptied namespace (whose swap would retire every live key) but starts over,
    leaving the live tags as they were."""
    env = module_env
    ns, tags = RedisNamespaces(env.redis), SPECS["tags"]
    before = ns.snapshot(ns.live_keys(tags))
    assert len(before) > 10

    def killed(self: RedisNamespaces, prefix: str, marker: str) -> int:
        raise RuntimeError("killed right after EXEC")

    with monkeypatch.context() as m:
        m.setattr(RedisNamespaces, "drop", killed)
        with pytest.raises(RuntimeError, match="killed"):
            replay_here(env, "tags")
    assert ns.snapshot(ns.live_keys(tags)) == before
    rec = Recorder()
    assert replay_here(env, "tags", reporter=rec)[0].status == "swapped"
    assert any("starts from the origin" in m for m in rec.messages), rec.messages
    assert ns.snapshot(ns.live_keys(tags)) == before


def test_an_abandoned_followers_run_of_other_shards_is_dropped(
        module_env: Env, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """followers --shard A fails before its swap, leaving its shadow table in shard A's
    schema; followers --shard B starts over and abandons that run: the shadow table is
    dropped from shard A (the old run's shards), not looked for in shard B."""
    env = module_env
    a, b = 1, 2

    def crash(self: FollowersBuild, positions: dict[int, Position]) -> str:
        raise RuntimeError("crash before the swap")

    with monkeypatch.context() as m:
        m.setattr(FollowersBuild, "swap", crash)
        with pytest.raises(RuntimeError, match="crash"):
            replay_here(env, "followers", shards=[a])
    row = env.router.databases()[0].run_interaction(
        "r", Txn.fetchone, "SELECT max(id) FROM replay_runs WHERE projection = 'followers'")
    assert row is not None
    old = row[0]

    def left(shard: int) -> bool:
        return bool(env.router.database(shard).run_interaction(
            "x", rstore.shadow_exists_txn, schema_name(shard), "followers", old))

    assert left(a)
    assert replay_here(env, "followers", shards=[b])[0].status == "swapped"
    status = env.router.databases()[0].run_interaction(
        "r", Txn.fetchone, "SELECT status FROM replay_runs WHERE id = %s", (old,))
    assert status == ("abandoned",)
    assert not left(a), f"{schema_name(a)}.followers_r{old} left by the abandoned run"


def test_progress_total_counts_the_realtime_pass_too(module_env: Env, world: dict[str, Any]
                                                     ) -> None:
    """replay tags realtime reads each shard twice (the real-time histories in a pass of
    their own, up to the live checkpoint): the progress total counts both passes from the
    start, so the events done never overtake it (no bar at 100% with a pass to go)."""
    env = module_env
    settled(env, ("tags", "realtime"))
    rec = Recorder()
    replay_here(env, "tags", "realtime", reporter=rec)
    total = rec.progress_seen[0].total
    assert all(p.done <= total for p in rec.progress_seen), (
        total, rec.progress_seen[-1])
    assert rec.progress_seen[-1].done > 0


def test_verify_followers_compares_followed_by_count(module_env: Env, world: dict[str, Any]
                                                     ) -> None:
    """users.followed_by_count is part of followers' live state (the swap recounts it): a
    wrong count is reported by --verify (key, the log's count, the live one)."""
    env = module_env
    followee = next(u for u in world["users"] if followers_of(env, u))
    shard = shard_of(followee)
    db, schema = env.router.database(shard), schema_name(shard)
    row = db.run_interaction("c", Txn.fetchone, f"SELECT followed_by_count FROM {schema}.users "
                             "WHERE id = %s", (followee,))
    assert row is not None
    count = row[0]
    set_count = f"UPDATE {schema}.users SET followed_by_count = %s WHERE id = %s"
    db.run_interaction("corrupt", Txn.execute, set_count, (999, followee))
    try:
        check = cli(env, "followers", "--verify", "--json")
    finally:
        db.run_interaction("restore", Txn.execute, set_count, (count, followee))
    assert check.returncode == 1, check.stdout + check.stderr
    assert summary(check)["projections"][0]["differences"] == [
        {"key": f"followed_by_count {followee}", "expected": count, "found": 999}]


# --- helpers ----------------------------------------------------------------------------------


def runs(env: Env) -> int:
    row = env.router.databases()[0].run_interaction(
        "runs", Txn.fetchone, "SELECT count(*) FROM replay_runs")
    assert row is not None
    return int(row[0])


def run_checkpoints(env: Env, projection: str) -> list[Position]:
    rows = env.router.databases()[0].run_interaction(
        "run_cps", Txn.fetchall,
        "SELECT c.txid::text, c.event_id FROM replay_checkpoints c JOIN replay_runs r ON "
        "r.id = c.run WHERE r.id = (SELECT max(id) FROM replay_runs WHERE projection = %s)",
        (projection,))
    return [Position(int(t), e) for t, e in rows]


def run_checkpoint_ids(env: Env, projection: str) -> list[int]:
    return [p.id for p in run_checkpoints(env, projection) if p.id]


def positions_of(env: Env, stream_ids: list[int]) -> list[Position]:
    out = []
    for db in env.router.databases():
        out += [Position(int(t), i) for t, i in db.run_interaction(
            "pos", Txn.fetchall, "SELECT txid::text, id FROM events WHERE stream = ANY(%s)",
            ([f"media:{m}" for m in stream_ids] + [f"like:{m}:" for m in stream_ids],))]
        out += [Position(int(t), i) for t, i in db.run_interaction(
            "pos", Txn.fetchall, "SELECT txid::text, id FROM events WHERE type = 'MediaLiked' "
            "AND stream LIKE ANY(%s)", ([f"like:{m}:%" for m in stream_ids],))]
    return out


def counter_slot(media_id: int) -> tuple[str, str]:
    from server.store.counters import slot

    key, offset = slot(media_id)
    return key, f"{offset}:l"


def followers_of(env: Env, user: int) -> list[int]:
    shard = shard_of(user)
    rows = env.router.database(shard).run_interaction(
        "f", Txn.fetchall, f"SELECT follower FROM {schema_name(shard)}.followers "
        "WHERE followee = %s", (user,))
    return [r[0] for r in rows]


def hold(env: Env, consumers: tuple[str, ...]) -> list[Any]:
    """Hold the live consumers' advisory locks on every shard (as a long batch would)."""
    conns = []
    for db in env.router.databases():
        conn = psycopg2.connect(db.dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            for name in consumers:
                for s in env.router.shards_of(db):
                    cur.execute("SELECT pg_advisory_lock(%s)", (lock_key(name, s),))
        conns.append(conn)
    return conns


def release(conns: list[Any]) -> None:
    for conn in conns:
        conn.close()


def waiting(env: Env) -> bool:
    """Whether a session waits for an advisory lock (the replay at its swap)."""
    for db in env.router.databases():
        row = db.run_interaction("w", Txn.fetchone, "SELECT count(*) FROM pg_locks WHERE "
                                 "locktype = 'advisory' AND NOT granted")
        if row and row[0]:
            return True
    return False
