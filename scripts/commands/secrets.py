"""``shutterlog secrets genkey``: a new key for encrypting stored credentials."""

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


def _genkey(args: argparse.Namespace) -> int:
    from server.crypto import generate_key

    print(generate_key())
    return 0
