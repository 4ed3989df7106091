"""Share-out, the pure part: what to post, what came of it, and when to try again.

A share request is one medium going to one linked service. Its idempotency key is derived
from the event that asked for it and the service (``share_key``), so every redo of the same
job carries the same key: Mastodon and webhook receivers deduplicate on it, and the share
ledger (``plugins.shareout.IShareLedger``) remembers the remote id under it.

A target answers every call with an ``Outcome``:

- ``Posted`` / ``Deleted``: done (remote id and URL);
- ``RetryLater``: 429, 5xx, a network failure or media still processing; ``delay`` is what
  the service asked for (``Retry-After`` or its rate-limit reset header), None if it said
  nothing; ``next_attempt`` turns it into a time with the backoff schedule;
- ``CredentialDead``: 401/403 or the service's equivalent (Graph code 190): unlink;
- ``Failed``: any other refusal, permanent, with the service's message (never our secrets).

Pure: time is passed in; no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

#: Credential fields whose values are secrets: masked in ``repr``, scrubbed from messages.
SECRET_FIELDS = frozenset({"access_token", "secret"})


def share_key(event_id: int, service: str) -> str:
    """The idempotency key of sharing the medium of event ``event_id`` to ``service``."""
    return f"shutterlog-{event_id}-{service}"


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Shutterlog-Signature`` header of a webhook delivery: ``t=<unix seconds>,
    v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the link's secret>``. A receiver
    recomputes it over the raw body, compares in constant time, and rejects a ``t`` more
    than 300 seconds from its own clock (so a captured delivery cannot be replayed later)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


@dataclass(frozen=True)
class Media:
    """Where a medium's bytes are: a public URL, and a local file when the blob store has one."""

    url: str
    content_type: str
    path: str | None = None

    @property
    def is_video(self) -> bool:
        return self.content_type.startswith("video/")


@dataclass(frozen=True)
class ShareRequest:
    """Post medium ``medium_id`` (caption, link, media) to ``service`` for its owner."""

    event_id: int
    medium_id: int
    owner_id: int
    service: str
    caption: str
    permalink: str
    media: Media
    alt_text: str = ""

    @property
    def key(self) -> str:
        return share_key(self.event_id, self.service)


#: The credential field that says where an account lives, for services whose account
#: names are not unique (a Mastodon instance, a webhook's URL, a Facebook page).
_PLACE = {"mastodon": "instance_url", "webhook": "url", "facebook": "page_id"}


def account_key(service: str, account: str, credentials: Credentials) -> str:
    """Who a post is made as: the account's name and where it lives. Credentials re-sealed
    (``secrets rotate``) or renewed for the same account keep it; a link to another account
    or place changes it."""
    return f"{service}:{account}@{credentials.get(_PLACE.get(service, ''), '') or ''}"


class Credentials:
    """A linked account's credentials: string fields, secrets masked in ``repr``.

    Fields by service: mastodon ``access_token``, ``instance_url`` (and ``max_characters``,
    ``visibility``); twitter ``access_token`` (an OAuth 2.0 user token; ``user_id`` once
    verified); facebook ``access_token`` (a page token), ``page_id``; webhook ``url``,
    ``secret``.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: Mapping[str, str]) -> None:
        self._fields = dict(fields)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._fields.get(name, default)

    def __getitem__(self, name: str) -> str:
        return self._fields[name]

    def __contains__(self, name: object) -> bool:
        return name in self._fields

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Credentials) and other._fields == self._fields

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{k}=***" if k in SECRET_FIELDS else f"{k}={v!r}"
            for k, v in sorted(self._fields.items())
        )
        return f"Credentials({shown})"

    def with_fields(self, **extra: str) -> Credentials:
        """A copy with ``extra`` fields set (e.g. what ``verify`` learned)."""
        return Credentials(self._fields | extra)

    def secret_values(self) -> list[str]:
        """The secret values, to keep them out of anything we log or store in the clear."""
        return [v for k, v in self._fields.items() if k in SECRET_FIELDS and v]

    def scrub(self, text: str) -> str:
        """``text`` with every secret value replaced by ``***`` (services echo tokens back)."""
        for value in self.secret_values():
            text = text.replace(value, "***")
        return text

    def to_json(self) -> bytes:
        """The plaintext to encrypt at rest (``server.crypto``)."""
        return json.dumps(self._fields, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Credentials:
        fields = json.loads(data)
        if not isinstance(fields, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in fields.items()
        ):
            raise ValueError("credentials must be a JSON object of strings")
        return cls(fields)


class InvalidCredentials(ValueError):
    """Linked credentials that cannot work (a missing field, an unsafe URL); says which."""


# --- outcomes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Posted:
    """The post exists remotely."""

    remote_id: str
    url: str | None = None


@dataclass(frozen=True)
class Deleted:
    """The remote post is gone (``already_gone``: it was before we asked)."""

    remote_id: str
    already_gone: bool = False


@dataclass(frozen=True)
class Verified:
    """The credentials work; ``account`` names the remote account, ``learned`` extra fields."""

    account: str
    learned: Mapping[str, str]


@dataclass(frozen=True)
class RetryLater:
    """Try again later; ``delay`` is the wait the service asked for, in seconds, if it did."""

    reason: str
    delay: float | None = None


@dataclass(frozen=True)
class CredentialDead:
    """The service refused the credential: the account should be unlinked."""

    reason: str


@dataclass(frozen=True)
class Failed:
    """A permanent refusal; ``reason`` carries the service's message."""

    reason: str


