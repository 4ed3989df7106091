"""The signed-webhook target against a receiver that verifies signatures."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator

import httpx
import pytest

from plugins.shareout.webhook import WebhookTarget
from server.domain.outbound import OutboundPolicy
from server.domain.shareout import (
    CredentialDead,
    Credentials,
    Deleted,
    Failed,
    InvalidCredentials,
    Posted,
    RetryLater,
    Verified,
)
from server.outbound import safe_client
from tests.fakes.http import Reply
from tests.fakes.shareout import LOOPBACK, PERMALINK, assert_no_secret_logged, client, share_request
from tests.fakes.webhook import FakeReceiver
from tests.helpers import REPO
from tests.integration.test_outbound import gzipped

SECRET = "whsec-0123456789abcdef"


@pytest.fixture
def receiver() -> Iterator[FakeReceiver]:
    with FakeReceiver(SECRET) as server:
        yield server


@pytest.fixture
def target() -> WebhookTarget:
    return WebhookTarget(client(), LOOPBACK)


def creds(receiver: FakeReceiver, secret: str = SECRET) -> Credentials:
    return Credentials({"url": receiver.hook_url, "secret": secret})


def test_delivery_is_signed_and_carries_the_medium(receiver, target) -> None:
    """The receiver verifies the signature and gets the medium's fields, ids as strings."""
    request = share_request("webhook", None)
    outcome = target.post(request, creds(receiver))
    assert outcome == Posted(f"r-{request.key}")
    event = receiver.events[request.key]
    assert event["type"] == "medium.shared"
    assert event["data"] == {"medium_id": "4242", "owner_id": "7",
                             "caption": "Sunset over the bay #sunset", "permalink": PERMALINK,
                             "media_url": request.media.url, "media_type": "image/jpeg"}


def test_redelivery_carries_the_same_idempotency_key(receiver, target) -> None:
    """A redone delivery repeats the key, so the receiver keeps one event."""
    request = share_request("webhook", None)
    target.post(request, creds(receiver))
    target.post(request, creds(receiver))
    keys = [r.header("Idempotency-Key") for r in receiver.received("POST", "/hooks/shutterlog")]
    assert keys == [request.key, request.key] and list(receiver.events) == [request.key]


def test_a_captured_delivery_cannot_be_replayed_later(receiver, target) -> None:
    """Resent 301 s later, the same signed bytes are refused by the receiver's timestamp check."""
    target.post(share_request("webhook", None), creds(receiver))
    sent = receiver.received("POST", "/hooks/shutterlog")[0]
    headers = {k: sent.header(k) or "" for k in ("Content-Type", "X-Shutterlog-Signature",
                                                  "Idempotency-Key")}
    now = receiver.clock()
    receiver.clock = lambda: now + 301
    replay = httpx.post(receiver.hook_url, content=sent.body, headers=headers)
    assert replay.status_code == 400 and "timestamp" in replay.text


def test_wrong_secret_and_gone_receiver_kill_the_link(receiver, target, caplog) -> None:
    """A refused signature (401) and a 410 mean the link is dead; the secret is never logged."""
    caplog.set_level(logging.DEBUG)
    outcome = target.post(share_request("webhook", None), creds(receiver, "another-secret-xyz"))
    assert isinstance(outcome, CredentialDead)
    receiver.script("POST", "/hooks/shutterlog", Reply(410, body=b"gone"))
    assert isinstance(target.post(share_request("webhook", None), creds(receiver)),
                      CredentialDead)
    receiver.script("POST", "/hooks/shutterlog", Reply(503, headers={"Retry-After": "12"}))
    assert target.post(share_request("webhook", None), creds(receiver)) == RetryLater(
        "HTTP 503", 12.0)
    receiver.script("POST", "/hooks/shutterlog", Reply(422, {"error": "no thanks"}))
    assert target.post(share_request("webhook", None), creds(receiver)) == Failed(
        "HTTP 422: no thanks")
    assert_no_secret_logged(caplog.records, SECRET, "another-secret-xyz")


