"""``shutterlog relay``: watch the log and kick the consumers that are behind."""

from __future__ import annotations

import argparse

from scripts.commands.common import config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "relay", help="watch the event log and submit 'advance consumer' jobs to gearmand",
        description="LISTEN for appends on every physical database, kick the consumers of "
        "shards with new events through gearmand, re-kick lagging consumers and late tasks "
        "every relay.poll_interval seconds. Several relays may run at once. SIGTERM stops it.",
    )
    p.add_argument("--metrics-port", type=int, default=None,
                   help="port of /metrics (default: relay.metrics_port; 0: none)")
    p.set_defaults(func=_relay)


def _relay(args: argparse.Namespace) -> int:
    from workers import handlers, logs, metrics
    from workers.consumers import CONSUMERS
    from workers.relay import Relay

    cfg = config(args)
    logs.setup(cfg, "relay")
    handlers.load(cfg.workers.modules)
    port = cfg.relay.metrics_port if args.metrics_port is None else args.metrics_port
    metrics.serve(port)
    return Relay(cfg, CONSUMERS).run()