Outcome = Posted | Deleted | Verified | RetryLater | CredentialDead | Failed


def outcome_for_status(status: int, message: str, delay: float | None = None) -> Outcome:
    """The outcome of a non-2xx answer: 408/429/5xx retry, 401/403 dead, other 4xx failed."""
    text = f"HTTP {status}: {message}" if message else f"HTTP {status}"
    if status in (408, 429) or status >= 500:
        return RetryLater(text, delay)
    if status in (401, 403):
        return CredentialDead(text)
    return Failed(text)


# --- when to try again ---------------------------------------------------------------------


def retry_hint(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the service asked us to wait: ``Retry-After`` (seconds or HTTP date), else a
    rate-limit reset (``x-rate-limit-reset``: Unix seconds, X; ``x-ratelimit-reset``: ISO 8601,
    Mastodon). ``headers`` keys are lower case. None when none is present or readable.
    """
    value = headers.get("retry-after")
    if value is not None:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError, IndexError):
            pass
    for name in ("x-rate-limit-reset", "x-ratelimit-reset"):
        value = headers.get(name)
        if value is None:
            continue
        value = value.strip()
        try:
            at = float(value) if value.isdigit() else _iso_timestamp(value)
        except ValueError:
            continue
        return max(0.0, at - now)
    return None


def _iso_timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with equal jitter, bounded in attempts and in total time."""

    base: float = 30.0
    factor: float = 2.0
    cap: float = 3600.0
    max_attempts: int = 10
    give_up_after: float = 2 * 86400.0


def next_attempt(
    policy: RetryPolicy,
    attempts: int,
    first_at: float,
    now: float,
    hint: float | None,
    jitter: float,
) -> float | None:
    """When to try again after ``attempts`` failed tries (the first at ``first_at``), or None
    to give up. ``hint`` is ``RetryLater.delay``: never retry sooner than the service asked.
    ``jitter`` in [0, 1) spreads retries (pass ``random.random()``).
    """
    if attempts >= policy.max_attempts:
        return None
    backoff = min(policy.cap, policy.base * policy.factor ** max(0, attempts - 1))
    delay = backoff / 2 + jitter * backoff / 2
    if hint is not None:
        delay = max(delay, hint)
    at = now + delay
    if at > first_at + policy.give_up_after:
        return None
    return at


@dataclass(frozen=True)
class PollSchedule:
    """Waits between polls of a remote job (media processing): growing, never shorter than
    the service's own hint (``check_after_secs``), bounded in count and in total time."""

    first: float = 0.5
    factor: float = 1.5
    cap: float = 5.0
    max_polls: int = 30
    budget: float = 60.0

    def wait(self, polls: int, spent: float, hint: float | None = None) -> float | None:
        """The wait before the next poll after ``polls`` polls and ``spent`` seconds of
        waiting, or None when the count or the time budget is used up."""
        if polls >= self.max_polls:
            return None
        wait = max(min(self.cap, self.first * self.factor**polls), hint or 0.0)
        if spent + wait > self.budget:
            return None
        return wait