def test_answers_are_decoded_within_a_limit(receiver, target) -> None:
    """A receiver's gzip or deflate answer is read (its id and url are the remote post's);
    one inflating beyond 1 MiB, corrupt, or in an encoding not asked for is not read, and
    the delivery is retried (with the same Idempotency-Key)."""
    answer = json.dumps({"id": "r-9", "url": "https://hooks.example/9"}).encode()
    for encoding, body in [("gzip", gzipped([answer])), ("deflate", zlib.compress(answer))]:
        receiver.script("POST", "/hooks/shutterlog",
                        Reply(200, body=body, headers={"Content-Encoding": encoding}))
        assert target.post(share_request("webhook", None), creds(receiver)) == Posted(
            "r-9", "https://hooks.example/9")
    for encoding, body, why in [
        ("gzip", gzipped([bytes(1 << 20), b" "]), "more than 1048576 bytes once decoded"),
        ("gzip", answer, "corrupt compressed data (Error -3 while decompressing data: "
                         "incorrect header check)"),
        ("br", answer, "an encoding not asked for (br)"),
    ]:
        receiver.script("POST", "/hooks/shutterlog",
                        Reply(200, body=body, headers={"Content-Encoding": encoding}))
        assert target.post(share_request("webhook", None), creds(receiver)) == RetryLater(
            f"unreadable answer: {why}")


def test_private_destinations_and_redirects_to_them_are_refused(receiver) -> None:
    """Without an allow-list loopback is refused; an allowed URL redirecting is not followed."""
    strict = WebhookTarget(safe_client(OutboundPolicy()), OutboundPolicy())
    outcome = strict.post(share_request("webhook", None), creds(receiver))
    assert isinstance(outcome, Failed) and "loopback" in outcome.reason
    assert receiver.requests == []
    receiver.script("POST", "/hooks/shutterlog",
                    Reply(307, headers={"Location": "http://169.254.169.254/latest/meta-data"}))
    outcome = WebhookTarget(client(), LOOPBACK).post(share_request("webhook", None),
                                                     creds(receiver))
    assert isinstance(outcome, Failed) and "307" in outcome.reason


def test_delete_verify_and_check(receiver, target) -> None:
    """delete and verify send signed events; check wants a safe URL and a long secret."""
    assert target.delete("r-1", creds(receiver)) == Deleted("r-1")
    assert receiver.events["r-1-unshared"]["type"] == "medium.unshared"
    assert target.verify(creds(receiver)) == Verified("127.0.0.1", {})
    with pytest.raises(InvalidCredentials, match="secret"):
        target.check(Credentials({"url": receiver.hook_url, "secret": "short"}))
    with pytest.raises(InvalidCredentials, match="scheme"):
        target.check(Credentials({"url": "gopher://127.0.0.1/", "secret": SECRET}))


GREEN_POSTS = """
import json, sys
from workers.green import patch
patch()
import gevent
from plugins.shareout.webhook import WebhookTarget
from server.domain.outbound import OutboundPolicy
from server.domain.shareout import Credentials, Media, ShareRequest
from server.outbound import safe_client

policy = OutboundPolicy.parse(["127.0.0.1"])
target = WebhookTarget(safe_client(policy, timeout=20), policy)
creds = Credentials({"url": sys.argv[1], "secret": sys.argv[2]})
media = Media("https://cdn.example/p.jpg", "image/jpeg")
jobs = [gevent.spawn(target.post, ShareRequest(i, i, 7, "webhook", "c", "https://s/p", media),
                     creds) for i in range(5)]
gevent.joinall(jobs, timeout=30)
print(json.dumps([type(j.value).__name__ for j in jobs]))
"""


def test_posts_run_concurrently_under_gevent() -> None:
    """Under gevent's monkey-patching, five posts are in flight at once in one thread."""
    with FakeReceiver(SECRET, barrier=threading.Barrier(5, timeout=15)) as receiver:
        out = subprocess.run([sys.executable, "-c", GREEN_POSTS, receiver.hook_url, SECRET],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == ["Posted"] * 5
        assert len(receiver.events) == 5
