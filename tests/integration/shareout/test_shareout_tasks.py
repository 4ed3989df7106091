"""Share-out tasks run in-process against the fake Mastodon (no worker pool, so each test
decides when a task runs): a share or a deletion whose task finally fails on an unexpected
error is recorded failed, not left pending; a deletion the service keeps refusing gives up
``shareout.give_up_after`` after it began, however often it was retried; a medium deleted
after a share attempt whose answer was lost has the post it may have made taken back
(Mastodon, webhook); a deletion after a re-link never goes to the new account; both contexts
close the targets' HTTP client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgpack

from twisted.python.threadpool import ThreadPool

from server import catalog
from server.config import load
from server.context import ServiceContext
from server.credentials import rotate_all
from server.crypto import CredentialCipher, generate_key
from server.db import Txn
from server.domain.ids import shard_of
from server.domain.media import MediaDeleted, MediaRendered, media_stream
from server.domain.shareout import Credentials, Outcome, RetryLater, ShareRequest
from server.store.shares import Share, shares_of
from tests.fakes.http import Reply
from tests.fakes.mastodon import FakeMastodon
from tests.helpers import wait_for
from tests.integration.apiclient import Api
from tests.integration.conftest import Env
from tests.integration.mediakit import post
from tests.integration.shareout.conftest import Fakes, link, linked_user, shares
from workers.context import WorkerContext
from workers.handlers.shareout import SHARE, UNSHARE, shareout
from workers.tasks import run_task

catalog.load()
LEAK = "internal detail 7f3a"


class Broken:
    """A Mastodon target whose calls raise, as a bug or a lost database would: nothing the
    service answered."""

    name = "mastodon"
    can_delete = True

    def find_existing(self, *args: Any) -> Outcome | None:
        return None

    def post(self, *args: Any) -> Outcome:
        raise RuntimeError(LEAK)

    def delete(self, *args: Any) -> Outcome:
        raise RuntimeError(LEAK)


class LostAnswer:
    """A real target whose create call's answer is lost (a read timeout after the service
    made the post): the post exists, the worker sees RetryLater."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def post(self, request: ShareRequest, credentials: Credentials) -> Outcome:
        self.real.post(request, credentials)
        return RetryLater("network: ReadTimeout")


@contextmanager
def worker(env: Env, fakes: Fakes, **settings: str) -> Iterator[WorkerContext]:
    """A worker context pointed at the fakes, with ``settings`` (``SHUTTERLOG_*`` names
    without the prefix)."""
    overrides = {f"SHUTTERLOG_{k}": v for k, v in settings.items()}
    ctx = WorkerContext.create(load(env=env.vars | fakes.env() | overrides,
                                    search_default=False), name="shutterlog-test")
    try:
        yield ctx
    finally:
        ctx.close()


def consume(ctx: WorkerContext, media_id: int, event_type: type) -> None:
    """Run the ``shareout`` consumer on the medium's event of ``event_type``."""
    events = ctx.store.read_stream(shard_of(media_id), media_stream(media_id))
    shareout(ctx, [e for e in events if isinstance(e.data, event_type)])


def task_of(env: Env, media_id: int, kind: str) -> int:
    """The medium's one pending task of ``kind``."""
    rows = env.router.database(shard_of(media_id)).run_interaction(
        "tasks", Txn.fetchall, "SELECT id, payload FROM tasks WHERE kind = %s "
        "AND state = 'pending'", (kind,))
    [found] = [r[0] for r in rows if msgpack.unpackb(bytes(r[1]))["media_id"] == media_id]
    return int(found)


def row(env: Env, media_id: int) -> Share:
    [share] = shares_of(env.router, [media_id])[media_id]
    return share


