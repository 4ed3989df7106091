"""The Mastodon target against a fake Mastodon server speaking its REST API."""

from __future__ import annotations

import logging
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from plugins.shareout import MemoryLedger, share_once
from plugins.shareout.mastodon import MastodonTarget
from server.domain.shareout import (
    CredentialDead,
    Credentials,
    Deleted,
    Failed,
    InvalidCredentials,
    PollSchedule,
    Posted,
    RetryLater,
    Verified,
)
from tests.fakes.http import Reply
from tests.fakes.mastodon import FakeMastodon, mastodon_length
from tests.fakes.shareout import (
    LOOPBACK,
    PERMALINK,
    Sleeps,
    assert_no_secret_logged,
    client,
    jpeg,
    share_request,
)
from tests.integration.test_outbound import gzipped

TOKEN = "mastodon-user-token-5f1e"


@pytest.fixture
def fake() -> Iterator[FakeMastodon]:
    with FakeMastodon(TOKEN, processing_polls=2) as server:
        yield server


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def target(sleeps: Sleeps) -> MastodonTarget:
    polls = PollSchedule(first=0.5, factor=2.0, cap=4.0, max_polls=5, budget=30.0)
    return MastodonTarget(client(), LOOPBACK, polls=polls, sleep=sleeps)


def creds(fake: FakeMastodon, token: str = TOKEN, **extra: str) -> Credentials:
    return Credentials({"access_token": token, "instance_url": fake.url + "/"} | extra)


def test_post_uploads_polls_until_processed_and_posts(fake, target, sleeps, tmp_path) -> None:
    """A photo is uploaded (202), polled on the schedule until processed, then posted."""
    outcome = target.post(share_request("mastodon", jpeg(tmp_path / "p.jpg")), creds(fake))
    assert isinstance(outcome, Posted)
    status = fake.statuses[outcome.remote_id]
    assert outcome.url == status["url"]
    assert status["text"] == f"Sunset over the bay #sunset\n{PERMALINK}"
    assert status["visibility"] == "public" and len(status["media_attachments"]) == 1
    assert sleeps.waits == [0.5, 1.0, 2.0]  # two 206 answers, then 200
    upload = fake.received("POST", "/api/v2/media")[0].multipart()
    assert upload["file"].content_type == "image/jpeg" and upload["file"].data[:2] == b"\xff\xd8"
    assert upload["description"].data == b"an orange square"


def test_idempotency_key_is_sent_and_a_redo_returns_the_same_status(fake, target, tmp_path):
    """The same request posted twice carries one Idempotency-Key and yields one status."""
    request = share_request("mastodon", jpeg(tmp_path / "p.jpg"))
    first = target.post(request, creds(fake))
    second = target.post(request, creds(fake))
    assert isinstance(first, Posted) and first == second
    assert len(fake.statuses) == 1
    keys = {r.header("Idempotency-Key") for r in fake.received("POST", "/api/v1/statuses")}
    assert keys == {request.key} and request.key == "shutterlog-777-mastodon"


def test_share_once_skips_the_remote_call_when_the_ledger_knows(fake, target, tmp_path):
    """After a recorded post, share_once answers from the ledger without calling Mastodon."""
    request, ledger = share_request("mastodon", jpeg(tmp_path / "p.jpg")), MemoryLedger()
    first = share_once(target, ledger, request, creds(fake))
    calls = len(fake.requests)
    assert share_once(target, ledger, request, creds(fake)) == first
    assert len(fake.requests) == calls and len(fake.statuses) == 1


def test_processing_that_never_ends_is_retried_later(fake, target, sleeps, tmp_path) -> None:
    """Polling stops when the schedule's attempts run out: RetryLater, no status posted."""
    fake.processing_polls = 100
    outcome = target.post(share_request("mastodon", jpeg(tmp_path / "p.jpg")), creds(fake))
    assert isinstance(outcome, RetryLater) and "processing" in outcome.reason
    assert sleeps.waits == [0.5, 1.0, 2.0, 4.0, 4.0] and not fake.statuses


def test_caption_is_cut_to_the_instance_limit(fake, target, tmp_path) -> None:
    """A long caption is cut to the linked instance's max_characters, link kept."""
    fake.max_characters = 100
    caption = "golden hour " * 30 + "#sunset #sea"
    outcome = target.post(share_request("mastodon", jpeg(tmp_path / "p.jpg"), caption=caption),
                          creds(fake, max_characters="100"))
    assert isinstance(outcome, Posted)
    text = fake.statuses[outcome.remote_id]["text"]
    assert text.endswith("… #sunset #sea\n" + PERMALINK) and mastodon_length(text) <= 100


