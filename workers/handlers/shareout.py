"""The ``shareout`` consumer and its tasks: a medium goes out to the networks its owner
linked, in the background, one durable task per (medium, service).

On ``MediaRendered`` (the renditions exist, so there is a public image URL for Facebook to
fetch) of a medium whose ``MediaPosted`` asked for ``share_to``, the consumer queues one
ledger row per service and one ``share`` task per row in ONE transaction, and submits the
tasks' jobs after the commit (a lost submit is re-submitted by the relay). A batch applied
again queues nothing. On ``MediaDeleted`` the medium's posted shares become ``deleting``,
each with an ``unshare`` task, which deletes with the current link if it is of the account
that made the post (``share_link``: after a re-link to another account the row is
``delete_failed``, that account untouched). A
share task finding its medium deleted after an attempt with no known result has the target
take back the post it may have made (``IShareTarget.take_back``).

A ``share`` task decrypts the link's credentials, builds the request (caption, link to the
medium, the standard rendition) and calls ``share_once``: the ledger records the attempt
before the remote create call and the remote id after, and the idempotency key
``share_key(MediaPosted id, service)`` goes with every call, so a redone task (a worker
killed mid-share, a lost lease) never posts twice. Outcomes:

- ``Posted``: recorded (remote id, URL); if the medium was deleted meanwhile, it is unshared;
- ``RetryLater``: the task runs again at ``next_attempt`` (backoff with jitter, never sooner
  than the service asked), or the share is recorded ``failed`` once the policy gives up;
- ``CredentialDead``: recorded ``failed`` and the link ends with ``AccountUnlinked``
  (reason ``credential_dead``; the ``activity`` consumer tells the user);
- ``Failed``: recorded ``failed`` with the service's message.

A task that fails for good on an unexpected error (its ``workers.task_attempts`` used up)
records the share ``failed`` (a deletion ``delete_failed``) with a generic message, through
its kind's ``give_up`` hook, so the owner never sees it pending for ever.

Declared ``side_effect``: a replay of projections never runs it (a replay must never post).
``from_head``: deployed on a system with history, it does not post media uploaded before it
existed. Policy SKIP: one medium that cannot be queued does not hold up the shard.
"""

from __future__ import annotations

import logging
import random
import time
from functools import partial
from typing import Any

from plugins.blobs import open_store
from plugins.shareout import share_once
from server.crypto import DecryptionError
from server.db import Txn
from server.domain import links as linking
from server.domain.ids import shard_of
from server.domain.log import RecordedEvent
from server.domain.media import MediaDeleted, MediaPosted, MediaRendered, State, media_stream
from server.domain.media import permalink as link_of
from server.domain.shareout import (
    CredentialDead,
    Credentials,
    Deleted,
    Failed,
    Media,
    Outcome,
    Posted,
    RetryLater,
    RetryPolicy,
    ShareRequest,
    account_key,
    next_attempt,
    share_key,
)
from server.store import links, shares
from server.store.events import append_latest_txn
from server.store.media import Medium, hydrate
from server.store.shares import PENDING, Share, ShareLedger
from workers.consumers import OnFailure, consumer
from workers.context import WorkerContext
from workers.tasks import RetryTask, packed, submit_jobs, task_handler

log = logging.getLogger(__name__)
SHARE, UNSHARE = "share", "unshare"
_EARLY_MS = 50  # a task re-run this close to its time goes ahead
CANCELLED = "the medium was deleted before it was shared"


def now_ms() -> int:
    return int(time.time() * 1000)


def _payload(media_id: int, event_id: int, service: str, since_ms: int | None = None) -> bytes:
    """A task's payload; ``since_ms``: when an ``unshare`` task's row became ``deleting``
    (the start of ``shareout.give_up_after``, which the row's ``updated_ms`` is not: every
    retry re-records the row)."""
    data: dict[str, Any] = {"media_id": media_id, "service": service, "event_id": event_id}
    if since_ms is not None:
        data["since_ms"] = since_ms
    return packed([data])[0]


@consumer("shareout", "MediaRendered", "MediaDeleted", batch_size=100, side_effect=True,
          from_head=True, on_failure=OnFailure.SKIP)
def shareout(ctx: WorkerContext, events: list[RecordedEvent]) -> None:
    grace = ctx.config.workers.task_lease
    jobs: list[int] = []
    for e in events:
        data = e.data
        db = ctx.router.database(e.shard)
        if isinstance(data, MediaRendered):
            posted = ctx.store.read_stream(e.shard, media_stream(data.media_id))[0]
            assert isinstance(posted.data, MediaPosted)
            if not posted.data.share_to:
                continue
            keys = {s: share_key(posted.id, s) for s in posted.data.share_to}
            jobs += db.run_interaction("queue_shares", shares.queue_txn, data.media_id, keys,
                                       now_ms(), SHARE,
                                       partial(_payload, data.media_id, posted.id), grace)
        elif isinstance(data, MediaDeleted):
            jobs += _unshare(ctx, data.media_id)
    submit_jobs(ctx, jobs)


