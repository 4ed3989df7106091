"""``shutterlog``: the command line of the whole system.

Each subcommand lives in ``scripts/commands`` and imports what it needs only when it runs,
so ``shutterlog workers`` can patch the standard library for gevent before anything else is
imported, and ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Subcommand modules, in the order ``--help`` lists them.
COMMANDS = [
    "run", "stack", "config", "migrate", "relay", "workers", "status", "deadletters", "events",
    "replay", "apps", "secrets", "blobs",
]

#: Subcommands that run under gevent: patched before any other import.
GREEN = {"workers", "relay", "deadletters"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="shutterlog",
        description="shutterlog: an event-sourced backend for photo and video sharing.",
    )
    p.add_argument("-c", "--config", help="configuration file (TOML); default: "
                   "SHUTTERLOG_CONFIG, else ./shutterlog.toml if present")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"scripts.commands.{name}").register(sub)
    return p


def command_of(argv: list[str]) -> str | None:
    """The command ``argv`` names: its first word that is not the top-level ``-c/--config``
    option or its value."""
    words = iter(argv)
    for word in words:
        if word in ("-c", "--config"):
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # before anything else is imported; --help stays plain
    if command_of(argv) in GREEN and not {"-h", "--help"} & set(argv):
        from workers.green import patch

        patch()
    args = parser().parse_args(argv)
    from server.config import ConfigError

    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"shutterlog: invalid configuration: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
