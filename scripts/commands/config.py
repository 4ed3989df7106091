"""``shutterlog config show``: the effective configuration, secrets masked."""

from __future__ import annotations

import argparse

from scripts.commands.common import config, emit


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="inspect the configuration")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    show = verbs.add_parser(
        "show", help="print the effective configuration (file, environment, defaults)",
        description="Print every setting's effective value, with secrets and passwords masked. "
        "Each key can be set in the TOML file or by the environment variable "
        "SHUTTERLOG_<SECTION>_<KEY>.",
    )
    show.add_argument("--json", action="store_true", help="print JSON")
    show.add_argument("--docs", action="store_true", help="add each setting's description")
    show.set_defaults(func=_show)


def _show(args: argparse.Namespace) -> int:
    from server.config import env_name, masked

    cfg = config(args)
    values = masked(cfg)
    if args.docs and not args.json:
        for key, _value, doc, _secret in cfg.entries():
            print(f"{key} = {values[key]!r}\n    {doc} (env {env_name(key)})")
        return 0
    emit(values, args.json)
    return 0
