"""``shutterlog events tail|show|stats`` against a real log, secrets masked."""

from __future__ import annotations

import json
import subprocess
import sys

from server import catalog
from server.api.users import sign_up_txn
from server.db import Txn
from server.domain.accounts import Register, username_shard
from server.store.accounts import User
from tests.helpers import REPO, Process, scrubbed_env, wait_for
from tests.integration.conftest import Env

HASH = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$dGhpcyBpcyBub3QgYSByZWFsIGhhc2g"


def sign_up(env: Env, name: str) -> User:
    catalog.load()
    shard = username_shard(name, env.router.count)
    return env.router.database(shard).run_interaction(
        "test_user", sign_up_txn, env.store, shard, Register(name, HASH, name.title()), None)


def cli(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scripts.cli", "events", *args], cwd=REPO,
                          env=scrubbed_env(env.vars), capture_output=True, text=True, timeout=60)


def test_tail_show_and_stats_mask_secrets(env: Env) -> None:
    """tail lists the newest events oldest first; show decodes one; stats counts them; the
    password hash never appears in any of their outputs."""
    # Ids order events by millisecond, then by shard: signed up in rising shard order, the
    # three are newest-last even when two sign-ups fall in one millisecond (in name order,
    # viewer2's shard 8 then came before viewer1's shard 10).
    names = sorted((f"viewer{i}" for i in range(3)),
                   key=lambda n: username_shard(n, env.router.count))
    users = [sign_up(env, name) for name in names]
    tail = cli(env, "tail", "-n", "2", "--json")
    assert tail.returncode == 0, tail.stderr
    lines = [json.loads(line) for line in tail.stdout.splitlines()]
    assert [d["data"]["user_id"] for d in lines] == [u.id for u in users[1:]]
    assert {d["type"] for d in lines} == {"UserRegistered"}
    assert all(d["data"]["password_hash"] == "***" for d in lines)
    only = cli(env, "tail", "--json", "--user", str(users[0].id))
    assert [json.loads(x)["actor"] for x in only.stdout.splitlines()] == [users[0].id]
    event_id = lines[-1]["id"]
    show = cli(env, "show", str(event_id))
    assert show.returncode == 0 and "UserRegistered" in show.stdout
    assert users[-1].username in show.stdout and "'***'" in show.stdout
    assert cli(env, "show", "123").returncode == 1
    stats = json.loads(cli(env, "stats", "--json").stdout)
    assert stats["by_type"]["UserRegistered"] == 3 and stats["events"] >= 3
    assert sum(stats["by_shard"].values()) == stats["events"] and stats["bytes"] > 0
    for out in (tail.stdout, show.stdout, json.dumps(stats)):
        assert HASH not in out


def test_tail_follow_prints_new_events(env: Env) -> None:
    """tail --follow prints events committed after it started, as they become readable."""
    follow = Process([sys.executable, "-m", "scripts.cli", "events", "tail", "-n", "0",
                      "--follow", "--json"], env.vars, "events tail")
    try:
        wait_for(lambda: "following the log" in follow.output.text() or not follow.alive(), 30,
                 "the follower to listen")
        user = sign_up(env, "late_one")
        wait_for(lambda: any(f'"user_id": {user.id}' in line for line in follow.output.lines)
                 or not follow.alive(), 30, "the new event in the followed tail")
        assert follow.alive(), follow.output.text()
    finally:
        follow.stop()


def _names_on_shards(env: Env, wanted: dict[int, int]) -> dict[int, list[str]]:
    """User names signing up on each shard of ``wanted`` ({shard: how many})."""
    found: dict[int, list[str]] = {s: [] for s in wanted}
    i = 0
    while any(len(found[s]) < n for s, n in wanted.items()):
        name = f"tailer{i}"
        shard = username_shard(name, env.router.count)
        if shard in found and len(found[shard]) < wanted[shard]:
            found[shard].append(name)
        i += 1
    return found


def _printed(follow: Process, user: User) -> int:
    """How many times ``follow`` printed ``user``'s sign-up."""
    events = [json.loads(line) for line in list(follow.output.lines) if line.startswith("{")]
    return sum(1 for e in events
               if e["type"] == "UserRegistered" and e["data"]["user_id"] == user.id)


def test_tail_follow_prints_an_event_committed_behind_the_head(env: Env) -> None:
    """T1 signs up (lower txid) and stays open; T2 signs up on the same shard and commits;
    tail -n 1 --follow starts (printing T2's event); T1 commits. T1's event, never printed
    (it was not committed), is printed then: the follower starts below every open
    transaction, not at the head, and does not print T2's event a second time."""
    catalog.load()
    shard = 0
    first, second, third = _names_on_shards(env, {shard: 3})[shard]
    conn = env.router.database(shard).connect()
    try:
        early = sign_up_txn(Txn(conn.cursor()), env.store, shard,
                            Register(first, HASH, "First"), None)
        middle = sign_up(env, second)  # commits with a later txid on the same shard
        follow = Process([sys.executable, "-m", "scripts.cli", "events", "tail", "-n", "1",
                          "--follow", "--json"], env.vars, "events tail")
        try:
            wait_for(lambda: "following the log" in follow.output.text()
                     or not follow.alive(), 30, "the follower to listen")
            conn.commit()  # the older transaction commits now, behind the head
            late = sign_up(env, third)
            wait_for(lambda: _printed(follow, late) or not follow.alive(), 30,
                     "the later event in the followed tail")
            assert _printed(follow, early) == 1, follow.output.text()
            assert _printed(follow, middle) == 1, follow.output.text()
        finally:
            follow.stop()
    finally:
        conn.close()


def test_tail_follow_rereads_a_shard_an_older_transaction_held_back(env: Env) -> None:
    """An event on shard A commits while an older transaction on shard B (same database)
    is open: the follower, woken for A, finds it hidden and remembers A. When B's
    transaction commits, its NOTIFY names B only, and under steady writes on B (no quiet
    second for the poll) A's event must still be printed, and soon."""
    import time

    catalog.load()
    a, b = env.router.shards_of(env.router.databases()[0])[:2]
    names = _names_on_shards(env, {a: 1, b: 30})
    follow = Process([sys.executable, "-m", "scripts.cli", "events", "tail", "-n", "0",
                      "--follow", "--json"], env.vars, "events tail")
    conn = env.router.database(b).connect()
    try:
        wait_for(lambda: "following the log" in follow.output.text() or not follow.alive(),
                 30, "the follower to listen")
        sign_up_txn(Txn(conn.cursor()), env.store, b, Register(names[b][0], HASH, "Old"),
                    None)
        hidden = sign_up(env, names[a][0])  # committed, but behind the open transaction
        time.sleep(0.3)
        conn.commit()
        deadline = time.monotonic() + 5
        for name in names[b][1:]:  # steady writes on shard B
            if _printed(follow, hidden) or time.monotonic() > deadline:
                break
            sign_up(env, name)
            time.sleep(0.3)
        assert _printed(follow, hidden) == 1, follow.output.text()
    finally:
        conn.close()
        follow.stop()
