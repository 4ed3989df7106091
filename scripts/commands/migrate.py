"""``shutterlog migrate``: apply pending migrations to every physical database."""

from __future__ import annotations

import argparse

from scripts.commands.common import config, say


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "migrate", help="apply pending schema migrations to every physical database",
        description="Apply the pending migrations (global ones once per physical database, "
        "shard ones once per logical shard). Running it again changes nothing.",
    )
    p.add_argument("--check", action="store_true",
                   help="only list pending migrations; exit 1 if there are any")
    p.set_defaults(func=_migrate)


def _migrate(args: argparse.Namespace) -> int:
    from server.shards import ShardRouter
    from server.store.migrate import migrate, pending

    cfg = config(args)
    router = ShardRouter(cfg.shard_map, pool_size=1, name="shutterlog-migrate")
    try:
        if args.check:
            todo = pending(router)
            for line in todo:
                print(line)
            return 1 if todo else 0
        n = migrate(router, say=say)
        say(f"{n} migration(s) applied" if n else "database is up to date")
        return 0
    finally:
        router.close()
