"""What every HTTP share target shares: calls that turn failures into outcomes, answers read
within a size limit, the reading of a service's error message, media bytes, and logs that
never carry a credential."""

from __future__ import annotations

import logging
import mimetypes
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import httpx

from server.domain.outbound import UnsafeURL
from server.domain.shareout import (
    Credentials,
    Failed,
    InvalidCredentials,
    Outcome,
    PollSchedule,
    Posted,
    RetryLater,
    ShareRequest,
    outcome_for_status,
    retry_hint,
)

log = logging.getLogger("plugins.shareout")

MB = 1024 * 1024
T = TypeVar("T")

#: The most of an answer a target reads, decoded. Services answer a few KiB of JSON; a user's
#: Mastodon instance or webhook could answer a few hundred bytes of gzip inflating to GiB.
ANSWER_LIMIT = MB
#: The encodings asked for, and inflated piece by piece (zlib's ``wbits`` for each).
ACCEPT_ENCODING = "gzip, deflate"
_WBITS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}
_PIECE = 64 * 1024  # the most one inflate step outputs


class UnreadableAnswer(Exception):
    """An answer not read: in an encoding not asked for, corrupt, or too large."""


class AnswerTooLarge(UnreadableAnswer):
    """An answer larger than allowed, once decoded."""