def _unshare(ctx: WorkerContext, media_id: int) -> list[int]:
    """Queue the deletion of the medium's posted shares; the new tasks' ids."""
    now = now_ms()
    return ctx.router.database(shard_of(media_id)).run_interaction(
        "unshare", shares.unshare_txn, media_id, now, UNSHARE,
        partial(_payload, media_id, 0, since_ms=now), ctx.config.workers.task_lease)


# --- the tasks -------------------------------------------------------------------------------


def _ledger(ctx: WorkerContext, payload: dict[str, Any]) -> ShareLedger:
    media_id = payload["media_id"]
    return ShareLedger(ctx.router.database(shard_of(media_id)), media_id, payload["service"],
                       now_ms)


def _share_given_up(ctx: WorkerContext, payload: dict[str, Any], error: object) -> None:
    """The ``share`` task failed for good on an unexpected error (``error``, not shown: it
    may carry internals): the owner sees the share failed, not pending for ever."""
    _ledger(ctx, payload).give_up(PENDING, "failed", "the share failed on an internal error")


def _unshare_given_up(ctx: WorkerContext, payload: dict[str, Any], error: object) -> None:
    """The ``unshare`` task failed for good on an unexpected error: the deletion is recorded
    failed (the post stays)."""
    _ledger(ctx, payload).give_up(("deleting",), "delete_failed",
                                  "the deletion failed on an internal error: the post stays")


@task_handler(SHARE, give_up=_share_given_up)
def share(ctx: WorkerContext, payload: dict[str, Any]) -> None:
    media_id, service = payload["media_id"], payload["service"]
    ledger = _ledger(ctx, payload)
    row = ledger.row()
    if row is None or row.state not in PENDING:
        return  # done by an earlier run of this task
    _wait_for(row)
    medium = hydrate(ctx.router, [media_id], 0).get(media_id)
    if medium is None or medium.state is State.DELETED:
        if row.state == "attempting" and medium is not None:  # a lost attempt may have
            _take_back(ctx, ledger, row, medium, payload["event_id"])  # posted: take it back
        else:
            ledger.record(state="cancelled", error=CANCELLED)
        return
    found = linked(ctx, medium.owner_id, service)
    if isinstance(found, str):
        ledger.record(state="failed", error=found)
        return
    link, credentials = found
    ledger.account = account_key(service, link.account, credentials)
    request = share_request(ctx, medium, service, payload["event_id"])
    outcome = share_once(ctx.share_targets[service], ledger, request, credentials)
    log.info("shareout: medium %d to %s: %s", media_id, service, type(outcome).__name__)
    _settle(ctx, ledger, row, outcome, link, "failed", row.created_ms)
    if isinstance(outcome, Posted):
        state = hydrate(ctx.router, [media_id], 0)[media_id].state
        if state is State.DELETED:  # deleted while we posted: the consumer saw no post
            submit_jobs(ctx, _unshare(ctx, media_id))


@task_handler(UNSHARE, give_up=_unshare_given_up)
def unshare(ctx: WorkerContext, payload: dict[str, Any]) -> None:
    media_id, service = payload["media_id"], payload["service"]
    ledger = _ledger(ctx, payload)
    row = ledger.row()
    if row is None or row.state != "deleting" or row.remote_id is None:
        return
    _wait_for(row)
    found = share_link(ctx, hydrate(ctx.router, [media_id], 0)[media_id].owner_id, row)
    if isinstance(found, str):
        ledger.record(state="delete_failed", error=f"{found}: the post stays")
        return
    link, credentials = found
    target = ctx.share_targets[service]
    outcome = (target.delete(row.remote_id, credentials) if target.can_delete
               else Failed(f"{service} posts cannot be deleted"))
    log.info("shareout: delete of medium %d on %s: %s", media_id, service,
             type(outcome).__name__)
    # tasks queued before since_ms existed: the row's last change, as before
    _settle(ctx, ledger, row, outcome, link, "delete_failed",
            payload.get("since_ms", row.updated_ms))


def linked(ctx: WorkerContext, owner: int, service: str
           ) -> tuple[linking.Link, Credentials] | str:
    """The owner's current link to ``service`` and its decrypted credentials, or why there
    are none (to record in the ledger)."""
    link = ctx.router.database(shard_of(owner)).run_interaction(
        "link", links.link_txn, owner, service)
    if link is None:
        return f"no linked {linking.SERVICE_NAMES[service]} account (unlinked meanwhile)"
    try:
        return link, Credentials.from_json(ctx.cipher.decrypt(link.credentials))
    except DecryptionError as e:  # its key was dropped from secrets.encryption_keys
        return str(e)


