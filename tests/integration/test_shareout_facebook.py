"""The Facebook Page target against a fake Graph API."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from plugins.shareout import MemoryLedger, share_once
from plugins.shareout.facebook import FacebookTarget
from server.domain.shareout import (
    CredentialDead,
    Credentials,
    Deleted,
    Failed,
    InvalidCredentials,
    Media,
    Posted,
    RetryLater,
    Verified,
)
from tests.fakes.facebook import FakeGraph, graph_error
from tests.fakes.shareout import PERMALINK, assert_no_secret_logged, client, share_request

PAGE, TOKEN = "1234567890", "EAAGpage-token-31c9"
CREDS = Credentials({"access_token": TOKEN, "page_id": PAGE})


@pytest.fixture
def fake() -> Iterator[FakeGraph]:
    with FakeGraph(PAGE, TOKEN) as server:
        yield server


@pytest.fixture
def target(fake: FakeGraph) -> FacebookTarget:
    return FacebookTarget(client(), fake.base)


def test_post_sends_the_rendition_url_and_caption(fake, target) -> None:
    """POST /{page}/photos carries the public rendition URL and the caption with the link."""
    request = share_request("facebook", None)
    outcome = target.post(request, CREDS)
    assert isinstance(outcome, Posted)
    photo = fake.photos[outcome.remote_id]
    assert photo["url"] == request.media.url and photo["published"] == "true"
    assert photo["name"] == f"Sunset over the bay #sunset\n{PERMALINK}"
    assert outcome.url == f"https://www.facebook.com/{PAGE}_{outcome.remote_id}"
    sent = fake.received("POST", rf"/v23.0/{PAGE}/photos")[0]
    assert sent.bearer() == TOKEN and TOKEN not in sent.path + str(sent.query)


def test_graph_error_codes_map_to_outcomes(fake, target, caplog) -> None:
    """190 and 200 kill the credential; 4/17/32/613 retry; other codes fail with the message."""
    caplog.set_level(logging.DEBUG)
    request = share_request("facebook", None)
    dead = target.post(request, Credentials({"access_token": "old-token-77", "page_id": PAGE}))
    assert isinstance(dead, CredentialDead) and "Graph error 190/460" in dead.reason
    photos = rf"/v23.0/{PAGE}/photos"
    fake.script("POST", photos, graph_error(403, 200, "(#200) Requires pages_manage_posts"))
    assert isinstance(target.post(request, CREDS), CredentialDead)
    for code in (4, 17, 32, 613):
        fake.script("POST", photos, graph_error(400, code, "(#4) Application request limit "
                                                "reached", kind="OAuthException"))
        assert isinstance(target.post(request, CREDS), RetryLater), code
    fake.script("POST", photos, graph_error(400, 506, "Duplicate status message",
                                            kind="FacebookApiException"))
    assert target.post(request, CREDS) == Failed(
        "Graph error 506 (FacebookApiException): Duplicate status message")
    assert_no_secret_logged(caplog.records, TOKEN, "old-token-77")


def test_throttling_waits_for_the_usage_headers_estimate(fake, target) -> None:
    """A business-use-case throttle waits estimated_time_to_regain_access minutes."""
    reply = graph_error(400, 80001, "There have been too many calls to this Page account")
    reply.headers["X-Business-Use-Case-Usage"] = json.dumps(
        {PAGE: [{"type": "pages", "call_count": 100, "estimated_time_to_regain_access": 7}]})
    fake.script("POST", rf"/v23.0/{PAGE}/photos", reply)
    outcome = target.post(share_request("facebook", None), CREDS)
    assert isinstance(outcome, RetryLater) and outcome.delay == 420.0


def test_videos_are_refused_plainly(fake, target) -> None:
    """A video is not sent to the Page; the outcome says why."""
    request = share_request("facebook", None)
    video = type(request)(**{**request.__dict__, "media": Media("https://c/v.mp4", "video/mp4")})
    assert isinstance(target.post(video, CREDS), Failed) and fake.requests == []


def test_lost_outcome_is_found_on_the_page(fake, target) -> None:
    """After an attempt with no recorded result, share_once finds the photo instead of reposting."""
    request, ledger = share_request("facebook", None), MemoryLedger()
    ledger.attempting(request.key)
    made = target.post(request, CREDS)
    assert isinstance(made, Posted)
    found = share_once(target, ledger, request, CREDS)
    assert isinstance(found, Posted) and found.remote_id == made.remote_id
    assert len(fake.photos) == 1


def test_delete_verify_and_check(fake, target) -> None:
    """delete removes the photo (then reports it gone), verify names the Page, check wants ids."""
    posted = target.post(share_request("facebook", None), CREDS)
    assert isinstance(posted, Posted)
    assert target.delete(posted.remote_id, CREDS) == Deleted(posted.remote_id)
    assert target.delete(posted.remote_id, CREDS) == Deleted(posted.remote_id, True)
    assert target.verify(CREDS) == Verified("Alice's Photos", {})
    with pytest.raises(InvalidCredentials, match="page_id"):
        target.check(Credentials({"access_token": "t", "page_id": "my-page"}))