def posted_then_deleted(api: Api, fakes: Fakes, env: Env, ctx: WorkerContext,
                        caption: str) -> tuple[int, str]:
    """A medium shared to Mastodon (its share task run to the end), then deleted with its
    ``unshare`` task queued; the medium and the remote status's id."""
    _, token = linked_user(api, fakes, "mastodon")
    media_id = int(post(api, token, caption, share_to="mastodon"))
    consume(ctx, media_id, MediaRendered)
    assert run_task(ctx, task_of(env, media_id, SHARE)) == "done"
    remote_id = row(env, media_id).remote_id
    assert row(env, media_id).state == "posted" and remote_id is not None
    r = api.http.delete(f"/v1/media/{media_id}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    consume(ctx, media_id, MediaDeleted)
    return media_id, remote_id


def test_a_share_whose_task_fails_for_good_shows_failed(api: Api, fakes: Fakes,
                                                       module_env: Env) -> None:
    """The share task raises until its tries are used up: the owner sees the share failed
    with a generic message (no internals), not pending for ever."""
    _, token = linked_user(api, fakes, "mastodon")
    media_id = int(post(api, token, "Broken share", share_to="mastodon"))
    with worker(module_env, fakes, WORKERS_TASK_ATTEMPTS="2") as ctx:
        ctx.share_targets = {"mastodon": Broken()}  # type: ignore[dict-item]
        consume(ctx, media_id, MediaRendered)
        task = task_of(module_env, media_id, SHARE)
        assert [run_task(ctx, task) for _ in range(2)] == ["retry", "failed"]
    found = shares(api, token, str(media_id))["mastodon"]
    assert found["state"] == "failed" and found["remote_id"] is None
    assert found["error"] == "the share failed on an internal error"


def test_a_deletion_whose_task_fails_for_good_is_delete_failed(api: Api, fakes: Fakes,
                                                               module_env: Env) -> None:
    """The unshare task raises until its tries are used up: the row ends delete_failed with
    a generic message, not deleting for ever."""
    with worker(module_env, fakes, WORKERS_TASK_ATTEMPTS="2") as ctx:
        media_id, _ = posted_then_deleted(api, fakes, module_env, ctx, "Broken unshare")
        ctx.share_targets = {"mastodon": Broken()}  # type: ignore[dict-item]
        task = task_of(module_env, media_id, UNSHARE)
        assert [run_task(ctx, task) for _ in range(2)] == ["retry", "failed"]
    share = row(module_env, media_id)
    assert share.state == "delete_failed"
    assert share.error == "the deletion failed on an internal error: the post stays"


def test_a_deletion_refused_again_and_again_gives_up_in_time(api: Api, fakes: Fakes,
                                                            module_env: Env) -> None:
    """Mastodon answers every delete 503 (Retry-After: 1): retried each second, the deletion
    is recorded delete_failed once shareout.give_up_after (2.5 s) has run from its start,
    though every retry re-records the row (the backoff alone would go on for ~14 tries)."""
    with worker(module_env, fakes, SHAREOUT_GIVE_UP_AFTER="2.5", SHAREOUT_RETRY_BASE="0.0001",
                SHAREOUT_MAX_ATTEMPTS="1000") as ctx:
        media_id, remote_id = posted_then_deleted(api, fakes, module_env, ctx, "Stubborn")
        path = f"/api/v1/statuses/{remote_id}"
        fakes.mastodon.script("DELETE", path, *[Reply(503, body=b"busy",
                                                      headers={"Retry-After": "1"})] * 30)
        task = task_of(module_env, media_id, UNSHARE)
        wait_for(lambda: run_task(ctx, task) == "done", 8, "the deletion to give up")
    share = row(module_env, media_id)
    assert share.state == "delete_failed" and share.error is not None
    assert share.error.startswith("gave up after")
    assert 2 <= len(fakes.mastodon.received("DELETE", path)) <= 4
    assert remote_id in fakes.mastodon.statuses


def test_both_contexts_close_the_targets_http_client(module_env: Env) -> None:
    """The workers' and the service's context close the HTTP client their share-out targets
    share."""
    contexts = (WorkerContext.create(module_env.config, name="shutterlog-test"),
                ServiceContext.create(module_env.config, None, ThreadPool()))
    for ctx in contexts:
        client = ctx.share_http
        assert all(vars(t)["http"] is client for t in ctx.share_targets.values())
        ctx.close()
        assert client.is_closed


def lost_then_deleted(api: Api, fakes: Fakes, env: Env, ctx: WorkerContext,
                      service: str) -> int:
    """A medium whose share to ``service`` reached the service but whose answer was lost,
    then deleted; its share task run again to the end. The medium."""
    _, token = linked_user(api, fakes, service)
    media_id = int(post(api, token, "Lost answer", share_to=service))
    real = ctx.share_targets[service]
    ctx.share_targets = dict(ctx.share_targets)
    ctx.share_targets[service] = LostAnswer(real)  # type: ignore[assignment]
    consume(ctx, media_id, MediaRendered)
    task = task_of(env, media_id, SHARE)
    assert run_task(ctx, task) == "retry"
    assert row(env, media_id).state == "attempting"
    ctx.share_targets[service] = real  # the service answers again
    r = api.http.delete(f"/v1/media/{media_id}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    consume(ctx, media_id, MediaDeleted)
    wait_for(lambda: run_task(ctx, task) == "done", 10, "the share task to end")
    return media_id


def test_a_lost_mastodon_post_of_a_deleted_medium_is_taken_back(api: Api, fakes: Fakes,
                                                                module_env: Env) -> None:
    """Mastodon made the status but the answer was lost, then the medium was deleted: the
    share task posts again with the same Idempotency-Key (Mastodon answers the status it
    made, making no other) and deletes it; the ledger says deleted, not cancelled."""
    before = set(fakes.mastodon.statuses)
    with worker(module_env, fakes, SHAREOUT_RETRY_BASE="0.0001") as ctx:
        media_id = lost_then_deleted(api, fakes, module_env, ctx, "mastodon")
    share = row(module_env, media_id)
    assert fakes.mastodon.created[share.key] == 1
    assert share.state == "deleted" and share.remote_id is not None
    assert fakes.mastodon.received("DELETE", f"/api/v1/statuses/{share.remote_id}")
    assert set(fakes.mastodon.statuses) == before


def test_a_lost_webhook_delivery_of_a_deleted_medium_is_unshared(api: Api, fakes: Fakes,
                                                                module_env: Env) -> None:
    """The receiver got medium.shared but its answer was lost, then the medium was deleted:
    the share task sends medium.unshared naming the event id (the receiver's own id is
    unknown), without delivering the deleted medium again."""
    with worker(module_env, fakes, SHAREOUT_RETRY_BASE="0.0001") as ctx:
        media_id = lost_then_deleted(api, fakes, module_env, ctx, "webhook")
    share = row(module_env, media_id)
    assert share.state == "deleted" and share.remote_id == share.key
    sent = [json.loads(r.body) for r in fakes.receiver.received("POST", "/hooks/shutterlog")
            if share.key.encode() in r.body]
    assert [(e["type"], e["id"]) for e in sent] == [
        ("medium.shared", share.key), ("medium.unshared", f"{share.key}-unshared")]
    assert sent[1]["data"] == {"remote_id": share.key}


def test_a_deletion_after_a_relink_leaves_the_new_account_alone(api: Api, fakes: Fakes,
                                                                module_env: Env) -> None:
    """Shared to Mastodon instance A, the user re-links Mastodon to instance B, then deletes
    the medium: no DELETE goes to B (which would answer 404, "already gone"), and the ledger
    says delete_failed (the status stays on A), not deleted."""
    other_token = "other-mastodon-token-55aa"
    with FakeMastodon(other_token, processing_polls=0) as other, \
            worker(module_env, fakes) as ctx:
        _, token = linked_user(api, fakes, "mastodon")
        media_id = int(post(api, token, "Relinked", share_to="mastodon"))
        consume(ctx, media_id, MediaRendered)
        assert run_task(ctx, task_of(module_env, media_id, SHARE)) == "done"
        remote_id = row(module_env, media_id).remote_id
        r = link(api, token, "mastodon", {"token": other_token, "instance_url": other.url})
        assert r.status_code == 200, r.text
        r = api.http.delete(f"/v1/media/{media_id}",
                            headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        consume(ctx, media_id, MediaDeleted)
        assert run_task(ctx, task_of(module_env, media_id, UNSHARE)) == "done"
        assert not other.received("DELETE", "/api/v1/statuses/.*")
    share = row(module_env, media_id)
    assert remote_id in fakes.mastodon.statuses
    assert share.state == "delete_failed"
    assert share.error == ("the account was re-linked since the post was made, so it is on "
                           "the old account: the post stays")


def test_a_deletion_after_a_key_rotation_still_takes_the_post_back(api: Api, fakes: Fakes,
                                                                   module_env: Env) -> None:
    """``secrets rotate`` re-seals a link by appending a new AccountLinked of the same
    account: a medium shared before it and deleted after it is still deleted there."""
    with worker(module_env, fakes) as ctx:
        _, token = linked_user(api, fakes, "mastodon")
        media_id = int(post(api, token, "Rotated", share_to="mastodon"))
        consume(ctx, media_id, MediaRendered)
        assert run_task(ctx, task_of(module_env, media_id, SHARE)) == "done"
        remote_id = row(module_env, media_id).remote_id
        config = load(env=module_env.vars | {
            "SHUTTERLOG_SECRETS_ENCRYPTION_KEYS": f"{generate_key()};master"},
            search_default=False)
        assert rotate_all(module_env.store, module_env.router,
                          CredentialCipher.from_config(config)).rotated >= 1
        r = api.http.delete(f"/v1/media/{media_id}",
                            headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        consume(ctx, media_id, MediaDeleted)
        ctx.cipher = CredentialCipher.from_config(config)  # the workers restarted with it
        assert run_task(ctx, task_of(module_env, media_id, UNSHARE)) == "done"
    assert row(module_env, media_id).state == "deleted"
    assert remote_id not in fakes.mastodon.statuses