def share_link(ctx: WorkerContext, owner: int, row: Share
               ) -> tuple[linking.Link, Credentials] | str:
    """``linked``, if the current link is of the account that attempted or made ``row``'s
    post (``account_key``: credentials re-sealed by ``secrets rotate`` or renewed keep it; a
    row from before it was recorded takes the current link); else why not."""
    found = linked(ctx, owner, row.service)
    if isinstance(found, str) or row.account in (
            None, account_key(row.service, found[0].account, found[1])):
        return found
    return "the account was re-linked since the post was made, so it is on the old account"


def share_request(ctx: WorkerContext, medium: Medium, service: str, event_id: int
                  ) -> ShareRequest:
    """What to post: the caption, the link to the medium, its standard rendition (the local
    file for the services we upload to, the public URL for those that fetch it)."""
    public = ctx.config.http.public_url
    video = medium.type == "video"
    name = (medium.videos if video else medium.images)["standard_resolution"]
    path = open_store(ctx.config).path(name)
    media = Media(f"{public.rstrip('/')}/blobs/{name}", "video/mp4" if video else "image/jpeg",
                  str(path) if path else None)
    return ShareRequest(event_id=event_id, medium_id=medium.id, owner_id=medium.owner_id,
                        service=service, caption=medium.caption,
                        permalink=link_of(public, medium.id), media=media)


def _wait_for(row: Share) -> None:
    """Run again later if the row's next try is not due (a re-submitted task came early)."""
    if row.next_ms is not None and row.next_ms > now_ms() + _EARLY_MS:
        raise RetryTask("not due yet", (row.next_ms - now_ms()) / 1000)


def _settle(ctx: WorkerContext, ledger: ShareLedger, row: Share, outcome: Outcome,
            link: linking.Link, failed: str, since_ms: int) -> None:
    """Record ``outcome`` in the ledger (``failed``: the state of a final failure) and act
    on it: retry later (giving up by the policy, counting time from ``since_ms``), or
    unlink a dead credential."""
    if isinstance(outcome, Posted):
        return  # share_once recorded it
    if isinstance(outcome, Deleted):
        ledger.record(state="deleted", error=None, next_ms=None)
    elif isinstance(outcome, RetryLater):
        s = ctx.config.shareout
        now = time.time()
        at = next_attempt(RetryPolicy(base=s.retry_base, max_attempts=s.max_attempts,
                                      give_up_after=s.give_up_after),
                          row.attempts + 1, since_ms / 1000, now, outcome.delay,
                          random.random())
        if at is None:
            ledger.record(state=failed, error=f"gave up after {row.attempts + 1} tries: "
                          f"{outcome.reason}", next_ms=None)
            return
        ledger.record(attempts=row.attempts + 1, next_ms=int(at * 1000), error=outcome.reason)
        raise RetryTask(outcome.reason, at - now)
    elif isinstance(outcome, CredentialDead):
        unlink_dead(ctx, link, outcome.reason)  # first: whoever sees the failure sees no link
        ledger.record(state=failed, error=f"the credentials were refused: {outcome.reason}")
    elif isinstance(outcome, Failed):
        ledger.record(state=failed, error=outcome.reason, next_ms=None)


def _take_back(ctx: WorkerContext, ledger: ShareLedger, row: Share, medium: Medium,
               event_id: int) -> None:
    """After a lost attempt on a medium deleted since: the target deletes the post it may
    have made (``take_back``), with the link that attempted it; no retries, the outcome is
    recorded as it is."""
    found = share_link(ctx, medium.owner_id, row)
    if isinstance(found, str):
        outcome: Outcome | None = Failed(found)
    else:
        outcome = ctx.share_targets[ledger.service].take_back(
            share_request(ctx, medium, ledger.service, event_id), found[1])
    if outcome is None:  # the target looked and found no post
        ledger.record(state="cancelled", error=CANCELLED, next_ms=None)
    elif isinstance(outcome, Deleted):
        ledger.record(state="deleted", remote_id=outcome.remote_id, error=None, next_ms=None)
    else:
        reason = (outcome.reason if isinstance(outcome, RetryLater | CredentialDead | Failed)
                  else type(outcome).__name__)
        ledger.record(state="delete_failed", next_ms=None, error=f"{reason}: a post the "
                      "attempt with no known result may have made stays")


def unlink_dead(ctx: WorkerContext, link: linking.Link, reason: str) -> None:
    """End ``link`` (if it is still the current one) with ``AccountUnlinked``
    (``credential_dead``); the idempotency key makes repeats append nothing."""
    shard = shard_of(link.user_id)
    stream = linking.link_stream(link.user_id, link.service)

    def txn_fn(txn: Txn) -> None:
        append_latest_txn(txn, ctx.store, shard, stream, lambda: linking.decide_unlink(
            links.link_txn(txn, link.user_id, link.service), link.service,
            linking.CREDENTIAL_DEAD, link.link_id, reason), link.user_id, f"unlink:{link.link_id}")

    ctx.router.database(shard).run_interaction("unlink_dead", txn_fn)
    log.warning("shareout: %s credentials of user %d refused; account unlinked",
                link.service, link.user_id)
