"""Re-encrypting stored credentials under the newest key (``shutterlog secrets rotate``).

Linked accounts' credentials live in the log (``AccountLinked.credentials``, a Fernet token)
and in its inline projection. Rewriting the row alone would leave a replay rebuilding it
from tokens under the old key, so rotation appends a new ``AccountLinked`` for each link
whose token is not under the newest key: same user, service and account, the credentials
re-sealed (``CredentialCipher.rotate``). The log's latest word on every link is then
readable with the new key alone, and the old key can be dropped. A link changed meanwhile
is decided again from its latest state (an append that lost the race to a re-link retries
the transaction): an unlinked one is left alone, a re-linked one is re-sealed if it is still
under an older key. One that keeps changing through every retry is skipped and reported (run
the command again), and one no configured key opens (its key was dropped too soon) is left
alone and reported, so one link never aborts the run.

Rotation protects what is written from now on; it cannot rewrite history: the older
``AccountLinked`` events of the append-only log keep their credentials sealed under the old
key. After a LEAKED key, revoke the linked credentials at the services and link again.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.crypto import CredentialCipher, DecryptionError
from server.db import RetryTransaction, Txn
from server.domain.events import Event
from server.domain.links import AccountLinked, Link, link_stream
from server.domain.shards import schema_name
from server.shards import ShardRouter
from server.store import links
from server.store.events import PostgresEventStore, append_latest_txn


@dataclass(frozen=True)
class Rotation:
    checked: int
    rotated: int
    #: Links that changed during every try (``user <id> <service>``): run rotate again.
    skipped: tuple[str, ...] = ()
    #: Links no configured key opens (their key was dropped too soon): left as they are,
    #: their owners must link again.
    unreadable: tuple[str, ...] = ()


def rotate_all(store: PostgresEventStore, router: ShardRouter, cipher: CredentialCipher,
               dry_run: bool = False) -> Rotation:
    """Re-seal every link not under the newest key; how many were checked and rotated, and
    which were skipped."""
    checked = rotated = 0
    skipped: list[str] = []
    unreadable: list[str] = []
    for db in router.databases():
        for shard in router.shards_of(db):
            for link in db.run_interaction("links_of_shard", links.shard_links_txn,
                                           schema_name(shard)):
                checked += 1
                name = f"user {link.user_id} {link.service}"
                if cipher.is_current(link.credentials):
                    continue
                try:
                    cipher.decrypt(link.credentials)
                    if not dry_run:
                        rotated += db.run_interaction("rotate_link", _rotate_txn, store,
                                                      cipher, shard, link)
                    else:
                        rotated += 1
                except RetryTransaction:
                    skipped.append(name)
                except DecryptionError:  # one bad link never aborts the run
                    unreadable.append(name)
    return Rotation(checked, rotated, tuple(skipped), tuple(unreadable))


def _rotate_txn(txn: Txn, store: PostgresEventStore, cipher: CredentialCipher, shard: int,
                link: Link) -> bool:
    """Re-seal the link's latest credentials, decided on its state read now; a lost race
    (someone appended to its stream meanwhile) runs this again."""
    def decide() -> list[Event]:
        current = links.link_txn(txn, link.user_id, link.service)
        if current is None or cipher.is_current(current.credentials):
            return []
        return [AccountLinked(user_id=link.user_id, service=link.service,
                              account=current.account,
                              credentials=cipher.rotate(current.credentials))]

    stream = link_stream(link.user_id, link.service)
    return append_latest_txn(txn, store, shard, stream, decide, link.user_id) is not None
