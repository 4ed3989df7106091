"""Helpers shared by subcommands: configuration, the local stack, output."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from scripts.stack import LocalStack
from server.config import Config, load


def config(args: argparse.Namespace) -> Config:
    """The configuration named by ``--config`` (or found by the usual rules)."""
    return load(getattr(args, "config", None))


def stack(cfg: Config, *, ephemeral: bool = False) -> LocalStack:
    """The local stack the configuration describes."""
    return LocalStack(
        cfg.var,
        postgres_port=cfg.stack.postgres_port,
        redis_port=cfg.stack.redis_port,
        gearman_port=cfg.stack.gearman_port,
        databases=cfg.stack.databases,
        postgres_bin=cfg.stack.postgres_bin,
        ephemeral=ephemeral,
        say=say,
    )


def say(message: str) -> None:
    """A progress line for people, on stderr so stdout stays parseable."""
    print(f"shutterlog: {message}", file=sys.stderr, flush=True)


def emit(data: Any, as_json: bool) -> None:
    """Print ``data`` as JSON, or as aligned ``key  value`` lines."""
    if as_json:
        print(json.dumps(data, indent=2, default=str))
        return
    if isinstance(data, dict):
        width = max((len(str(k)) for k in data), default=0)
        for k, v in data.items():
            print(f"{k:<{width}}  {v}")
    else:
        print(data)


def metrics_port_option(p: argparse.ArgumentParser, key: str) -> None:
    """``--metrics-port`` for a process serving /metrics, defaulting to setting ``key``."""
    p.add_argument("--metrics-port", type=int, default=None,
                   help=f"port of /metrics on 127.0.0.1 (default: {key}; 0: none)")


def green_process(cfg: Config, role: str, metrics_port: int) -> None:
    """What the relay and the workers do first: logging, the schema check (refuse to run on
    a database with pending migrations), consumer modules, /metrics."""
    import logging

    from server.shards import ShardRouter
    from server.store.migrate import require_migrated
    from workers import handlers, logs, metrics

    logs.setup(cfg, role)
    router = ShardRouter(cfg.shard_map, pool_size=1)
    try:
        require_migrated(router, f"shutterlog {role}", logging.getLogger(__name__).warning)
    finally:
        router.close()
    handlers.load(cfg.workers.modules)
    metrics.serve(metrics_port)
