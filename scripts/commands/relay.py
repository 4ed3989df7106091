"""``shutterlog relay``: watch the log and kick the consumers that are behind."""

from __future__ import annotations

import argparse

from scripts.commands.common import config, green_process, metrics_port_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "relay", help="watch the event log and submit 'advance consumer' jobs to gearmand",
        description="LISTEN for appends on every physical database, kick the consumers of "
        "shards with new events through gearmand, re-kick lagging consumers and late tasks "
        "every relay.poll_interval seconds. Several relays may run at once. SIGTERM stops it.",
    )
    metrics_port_option(p, "relay.metrics_port")
    p.set_defaults(func=_relay)


def _relay(args: argparse.Namespace) -> int:
    from workers.consumers import CONSUMERS
    from workers.relay import Relay

    cfg = config(args)
    port = cfg.relay.metrics_port if args.metrics_port is None else args.metrics_port
    green_process(cfg, "relay", port)
    return Relay(cfg, CONSUMERS).run()