def test_rate_limit_is_retried_after_the_reset(fake, target, tmp_path) -> None:
    """A 429 maps to RetryLater with the wait until X-RateLimit-Reset (ISO 8601)."""
    target.clock = lambda: 1_700_000_000.0
    fake.script("POST", "/api/v1/statuses", Reply(429, {"error": "Too many requests"}, headers={
        "X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "2023-11-14T22:15:20.000Z"}))
    outcome = target.post(share_request("mastodon", jpeg(tmp_path / "p.jpg")), creds(fake))
    assert outcome == RetryLater("HTTP 429: Too many requests", 120.0)


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retried(fake, target, tmp_path, status) -> None:
    """5xx answers map to RetryLater, honouring Retry-After."""
    fake.script("POST", "/api/v2/media", Reply(status, body=b"<html>oops</html>",
                                               headers={"Retry-After": "30"}))
    outcome = target.post(share_request("mastodon", jpeg(tmp_path / "p.jpg")), creds(fake))
    assert isinstance(outcome, RetryLater) and outcome.delay == 30.0


def test_a_revoked_token_is_a_dead_credential(fake, target, tmp_path, caplog) -> None:
    """401 maps to CredentialDead; neither the outcome nor any log shows the token."""
    caplog.set_level(logging.DEBUG)
    outcome = target.post(share_request("mastodon", jpeg(tmp_path / "p.jpg")),
                          creds(fake, token="revoked-token-0c2a"))
    assert outcome == CredentialDead("HTTP 401: The access token is invalid")
    fake.script("POST", "/api/v1/statuses", Reply(403, {"error": f"token {TOKEN} suspended"}))
    outcome = target.post(share_request("mastodon", jpeg(tmp_path / "p.jpg")), creds(fake))
    assert outcome == CredentialDead("HTTP 403: token *** suspended")
    target.post(share_request("mastodon", jpeg(tmp_path / "p.jpg")), creds(fake))
    assert_no_secret_logged(caplog.records, TOKEN, "revoked-token-0c2a")


def test_validation_errors_fail_permanently_with_mastodons_message(fake, target, tmp_path):
    """A 422 is a permanent failure carrying Mastodon's own message."""
    fake.script("POST", "/api/v1/statuses",
                Reply(422, {"error": "Validation failed: Text can't be blank"}))
    outcome = target.post(share_request("mastodon", jpeg(tmp_path / "p.jpg")), creds(fake))
    assert outcome == Failed("HTTP 422: Validation failed: Text can't be blank")


def test_delete_removes_the_status_and_tolerates_it_being_gone(fake, target, tmp_path):
    """delete removes the remote status; deleting it again reports it already gone."""
    posted = target.post(share_request("mastodon", jpeg(tmp_path / "p.jpg")), creds(fake))
    assert isinstance(posted, Posted)
    assert target.delete(posted.remote_id, creds(fake)) == Deleted(posted.remote_id)
    assert posted.remote_id not in fake.statuses
    assert target.delete(posted.remote_id, creds(fake)) == Deleted(posted.remote_id, True)


def test_a_compressed_bomb_is_never_inflated_and_gzip_answers_are_read(fake, target, tmp_path):
    """An instance answering a few hundred bytes gzipped twice that stand for 64 MiB of
    zeros fails the call with a retry (a status may exist: the idempotency key covers the
    redo), having allocated a few MiB at most; an answer gzipped once, as instances may, is
    read. Every call asks for gzip or deflate only."""
    bomb = Reply(200, body=gzipped([gzipped(bytes(1 << 20) for _ in range(64))]),
                 headers={"Content-Type": "application/json", "Content-Encoding": "gzip, gzip"})
    for method, path in [("GET", "/api/v1/accounts/verify_credentials"),
                         ("DELETE", "/api/v1/statuses/1"), ("POST", "/api/v1/statuses")]:
        fake.script(method, path, bomb)
    tracemalloc.start()
    try:
        outcomes = [target.verify(creds(fake)), target.delete("1", creds(fake))]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak >> 20} MiB allocated for a {len(bomb.body)} B answer"
    outcomes.append(target.post(share_request("mastodon", jpeg(tmp_path / "p.jpg")), creds(fake)))
    assert outcomes == [RetryLater("unreadable answer: more than 1048576 bytes once decoded")] * 3
    fake.script("GET", "/api/v1/accounts/verify_credentials",
                Reply(200, body=gzipped([b'{"acct": "bob"}']),
                      headers={"Content-Encoding": "gzip"}))
    assert target.verify(creds(fake)) == Verified("@bob", {"max_characters": "500"})
    assert {r.header("Accept-Encoding") for r in fake.requests} == {"gzip, deflate"}


def test_verify_learns_the_instance_limit(fake, target) -> None:
    """verify names the account and learns max_characters from /api/v2/instance."""
    fake.max_characters = 5000
    assert target.verify(creds(fake)) == Verified("@alice", {"max_characters": "5000"})
    assert isinstance(target.verify(creds(fake, token="nope")), CredentialDead)


def test_check_refuses_unsafe_or_incomplete_credentials(target) -> None:
    """check wants a token and an http(s) instance URL, and normalizes the URL."""
    good = Credentials({"access_token": "t", "instance_url": "https://m.example/"})
    assert target.check(good)["instance_url"] == "https://m.example"
    for fields, word in [({"instance_url": "https://m.example"}, "access_token"),
                         ({"access_token": "t", "instance_url": "file:///etc"}, "scheme"),
                         ({"access_token": "t", "instance_url": "https://m.example",
                           "visibility": "everyone"}, "visibility")]:
        with pytest.raises(InvalidCredentials, match=word):
            target.check(Credentials(fields))


def test_an_instance_on_a_private_address_is_refused(tmp_path: Path) -> None:
    """Without the loopback allow-list, an instance on 127.0.0.1 is refused, permanently."""
    from server.domain.outbound import OutboundPolicy
    from server.outbound import safe_client

    with FakeMastodon(TOKEN) as fake:
        strict = MastodonTarget(safe_client(OutboundPolicy()), OutboundPolicy())
        outcome = strict.post(share_request("mastodon", jpeg(tmp_path / "p.jpg")), creds(fake))
        assert isinstance(outcome, Failed) and "loopback" in outcome.reason
        assert fake.requests == []
