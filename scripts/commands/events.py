"""``shutterlog events tail|show|stats``: look at the event log, readable or as JSON.

Secret fields (password hashes, sealed secrets: declared with ``secret=`` on the event type)
are masked in every output.
"""

from __future__ import annotations

import argparse
import json
import select
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from scripts.commands.common import config, emit


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("events", help="look at the event log: tail, show one event, statistics")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    tail = verbs.add_parser(
        "tail", help="the newest events over every shard; --follow keeps printing new ones",
        description="Print the newest events of the log (over every physical database, oldest "
        "first), then with --follow every event committed after them, as it becomes safe to "
        "read (the same ordering rule the consumers use).",
    )
    tail.add_argument("-n", "--lines", type=int, default=20, help="how many (default: 20)")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    tail.add_argument("--type", action="append", dest="types", metavar="TYPE",
                      help="only this event type (repeatable)")
    tail.add_argument("--user", type=int, metavar="USER_ID", help="only events by this actor")
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    tail.set_defaults(func=_tail)
    show = verbs.add_parser("show", help="one event, decoded (upcast to the current version)")
    show.add_argument("id", type=int, help="the event id")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=_show)
    stats = verbs.add_parser(
        "stats", help="counts by type and by shard, log size, oldest and newest event",
        description="Counts by type and by shard (a full scan of every events table), the "
        "tables' size on disk, and the time of the oldest and newest event.",
    )
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(func=_stats)


@contextmanager
def _store(args: argparse.Namespace) -> Iterator[Any]:
    from server import catalog
    from server.shards import ShardRouter
    from server.store.events import PostgresEventStore

    catalog.load()
    router = ShardRouter(config(args).shard_map, pool_size=2, name="shutterlog-events")
    try:
        yield PostgresEventStore(router)
    finally:
        router.close()


def _as_dict(event: Any) -> dict[str, Any]:
    from server.domain.events import EVENTS

    return {
        "id": event.id,
        "time": datetime.fromtimestamp(event.created_ms / 1000, UTC).isoformat(
            timespec="milliseconds"
        ),
        "shard": event.shard,
        "position": str(event.position),
        "stream": event.stream,
        "version": event.version,
        "type": event.type,
        "actor": event.actor,
        "data": EVENTS.redacted(event.data),
        "metadata": event.metadata,
    }


def _print(event: Any, as_json: bool) -> None:
    d = _as_dict(event)
    if as_json:
        print(json.dumps(d, default=str), flush=True)
        return
    actor = f" actor={d['actor']}" if d["actor"] is not None else ""
    data = json.dumps(d["data"], ensure_ascii=False, default=str)
    print(f"{d['time']}  {d['shard']:>4}  {d['type']:<22} {d['stream']} v{d['version']}"
          f"{actor}  {data}", flush=True)


#: How often (seconds) --follow re-reads every shard without being notified, and a shard an
#: older open transaction held back (its commit may notify another shard only).
_POLL, _BLOCKED_POLL = 1.0, 0.1


def _tail(args: argparse.Namespace) -> int:
    types = set(args.types) if args.types else None
    with _store(args) as store:
        printed = store.latest(args.lines, types, args.user)
        for event in printed:
            _print(event, args.json)
        if args.follow:
            try:
                _follow(store, types, args.user, args.json, {e.id for e in printed})
            except KeyboardInterrupt:
                return 0
    return 0


def _follow(store: Any, types: set[str] | None, user: int | None, as_json: bool,
            printed: set[int]) -> None:
    """Print events committed from now on (but those already ``printed``), shard by shard
    in log order, woken by the same NOTIFY the relay listens to (and a poll)."""
    from server.domain.checkpoints import NOTIFY_CHANNEL, parse_notification

    positions = {s: store.safe_head(s) for s in range(store.router.count)}
    blocked: set[int] = set()  # shards whose next events an older open transaction hides
    listeners = []
    for db in store.router.databases():
        conn = db.connect(autocommit=True)
        conn.cursor().execute(f"LISTEN {NOTIFY_CHANNEL}")
        listeners.append(conn)
    print("shutterlog: following the log (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        while True:
            ready, _, _ = select.select(listeners, [], [],
                                        _BLOCKED_POLL if blocked else _POLL)
            woken = set(blocked)
            for conn in ready:
                conn.poll()
                woken |= {parse_notification(n.payload)[0] for n in conn.notifies}
                conn.notifies.clear()
            for shard in sorted(woken) if ready else positions:
                while True:
                    page = store.read_page(shard, positions[shard], 500, types)
                    for event in page.events:
                        if (user is None or event.actor == user) and event.id not in printed:
                            _print(event, as_json)
                    positions[shard] = page.next
                    if page.more and page.scanned == 0:
                        blocked.add(shard)
                    else:
                        blocked.discard(shard)
                    if not page.more or page.scanned == 0:
                        break
    finally:
        for conn in listeners:
            conn.close()


def _show(args: argparse.Namespace) -> int:
    with _store(args) as store:
        event = store.get(args.id)
    if event is None:
        print(f"shutterlog: no event {args.id}", file=sys.stderr)
        return 1
    d = _as_dict(event)
    if args.json:
        emit(d, True)
    else:
        for key in ("id", "time", "shard", "position", "stream", "version", "type", "actor"):
            print(f"{key:<9} {d[key]}")
        print("data")
        for key, value in d["data"].items():
            print(f"  {key:<16} {value!r}")
        if d["metadata"]:
            print(f"metadata  {json.dumps(d['metadata'])}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from server.store.log_stats import LogStats, stats_txn

    started = time.monotonic()
    total = LogStats()
    with _store(args) as store:
        for db in store.router.databases():
            total.merge(db.run_interaction("log_stats", stats_txn))
    if args.json:
        emit({"events": total.events, "bytes": total.bytes, "oldest": total.oldest,
              "newest": total.newest, "by_type": total.by_type,
              "by_shard": {str(k): v for k, v in sorted(total.by_shard.items())}}, True)
        return 0
    print(f"events   {total.events:,} in {total.bytes / 1e6:,.1f} MB "
          f"(scanned in {time.monotonic() - started:.1f}s)")
    print(f"oldest   {total.oldest}\nnewest   {total.newest}")
    print("by type")
    for t, n in sorted(total.by_type.items(), key=lambda kv: -kv[1]):
        print(f"  {t:<28} {n:>12,}")
    print("by shard")
    for s, n in sorted(total.by_shard.items()):
        print(f"  {s:<28} {n:>12,}")
    return 0
