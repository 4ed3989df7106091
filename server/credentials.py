"""Re-encrypting stored credentials under the newest key (``shutterlog secrets rotate``).

Linked accounts' credentials live in the log (``AccountLinked.credentials``, a Fernet token)
and in its inline projection. Rewriting the row alone would leave a replay rebuilding it
from tokens under the old key, so rotation appends a new ``AccountLinked`` for each link
whose token is not under the newest key: same user, service and account, the credentials
re-sealed (``CredentialCipher.rotate``). The log's latest word on every link is then
readable with the new key alone, and the old key can be dropped. A link changed meanwhile
(re-linked, unlinked) is left alone: its stream moved on.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.crypto import CredentialCipher
from server.db import Txn
from server.domain.links import AccountLinked, Link, link_stream
from server.domain.log import AppendRequest, NewEvent
from server.domain.shards import schema_name
from server.shards import ShardRouter
from server.store import links
from server.store.events import PostgresEventStore


@dataclass(frozen=True)
class Rotation:
    checked: int
    rotated: int


def rotate_all(store: PostgresEventStore, router: ShardRouter, cipher: CredentialCipher,
               dry_run: bool = False) -> Rotation:
    """Re-seal every link not under the newest key; how many were checked and rotated."""
    checked = rotated = 0
    for db in router.databases():
        for shard in router.shards_of(db):
            for link in db.run_interaction("links_of_shard", links.shard_links_txn,
                                           schema_name(shard)):
                checked += 1
                if cipher.is_current(link.credentials):
                    continue
                if dry_run or db.run_interaction("rotate_link", _rotate_txn, store, cipher,
                                                 shard, link):
                    rotated += 1
    return Rotation(checked, rotated)


def _rotate_txn(txn: Txn, store: PostgresEventStore, cipher: CredentialCipher, shard: int,
                link: Link) -> bool:
    current = links.link_txn(txn, link.user_id, link.service)
    if current is None or current.link_id != link.link_id:
        return False
    stream = link_stream(link.user_id, link.service)
    event = AccountLinked(user_id=link.user_id, service=link.service, account=link.account,
                          credentials=cipher.rotate(current.credentials))
    store.append_txn(txn, [AppendRequest(shard, stream, (NewEvent(event, actor=link.user_id),),
                                         expected_version=store.stream_version_txn(txn, stream))])
    return True
