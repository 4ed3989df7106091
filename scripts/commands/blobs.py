"""``shutterlog blobs gc``: remove blobs no medium references (beyond a grace period)."""

from __future__ import annotations

import argparse

from scripts.commands.common import config, say


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("blobs", help="the blob store: garbage collection",
                       description="Uploads and renditions are content-addressed blobs.")
    cmds = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    gc = cmds.add_parser(
        "gc", help="remove blobs no live medium references",
        description="Removes blobs older than the grace period (media.gc_grace) that no medium "
        "references, or only deleted media do: uploads whose event was never appended (a "
        "crash between storing the blob and appending) and deleted media's files. Also "
        "removes temporary files left by crashed writes.")
    gc.add_argument("--grace", type=float, default=None,
                    help="seconds a blob must be unreferenced and untouched (default: "
                    "media.gc_grace)")
    gc.add_argument("--dry-run", action="store_true", help="list, remove nothing")
    gc.set_defaults(func=_gc)


def _gc(args: argparse.Namespace) -> int:
    from plugins.blobs import open_store
    from server.blobgc import collect
    from server.shards import ShardRouter

    cfg = config(args)
    router = ShardRouter(cfg.shard_map, pool_size=1, name="shutterlog-cli")
    try:
        grace = cfg.media.gc_grace if args.grace is None else args.grace
        result = collect(open_store(cfg), router, grace, dry_run=args.dry_run,
                         progress=lambda n, removed: say(f"checked {n} blobs, "
                                                         f"{removed} unreferenced"))
    finally:
        router.close()
    verb = "would remove" if args.dry_run else "removed"
    say(f"checked {result.checked} blobs older than {grace:.0f}s: {verb} {result.removed}")
    return 0
