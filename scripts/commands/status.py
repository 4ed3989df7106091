"""``shutterlog status``: consumers, lag, dead letters, tasks, gearmand queues and workers."""

from __future__ import annotations

import argparse

from scripts.commands.common import config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status", help="consumers and their lag, dead letters, gearmand queues, workers",
        description="Show every consumer's position against the log's head (events and "
        "seconds behind, stopped or failing shards), dead letters, tasks by state, and for each "
        "gearmand the queue depths of our functions and the workers connected.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_status)


def _status(args: argparse.Namespace) -> int:
    import json

    from workers import handlers
    from workers.consumers import CONSUMERS
    from workers.status import render, report

    cfg = config(args)
    handlers.load(cfg.workers.modules)
    data = report(cfg, CONSUMERS)
    print(json.dumps(data, indent=2) if args.json else render(data))
    return 0