class Stop(Exception):
    """Ends a target's operation early with ``outcome`` (caught by ``HTTPTarget.run``)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class HTTPTarget:
    """Base of the HTTP targets: ``run`` wraps an operation, ``send`` makes one call."""

    name = "?"

    def __init__(
        self,
        http: httpx.Client,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.http = http
        self.clock = clock
        self.sleep = sleep

    def verify(self, credentials: Credentials) -> Outcome:
        return self.run("verify", self._verify, credentials)

    def post(self, request: ShareRequest, credentials: Credentials) -> Outcome:
        return self.run(f"post {request.key}", self._post, request, credentials)

    def delete(self, remote_id: str, credentials: Credentials) -> Outcome:
        return self.run(f"delete {remote_id}", self._delete, remote_id, credentials)

    def find_existing(self, request: ShareRequest, credentials: Credentials) -> Outcome | None:
        return self.run(f"look for {request.key}", self._find, request, credentials)

    def take_back(self, request: ShareRequest, credentials: Credentials) -> Outcome | None:
        made = self.made_by(request, credentials)
        return self.delete(made.remote_id, credentials) if isinstance(made, Posted) else made

    def made_by(self, request: ShareRequest, credentials: Credentials) -> Outcome | None:
        """The post an attempt with no known result made, for ``take_back``: by default
        ``find_existing``'s look (None: none found)."""
        return self.find_existing(request, credentials)

    # Each target implements these; a Stop, a refused URL or a network failure in them
    # becomes the operation's outcome (``run``).

    def _verify(self, credentials: Credentials) -> Outcome:
        raise NotImplementedError

    def _post(self, request: ShareRequest, credentials: Credentials) -> Outcome:
        raise NotImplementedError

    def _delete(self, remote_id: str, credentials: Credentials) -> Outcome:
        raise NotImplementedError

    def _find(self, request: ShareRequest, credentials: Credentials) -> Outcome | None:
        """None: the service offers no look-up; its idempotency key is the guard."""
        return None

    def run(self, operation: str, fn: Callable[..., T], *args: Any) -> T | Outcome:
        """``fn(*args)``, with early stops, refused URLs and network failures as outcomes."""
        outcome: T | Outcome
        try:
            outcome = fn(*args)
        except Stop as stop:
            outcome = stop.outcome
        except UnsafeURL as e:
            outcome = Failed(f"refused URL: {e}")
        except InvalidCredentials as e:
            outcome = Failed(f"unusable credentials: {e}")
        except httpx.TooManyRedirects:
            outcome = Failed("too many redirects")
        except httpx.TransportError as e:  # timeouts, connection failures, broken answers
            outcome = RetryLater(f"network: {type(e).__name__}")
        except UnreadableAnswer as e:  # the service may have acted: retry with the same key
            outcome = RetryLater(f"unreadable answer: {e}")
        log.info("%s %s: %s", self.name, operation, outcome)
        return outcome

    def send(
        self,
        method: str,
        url: str,
        credentials: Credentials,
        *,
        ok: tuple[int, ...] = (200, 201, 202),
        **kwargs: Any,
    ) -> httpx.Response:
        """One call; a status outside ``ok`` stops the operation with its outcome."""
        response = self.call(method, url, **kwargs)
        if response.status_code not in ok:
            raise Stop(self.failure(response, credentials))
        return response

    def call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request (``httpx.Client.request``'s arguments), its answer read whole and
        decoded but refused (``AnswerTooLarge``) beyond ``ANSWER_LIMIT`` bytes: every answer a
        target reads comes through here, never through httpx's unbounded decoding."""
        headers = {**(kwargs.pop("headers", None) or {}), "Accept-Encoding": ACCEPT_ENCODING}
        with self.http.stream(method, url, headers=headers, **kwargs) as response:
            body = bounded_body(response, ANSWER_LIMIT)
        decoded = [(k, v) for k, v in response.headers.multi_items()
                   if k.lower() not in ("content-encoding", "content-length")]
        return httpx.Response(response.status_code, headers=decoded, content=body,
                              request=response.request)

    def failure(self, response: httpx.Response, credentials: Credentials) -> Outcome:
        """The outcome of an unexpected answer (targets refine it for their services)."""
        return outcome_for_status(
            response.status_code,
            credentials.scrub(error_message(response)),
            self.hint(response),
        )

    def hint(self, response: httpx.Response) -> float | None:
        """The wait the answer asks for (``Retry-After``, rate-limit reset), in seconds."""
        headers = {k.lower(): v for k, v in response.headers.items()}
        return retry_hint(headers, self.clock())

    def wait_until(
        self,
        schedule: PollSchedule,
        done: Callable[[], tuple[bool, float | None]],
        hint: float | None = None,
    ) -> None:
        """Poll ``done`` (returning finished?, the service's next-check hint) on ``schedule``;
        when the schedule runs out, stop with ``RetryLater`` (the job re-uploads later)."""
        polls, spent = 0, 0.0
        while True:
            wait = schedule.wait(polls, spent, hint)
            if wait is None:
                raise Stop(RetryLater(f"media still processing after {spent:.0f}s of polling"))
            self.sleep(wait)
            spent += wait
            polls += 1
            finished, hint = done()
            if finished:
                return

    def media_bytes(self, request: ShareRequest, image_limit: int, video_limit: int) -> bytes:
        """The medium's bytes, from its local file or its public URL, within the service's
        size limit (``Failed`` beyond it)."""
        limit = video_limit if request.media.is_video else image_limit
        too_big = Stop(Failed(f"the medium exceeds {self.name}'s limit of {limit // MB} MB"))
        if request.media.path:
            with open(request.media.path, "rb") as f:
                data = f.read(limit + 1)
            if len(data) > limit:
                raise too_big
            return data
        with self.http.stream("GET", request.media.url,
                              headers={"Accept-Encoding": ACCEPT_ENCODING}) as response:
            if response.status_code != 200:
                raise Stop(outcome_for_status(response.status_code, "fetching the medium"))
            try:
                return bounded_body(response, limit)
            except AnswerTooLarge:
                raise too_big from None


def bounded_body(response: httpx.Response, limit: int) -> bytes:
    """The body of a streamed ``response``, decoded; ``AnswerTooLarge`` beyond ``limit`` bytes.
    Raw bytes are inflated a piece at a time, so memory holds ``limit`` and a few pieces
    whatever the compression ratio (httpx inflates each read whole, without a bound)."""
    pieces: Iterable[bytes] = response.iter_raw()
    for coding in reversed(response.headers.get_list("content-encoding", split_commas=True)):
        coding = coding.lower()
        if coding in ("", "identity"):
            continue
        if coding not in _WBITS:
            raise UnreadableAnswer(f"an encoding not asked for ({coding})")
        pieces = _inflated(pieces, _WBITS[coding])
    chunks, size = [], 0
    for piece in pieces:
        size += len(piece)
        if size > limit:
            raise AnswerTooLarge(f"more than {limit} bytes once decoded")
        chunks.append(piece)
    return b"".join(chunks)


def _inflated(pieces: Iterable[bytes], wbits: int) -> Iterator[bytes]:
    """``pieces`` inflated by zlib (``wbits`` says the format), at most ``_PIECE`` bytes at a
    time: input that would inflate further waits in ``unconsumed_tail``."""
    inflater = zlib.decompressobj(wbits)
    try:
        for data in pieces:
            while True:
                out = inflater.decompress(data, _PIECE)
                data = inflater.unconsumed_tail
                yield out
                if not data and len(out) < _PIECE:  # all input in, all output out
                    break
    except zlib.error as e:
        raise UnreadableAnswer(f"corrupt compressed data ({e})") from None


def json_of(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a successful answer; an unreadable one is retried (the remote
    side may have acted, so a retry with the same idempotency key is the safe reaction)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise Stop(RetryLater(f"unreadable answer (HTTP {response.status_code})"))
    return body


def error_message(response: httpx.Response) -> str:
    """The service's own words about an error, from the shapes the services use: Mastodon
    ``{"error": "..."}``, Graph ``{"error": {"message": ...}}``, X problem details
    ``{"detail": ..., "title": ...}`` or ``{"errors": [{"message": ...}]}``; else the text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip()
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            error = error.get("message")
        errors = body.get("errors")
        if not error and isinstance(errors, list) and errors and isinstance(errors[0], dict):
            error = errors[0].get("message") or errors[0].get("detail")
        error = error or body.get("detail") or body.get("title")
        if isinstance(error, str):
            return error[:500]
    return str(body)[:200]


def filename_for(request: ShareRequest) -> str:
    """A file name for a multipart upload, with the extension of the media type."""
    ext = mimetypes.guess_extension(request.media.content_type) or ".bin"
    return f"medium-{request.medium_id}{ext}"


def required(credentials: Credentials, *names: str) -> None:
    """InvalidCredentials naming the first missing or empty field."""
    for name in names:
        if not (credentials.get(name) or "").strip():
            raise InvalidCredentials(f"{name} is required")
