"""The X (Twitter) target against a fake X API v2."""

from __future__ import annotations

import logging
import tracemalloc
from collections.abc import Iterator

import pytest

from plugins.shareout import MemoryLedger, share_once
from plugins.shareout.twitter import TwitterTarget
from server.domain.shareout import (
    CredentialDead,
    Credentials,
    Deleted,
    Failed,
    Media,
    PollSchedule,
    Posted,
    RetryLater,
    Verified,
)
from tests.fakes.http import Reply
from tests.fakes.shareout import (
    PERMALINK,
    Sleeps,
    assert_no_secret_logged,
    client,
    jpeg,
    share_request,
)
from tests.fakes.twitter import FakeTwitter, problem, tweet_length
from tests.integration.test_outbound import gzipped

TOKEN = "x-oauth2-user-token-9b7d"
CREDS = Credentials({"access_token": TOKEN})


@pytest.fixture
def fake() -> Iterator[FakeTwitter]:
    with FakeTwitter(TOKEN) as server:
        yield server


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def target(fake: FakeTwitter, sleeps: Sleeps) -> TwitterTarget:
    return TwitterTarget(client(), fake.url, chunk_size=1000, sleep=sleeps,
                         polls=PollSchedule(first=0.5, max_polls=5, budget=30))


def test_post_uploads_in_chunks_then_tweets(fake, target, tmp_path) -> None:
    """The photo goes up in segments (initialize/append/finalize), then the tweet with it."""
    photo = jpeg(tmp_path / "p.jpg", (300, 200))
    outcome = target.post(share_request("twitter", photo), CREDS)
    assert isinstance(outcome, Posted)
    tweet = fake.tweets[outcome.remote_id]
    assert outcome.url == f"https://x.com/i/web/status/{outcome.remote_id}"
    assert tweet["text"] == f"Sunset over the bay #sunset\n{PERMALINK}"
    (media_id,) = tweet["media_ids"]
    assert fake.uploads[media_id]["data"] == photo.read_bytes()
    assert len(fake.received("POST", rf"/2/media/upload/{media_id}/append")) > 1
    init = fake.received("POST", "/2/media/upload/initialize")[0].json()
    assert init["media_category"] == "tweet_image" and init["media_type"] == "image/jpeg"


def test_video_processing_is_polled_honouring_check_after(fake, target, sleeps, tmp_path):
    """A video's processing_info is polled with STATUS, never sooner than check_after_secs."""
    fake.processing_polls = 2
    request = share_request("twitter", jpeg(tmp_path / "v.mp4"))
    request = type(request)(**{**request.__dict__, "media": Media(
        request.media.url, "video/mp4", request.media.path)})
    outcome = target.post(request, CREDS)
    assert isinstance(outcome, Posted)
    assert sleeps.waits == [1, 1] and len(fake.received("GET", "/2/media/upload")) == 2


def test_caption_fits_the_weighted_limit(fake, target, tmp_path) -> None:
    """A caption of CJK text and emoji is cut so X's weighted count stays within 280."""
    caption = "東京の夕焼け🌅👍🏽 " * 40 + "#tokyo"
    outcome = target.post(share_request("twitter", jpeg(tmp_path / "p.jpg"), caption=caption),
                          CREDS)
    assert isinstance(outcome, Posted)
    text = fake.tweets[outcome.remote_id]["text"]
    assert 270 <= tweet_length(text) <= 280 and text.endswith("#tokyo\n" + PERMALINK)


def test_rate_limit_waits_for_the_reset(fake, target, tmp_path) -> None:
    """429 maps to RetryLater with the wait until x-rate-limit-reset (Unix seconds)."""
    target.clock = lambda: 1_705_420_000.0
    fake.script("POST", "/2/tweets", Reply(429, {"title": "Too Many Requests"}, headers={
        "x-rate-limit-limit": "200", "x-rate-limit-remaining": "0",
        "x-rate-limit-reset": "1705420800"}))
    outcome = target.post(share_request("twitter", jpeg(tmp_path / "p.jpg")), CREDS)
    assert outcome == RetryLater("HTTP 429: Too Many Requests", 800.0)


def test_failure_classes(fake, target, tmp_path, caplog) -> None:
    """401 and a plain 403 kill the credential; a duplicate 403 and a 400 only fail."""
    caplog.set_level(logging.DEBUG)
    photo = jpeg(tmp_path / "p.jpg")
    assert isinstance(target.post(share_request("twitter", photo),
                                  Credentials({"access_token": "expired-7a"})), CredentialDead)
    fake.script("POST", "/2/tweets", problem(403, "Forbidden", "You are not permitted to "
                                             "perform this action."))
    assert isinstance(target.post(share_request("twitter", photo), CREDS), CredentialDead)
    assert isinstance(target.post(share_request("twitter", photo, event_id=1), CREDS), Posted)
    duplicate = target.post(share_request("twitter", photo, event_id=2), CREDS)
    assert duplicate == Failed("HTTP 403: You are not allowed to create a Tweet with "
                               "duplicate content.")
    fake.script("POST", "/2/media/upload/initialize", problem(400, "Invalid Request", "bad"))
    assert target.post(share_request("twitter", photo), CREDS) == Failed("HTTP 400: bad")
    fake.script("POST", "/2/tweets", Reply(503, body=b"over capacity"))
    assert isinstance(target.post(share_request("twitter", photo), CREDS), RetryLater)
    assert_no_secret_logged(caplog.records, TOKEN, "expired-7a")


