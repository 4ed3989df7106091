"""``shutterlog deadletters list|retry|drop``: events a consumer failed to apply."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from scripts.commands.common import config, say


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deadletters", help="list, retry or drop events a consumer failed to apply",
        description="Events that failed every retry are parked as dead letters. A consumer "
        "with the SKIP policy went on after them; one with STOP stopped on that shard.",
    )
    cmds = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = cmds.add_parser("list", help="list dead letters, oldest first")
    ls.add_argument("--consumer", help="only this consumer's")
    ls.add_argument("--json", action="store_true", help="print JSON (with tracebacks)")
    ls.set_defaults(func=_list)
    retry = cmds.add_parser(
        "retry", help="apply the event through its consumer's handler again",
        description="Re-apply the letter's event through its consumer's handler, here and now. "
        "On success the letter is deleted and a consumer stopped at it resumes.",
    )
    retry.add_argument("id", type=int, help="dead letter id (from 'list')")
    retry.set_defaults(func=_retry)
    drop = cmds.add_parser("drop", help="delete a dead letter: its event stays unapplied")
    drop.add_argument("id", type=int, help="dead letter id (from 'list')")
    drop.set_defaults(func=_drop)


def _list(args: argparse.Namespace) -> int:
    from server.shards import ShardRouter
    from server.store.consumers import ConsumerStore

    cfg = config(args)
    router = ShardRouter(cfg.shard_map, pool_size=1, name="shutterlog-cli")
    try:
        letters = ConsumerStore(router).letters(args.consumer)
    finally:
        router.close()
    if args.json:
        print(json.dumps([dataclasses.asdict(d) for d in letters], default=str, indent=2))
        return 0
    if not letters:
        print("no dead letters")
    for d in letters:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d.last_failed_ms / 1000))
        print(f"{d.id}  {d.consumer}  shard {d.shard}  event {d.event_id}  {d.status}  "
              f"{d.attempts} attempts, last {when}: {d.error}")
    return 0


def _retry(args: argparse.Namespace) -> int:
    return _with_letter(args, apply=True)


def _drop(args: argparse.Namespace) -> int:
    return _with_letter(args, apply=False)


def _with_letter(args: argparse.Namespace, apply: bool) -> int:
    """Retry (apply) or drop a letter; either way a consumer stopped at it resumes."""
    import traceback

    from server.store.consumers import ConsumerStore
    from workers import handlers
    from workers.advance import resolve_letter
    from workers.consumers import CONSUMERS
    from workers.context import WorkerContext

    cfg = config(args)
    handlers.load(cfg.workers.modules)
    ctx = WorkerContext.create(cfg, name="shutterlog-cli")
    try:
        store = ConsumerStore(ctx.router)
        letter = store.letter(args.id)
        if letter is None:
            say(f"no dead letter {args.id}")
            return 1
        try:
            resumed = resolve_letter(ctx, CONSUMERS, letter, apply=apply)
        except Exception as e:
            store.failed_again(letter, f"{type(e).__name__}: {e}", traceback.format_exc())
            say(f"dead letter {letter.id} failed again: {type(e).__name__}: {e}")
            return 1
        done = "applied and deleted" if apply else "dropped (its event stays unapplied)"
        say(f"dead letter {letter.id} {done}"
            + (f"; {letter.consumer} resumes on shard {letter.shard}" if resumed else ""))
        return 0
    finally:
        ctx.close()
