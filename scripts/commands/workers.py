"""``shutterlog workers``: the worker pool (gevent), running consumers and tasks."""

from __future__ import annotations

import argparse

from scripts.commands.common import config, green_process, metrics_port_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "workers", help="run the worker pool: consumers' advance jobs and durable tasks",
        description="Connect to every configured gearmand and run up to --concurrency jobs at "
        "once (gevent). SIGTERM or Ctrl-C: finish the current batches and exit; a second "
        "Ctrl-C exits at once.",
    )
    p.add_argument("--concurrency", type=int, default=None,
                   help="jobs run at once (default: workers.concurrency)")
    metrics_port_option(p, "workers.metrics_port")
    p.set_defaults(func=_workers)


def _workers(args: argparse.Namespace) -> int:
    import dataclasses

    from workers.consumers import CONSUMERS
    from workers.context import WorkerContext
    from workers.pool import WorkerPool

    cfg = config(args)
    if args.concurrency is not None:
        if args.concurrency < 1:
            raise SystemExit("shutterlog workers: --concurrency must be at least 1")
        cfg = dataclasses.replace(
            cfg, workers=dataclasses.replace(cfg.workers, concurrency=args.concurrency)
        )
    port = cfg.workers.metrics_port if args.metrics_port is None else args.metrics_port
    green_process(cfg, "workers", port)
    ctx = WorkerContext.create(cfg)
    return WorkerPool(ctx, CONSUMERS, cfg.workers.concurrency).run()