def test_a_redone_job_after_a_lost_outcome_does_not_tweet_twice(fake, target, tmp_path):
    """An attempt recorded without its result: share_once finds the tweet, posts nothing."""
    request, ledger = share_request("twitter", jpeg(tmp_path / "p.jpg")), MemoryLedger()
    ledger.attempting(request.key)
    made = target.post(request, CREDS)  # the worker died before recording this
    assert isinstance(made, Posted)
    found = share_once(target, ledger, request, Credentials({"access_token": TOKEN,
                                                              "user_id": "42"}))
    assert found == made and ledger.get(request.key) == made and len(fake.tweets) == 1
    assert share_once(target, ledger, request, CREDS) == made  # now from the ledger alone


def test_a_lost_attempt_that_made_nothing_is_posted(fake, target, tmp_path) -> None:
    """When the timeline shows no tweet for the medium, share_once posts it (user id looked up)."""
    request, ledger = share_request("twitter", jpeg(tmp_path / "p.jpg")), MemoryLedger()
    ledger.attempting(request.key)
    outcome = share_once(target, ledger, request, CREDS)
    assert isinstance(outcome, Posted) and len(fake.tweets) == 1
    assert fake.received("GET", "/2/users/me") and ledger.get(request.key) == outcome


def test_a_failed_lookup_does_not_risk_a_second_post(fake, target, tmp_path) -> None:
    """If looking for the earlier tweet fails, share_once retries later instead of posting."""
    request, ledger = share_request("twitter", jpeg(tmp_path / "p.jpg")), MemoryLedger()
    ledger.attempting(request.key)
    fake.script("GET", "/2/users/42/tweets", Reply(503, body=b"unavailable"))
    outcome = share_once(target, ledger, request, Credentials({"access_token": TOKEN,
                                                                "user_id": "42"}))
    assert isinstance(outcome, RetryLater) and fake.tweets == {}


def test_media_is_fetched_from_its_url_when_there_is_no_file(fake, target, tmp_path) -> None:
    """Without a local file, the bytes come from the medium's public URL."""
    photo = jpeg(tmp_path / "p.jpg").read_bytes()
    fake.route("GET", "/cdn/p.jpg", lambda r: Reply(200, body=photo,
                                                   headers={"Content-Type": "image/jpeg"}))
    outcome = target.post(share_request("twitter", None, media_url=f"{fake.url}/cdn/p.jpg"),
                          CREDS)
    assert isinstance(outcome, Posted)
    (media_id,) = fake.tweets[outcome.remote_id]["media_ids"]
    assert fake.uploads[media_id]["data"] == photo


def test_an_encoded_medium_is_inflated_within_the_limit(fake, tmp_path) -> None:
    """A medium served gzipped is inflated; one inflating beyond the image limit (64 MiB of
    zeros in 64 KiB) fails as too big, having allocated a few MiB at most."""
    photo = jpeg(tmp_path / "p.jpg").read_bytes()
    bomb = gzipped(bytes(1 << 20) for _ in range(64))
    for name, body in [("p", gzipped([photo])), ("bomb", bomb)]:
        fake.route("GET", f"/cdn/{name}.jpg", lambda r, body=body: Reply(
            200, body=body, headers={"Content-Type": "image/jpeg", "Content-Encoding": "gzip"}))
    small = TwitterTarget(client(), fake.url, image_limit=1 << 20)
    posted = small.post(share_request("twitter", None, media_url=f"{fake.url}/cdn/p.jpg"), CREDS)
    assert isinstance(posted, Posted)
    assert fake.uploads[fake.tweets[posted.remote_id]["media_ids"][0]]["data"] == photo
    tracemalloc.start()
    try:
        outcome = small.post(share_request("twitter", None, media_url=f"{fake.url}/cdn/bomb.jpg"),
                             CREDS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak >> 20} MiB allocated"
    assert outcome == Failed("the medium exceeds twitter's limit of 1 MB")


def test_oversized_media_fails_before_uploading(fake, tmp_path) -> None:
    """A file above X's image limit fails at once, and nothing is uploaded."""
    small = TwitterTarget(client(), fake.url, image_limit=100)
    outcome = small.post(share_request("twitter", jpeg(tmp_path / "p.jpg")), CREDS)
    assert isinstance(outcome, Failed) and "limit" in outcome.reason and fake.requests == []


def test_delete_and_verify(fake, target, tmp_path) -> None:
    """delete removes the tweet (then reports it gone); verify returns the user id."""
    posted = target.post(share_request("twitter", jpeg(tmp_path / "p.jpg")), CREDS)
    assert isinstance(posted, Posted)
    assert target.delete(posted.remote_id, CREDS) == Deleted(posted.remote_id)
    assert target.delete(posted.remote_id, CREDS) == Deleted(posted.remote_id, True)
    assert target.verify(CREDS) == Verified("@alice", {"user_id": "42"})
