"""``shutterlog secrets genkey``: a new key for encrypting stored credentials;
``shutterlog secrets rotate``: re-encrypt stored credentials under the newest key."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("secrets", help="keys that encrypt stored credentials")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    genkey = verbs.add_parser(
        "genkey", help="print a new encryption key",
        description="Print a new Fernet key for secrets.encryption_keys. To rotate: put it "
        "first in the list (SHUTTERLOG_SECRETS_ENCRYPTION_KEYS='NEW;OLD', 'master' standing "
        "for the key derived from secrets.key), restart, re-encrypt stored credentials, then "
        "drop the old key.",
    )
    genkey.set_defaults(func=_genkey)
    rotate = verbs.add_parser(
        "rotate", help="re-encrypt linked accounts' credentials under the newest key",
        description="Appends, for every linked account whose credentials are not encrypted "
        "with the first key of secrets.encryption_keys, an AccountLinked re-sealing them, so "
        "the log and the linked_accounts table need only the new key. Safe to run again.",
    )
    rotate.add_argument("--dry-run", action="store_true", help="count, change nothing")
    rotate.set_defaults(func=_rotate)


def _genkey(args: argparse.Namespace) -> int:
    from server.crypto import generate_key

    print(generate_key())
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from scripts.commands.common import config, say
    from server import catalog
    from server.credentials import rotate_all
    from server.crypto import CredentialCipher
    from server.shards import ShardRouter
    from server.store.events import PostgresEventStore

    catalog.load()
    cfg = config(args)
    router = ShardRouter(cfg.shard_map, pool_size=1, name="shutterlog-cli")
    try:
        done = rotate_all(PostgresEventStore(router), router, CredentialCipher.from_config(cfg),
                          dry_run=args.dry_run)
    finally:
        router.close()
    verb = "would re-encrypt" if args.dry_run else "re-encrypted"
    for link in done.skipped:
        say(f"skipped {link}: the link changed during every try; run rotate again")
    for link in done.unreadable:
        say(f"cannot open {link}: no configured key decrypts it (its key was dropped); "
            "left as it is: its owner must link the account again")
    say(f"checked {done.checked} linked account(s): {verb} {done.rotated}")
    return 1 if done.unreadable else 0
