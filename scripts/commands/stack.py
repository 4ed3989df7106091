"""``shutterlog stack up|down|status``: the local PostgreSQL, Redis and gearmand."""

from __future__ import annotations

import argparse

from scripts.commands.common import config, emit, stack


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stack", help="start, stop or inspect the local servers (PostgreSQL, Redis, gearmand)",
        description="The local stack: a PostgreSQL cluster (initdb in VAR/postgres), Redis and "
        "gearmand on loopback ports, started and stopped by this command. Servers already "
        "running on the machine are never touched.",
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    up = verbs.add_parser("up", help="start the servers that are not running, migrate, return")
    up.add_argument("--no-migrate", action="store_true", help="do not apply migrations")
    up.set_defaults(func=_up)
    down = verbs.add_parser("down", help="stop the servers this stack started")
    down.set_defaults(func=_down)
    status = verbs.add_parser("status", help="show which servers run, their ports and pids")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=_status)


def _up(args: argparse.Namespace) -> int:
    cfg = config(args)
    stack(cfg).up()
    if not args.no_migrate:
        from scripts.commands.migrate import _migrate

        args.check = False
        return _migrate(args)
    return 0


def _down(args: argparse.Namespace) -> int:
    stack(config(args)).down()
    return 0


def _status(args: argparse.Namespace) -> int:
    rows = stack(config(args)).status()
    if args.json:
        emit([{"name": r.name, "port": r.port, "pid": r.pid} for r in rows], True)
    else:
        for r in rows:
            state = f"running (pid {r.pid})" if r.pid else "stopped"
            print(f"{r.name:<9} 127.0.0.1:{r.port:<6} {state}")
    return 0 if all(r.pid for r in rows) else 3
