"""Share-out's pure core (keys, credentials, outcomes, retry timing) and its interfaces."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys

import pytest

from zope.interface.verify import verifyObject

from plugins.shareout import (
    IShareLedger,
    IShareTarget,
    MemoryLedger,
    build_targets,
    share_client,
)
from server.config import load
from server.domain.shareout import (
    CredentialDead,
    Credentials,
    Failed,
    PollSchedule,
    Posted,
    RetryLater,
    RetryPolicy,
    next_attempt,
    outcome_for_status,
    retry_hint,
    share_key,
    webhook_signature,
)
from tests.helpers import REPO

NOW = 1_700_000_000.0


def test_every_target_provides_the_interface(tmp_path) -> None:
    """Each configured target is an IShareTarget; the memory ledger is an IShareLedger."""
    config = load(env={"SHUTTERLOG_VAR": str(tmp_path)}, search_default=False)
    with share_client(config) as http:
        targets = build_targets(config, http)
        assert sorted(targets) == ["facebook", "mastodon", "twitter", "webhook"]
        for name, target in targets.items():
            assert verifyObject(IShareTarget, target) and target.name == name
    assert verifyObject(IShareLedger, MemoryLedger())


def test_plugins_import_without_twisted_or_gevent() -> None:
    """Workers can import the targets and the safe client without Twisted's loop or gevent."""
    code = ("import sys, plugins.shareout.mastodon, plugins.shareout.twitter, "
            "plugins.shareout.facebook, plugins.shareout.webhook, server.outbound, server.crypto\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('twisted', 'gevent')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_share_key_is_stable_per_event_and_service() -> None:
    """The key depends only on the event and the service, so every redo repeats it."""
    assert share_key(123, "twitter") == share_key(123, "twitter") == "shutterlog-123-twitter"
    assert share_key(123, "mastodon") != share_key(124, "mastodon")


def test_credentials_mask_and_scrub_secrets() -> None:
    """repr masks secret fields; scrub removes their values from service messages."""
    c = Credentials({"access_token": "tok-123", "instance_url": "https://m.example"})
    assert repr(c) == "Credentials(access_token=***, instance_url='https://m.example')"
    assert "tok-123" not in f"{c} {c!r}"
    assert c.scrub("bad token tok-123!") == "bad token ***!"
    assert Credentials.from_json(c.to_json()) == c
    with pytest.raises(ValueError):
        Credentials.from_json(b'{"a": 1}')


@pytest.mark.parametrize("status,kind", [
    (429, RetryLater), (500, RetryLater), (502, RetryLater), (503, RetryLater),
    (408, RetryLater), (401, CredentialDead), (403, CredentialDead), (400, Failed),
    (404, Failed), (422, Failed),
])
def test_status_mapping(status: int, kind: type) -> None:
    """429/5xx/408 retry, 401/403 kill the credential, other 4xx fail for good."""
    assert isinstance(outcome_for_status(status, "m"), kind)


@pytest.mark.parametrize("headers,expected", [
    ({"retry-after": "120"}, 120.0),
    ({"retry-after": "Tue, 14 Nov 2023 22:15:20 GMT"}, 120.0),
    ({"x-rate-limit-reset": "1700000300"}, 300.0),
    ({"x-ratelimit-reset": "2023-11-14T22:15:20.000Z"}, 120.0),
    ({"x-ratelimit-reset": "2023-11-14T22:10:00Z"}, 0.0),
    ({"retry-after": "soon"}, None),
    ({}, None),
])
def test_retry_hints(headers: dict[str, str], expected: float | None) -> None:
    """Retry-After (seconds or date) wins; else X's epoch or Mastodon's ISO reset."""
    assert retry_hint(headers, NOW) == expected


def test_backoff_grows_with_jitter_and_honours_hints() -> None:
    """Delays double from the base, jitter stays within [half, full], hints are floors."""
    policy = RetryPolicy(base=10, factor=2, cap=100, max_attempts=6, give_up_after=1000)
    delays = [next_attempt(policy, n, NOW, NOW, None, 0.999) for n in range(1, 6)]
    assert [round(d - NOW) for d in delays if d] == [10, 20, 40, 80, 100]
    assert next_attempt(policy, 1, NOW, NOW, None, 0.0) == NOW + 5
    assert next_attempt(policy, 1, NOW, NOW, 300.0, 0.0) == NOW + 300
    assert next_attempt(policy, 6, NOW, NOW, None, 0.5) is None  # out of attempts
    assert next_attempt(policy, 2, NOW, NOW + 990, None, 0.5) is None  # out of time
    assert next_attempt(policy, 1, NOW, NOW, 5000.0, 0.0) is None  # asked to wait too long


def test_poll_schedule_is_bounded() -> None:
    """Poll waits grow to the cap, respect hints, and end by count or time budget."""
    schedule = PollSchedule(first=1, factor=2, cap=4, max_polls=10, budget=12)
    waits: list[float] = []
    spent = 0.0
    while (w := schedule.wait(len(waits), spent)) is not None:
        waits.append(w)
        spent += w
    assert waits == [1, 2, 4, 4]
    assert schedule.wait(0, 0, hint=7) == 7
    assert PollSchedule(max_polls=2).wait(2, 0) is None


def test_webhook_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    """The header is t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>."""
    body = b'{"id":"k"}'
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert webhook_signature("s3cret", 1700000000, body) == f"t=1700000000,v1={expected}"


def test_memory_ledger_contract() -> None:
    """Unknown, then attempting (kept until a result), then the posted result."""
    ledger = MemoryLedger()
    assert ledger.get("k") is None
    ledger.attempting("k")
    ledger.attempting("k")
    assert ledger.get("k") is True
    ledger.posted("k", Posted("1", "u"))
    ledger.attempting("k")
    assert ledger.get("k") == Posted("1", "u")
