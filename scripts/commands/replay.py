"""``shutterlog replay PROJECTION...``: rebuild projections from the log while the system runs,
or (``--verify``) prove the live ones equal to the log's. The engine is ``workers/replay.py``.

Output: a progress bar on a terminal (stderr), plain lines when stderr is not one, JSON lines
on stdout with ``--json`` (progress, messages, then one summary object). Exit status: 0 done
(or equal), 1 differences found, 2 bad usage, 3 another replay of a projection is running,
4 the replay failed, 130 interrupted (projections not swapped yet are untouched; run it
again to resume).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from scripts.commands.common import config

_LIST = ", ".join(["feeds", "activity", "counters", "tags", "realtime", "liked", "followers",
                   "geo", "all"])


def register(sub: argparse._SubParsersAction) -> None:
    from server.domain.replay import SPECS

    p = sub.add_parser(
        "replay", help="rebuild projections from the log (live swap), or --verify them",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="projections:\n" + "\n".join(f"  {s.name:<10} {s.about}" for s in
                                              SPECS.values())
        + "\n  all        every one of them\n\nexit status: 0 done (or equal), 1 differences, "
        "2 bad usage, 3 busy, 4 failed, 130 interrupted",
        description="Rebuild projections from the event log into a fresh namespace while the "
        "system keeps running, catch up to the live head, then swap them in atomically; "
        "with --verify, build into a scratch namespace and compare with the live projection "
        "instead (exit 1 on any difference). An interrupted run resumes when run again "
        f"(--fresh starts over). Projections: {_LIST}.",
    )
    p.add_argument("projections", nargs="+", metavar="PROJECTION", help=f"one of: {_LIST}")
    p.add_argument("--shard", type=int, action="append", dest="shards", metavar="S",
                   help="only this logical shard (repeatable; projections kept per shard)")
    p.add_argument("--until", type=int, metavar="EVENT_ID",
                   help="stop each shard before its first event with a higher id (ids are "
                   "time-sortable; a txid.id position would name one shard's log only); the "
                   "live consumer applies the rest after the swap")
    p.add_argument("--dry-run", action="store_true",
                   help="say what would be done (resume or start over, events) and stop")
    p.add_argument("--verify", action="store_true",
                   help="compare a rebuild with the live projection; print the differences")
    p.add_argument("--fresh", action="store_true", help="start over even if a run can resume")
    p.add_argument("--limit", type=_count, default=100,
                   help="differences printed per projection (default: 100; the exit status "
                   "counts them all)")
    p.add_argument("--lock-timeout", type=float, default=60.0,
                   help="seconds to wait for a live consumer's running batch (default: 60)")
    p.add_argument("--json", action="store_true", help="JSON lines on stdout")
    p.set_defaults(func=_replay)


class Output:
    """Messages and progress: a bar on a terminal, lines otherwise, JSON with ``--json``."""

    def __init__(self, as_json: bool, err: TextIO = sys.stderr, out: TextIO = sys.stdout
                 ) -> None:
        self.as_json = as_json
        self.err = err
        self.out = out
        self.tty = err.isatty() and not as_json
        self._last = 0.0
        self._bar = False

    def say(self, message: str, **fields: object) -> None:
        if self.as_json:
            self._json({"type": "message", "message": message, **fields})
            return
        self._end_bar()
        print(f"shutterlog: {message}", file=self.err, flush=True)

    def progress(self, progress: Any) -> None:
        now = time.monotonic()
        final = progress.done >= progress.total
        every = 0.1 if self.tty else 2.0
        if now - self._last < every and not final:
            return
        self._last = now
        if self.as_json:
            self._json({"type": "progress", **progress.as_dict()})
        elif self.tty:
            self.err.write("\r" + progress.bar())
            self.err.flush()
            self._bar = True
        else:
            print(f"shutterlog: {progress.bar().split('] ', 1)[1]}", file=self.err, flush=True)

    def _end_bar(self) -> None:
        if self._bar:
            self.err.write("\n")
            self._bar = False

    def _json(self, data: dict[str, Any]) -> None:
        print(json.dumps(data, default=str), file=self.out, flush=True)

    def summary(self, items: list[dict[str, Any]]) -> None:
        if self.as_json:
            self._json({"type": "summary", "projections": items,
                        "differences": sum(i["differences_found"] for i in items)})
            return
        self._end_bar()
        for i in items:
            rate = f"{i['events_per_second']:,.0f} events/s" if i["events"] else ""
            print(f"{i['projection']:<10} {i['status']:<9} run {i['run']:<5} "
                  f"{i['events']:>10,} events  {i['seconds']:8.2f} s  {rate:>16}  "
                  f"{i['message']}", file=self.out)
            for d in i["differences"]:
                print(f"  {d['key']}\n    expected: {_short(d['expected'])}\n    found:    "
                      f"{_short(d['found'])}", file=self.out)


def _count(text: str) -> int:
    """An argparse type: a whole number, 0 or more."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _short(value: object, width: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width] + f"... ({len(text)} characters)"


def _replay(args: argparse.Namespace) -> int:
    import psycopg2.extensions
    import psycopg2.extras

    from server.domain.replay import ReplayUsageError, resolve
    from workers import handlers
    from workers.consumers import CONSUMERS
    from workers.context import WorkerContext
    from workers.replay import ReplayBusy, Replayer, Request

    # Queries waited on in Python, so Ctrl-C interrupts one (and cancels it on the server),
    # even while the swap waits for a live consumer's lock.
    psycopg2.extensions.set_wait_callback(psycopg2.extras.wait_select)
    cfg = config(args)
    out = Output(args.json)
    handlers.load(cfg.workers.modules)
    ctx = WorkerContext.create(cfg, name="shutterlog-replay")
    replayer = Replayer(ctx, CONSUMERS, out, lock_timeout=args.lock_timeout)
    try:
        specs, shards = resolve(args.projections, args.shards, ctx.router.count)
        if args.verify and "all" in args.projections and "realtime" not in args.projections:
            # What was published stays published: a history rebuilt from today's rows lacks
            # media deleted or made private since, so it is only verified when named.
            specs = [s for s in specs if s.name != "realtime"]
            out.say("verify all: realtime histories left out (name realtime to compare them: "
                    "media deleted since they were published show as differences)")
        items = replayer.execute(Request(specs, shards, args.until, args.verify,
                                         args.dry_run, args.fresh, args.limit))
    except ReplayUsageError as e:
        out.say(f"error: {e}", error="usage")
        return 2
    except ReplayBusy as e:
        out.say(f"error: {e}", error="busy")
        return 3
    except (KeyboardInterrupt, psycopg2.extensions.QueryCanceledError):
        # Ctrl-C in a query cancels it (wait_select): the query ends as "canceled".
        out.say("interrupted: projections not swapped yet are untouched (run it again to "
                "resume)", error="interrupted")
        return 130
    except Exception as e:
        out.say(f"error: the replay failed; projections not swapped yet are untouched (run "
                f"it again to resume): {type(e).__name__}: {e}", error="failed")
        return 4
    finally:
        replayer.close()
        ctx.close()
    summary = [i.summary() for i in items]
    out.summary(summary)
    return 1 if any(i.found for i in items) else 0
