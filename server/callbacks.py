"""The two HTTP calls of webhook subscriptions, over the outbound-safe client
(``server.outbound.safe_client``): the verification ``GET`` a new subscription's callback must
answer, and the signed ``POST`` of updates. Synchronous: the API runs the first in its
threadpool, the worker pool the second (cooperative under gevent).

Neither raises for what a callback or the network does: each returns what happened, in words
an app can act on (they are shown in API errors and in ``GET /v1/subscriptions``), never with
a secret in them (the verify token is in the URL, so URLs are not repeated).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from server.domain.outbound import UnsafeURL
from server.domain.subscriptions import (
    MAX_CHALLENGE_ANSWER,
    REFUSED,
    RETRY,
    SIGNATURE_HEADER,
    challenge_failure,
    verdict,
)

USER_AGENT = "shutterlog-webhooks/1"


def verify(client: httpx.Client, callback_url: str, verify_token: str, challenge: str,
           clock: Callable[[], float] = time.monotonic) -> str | None:
    """``GET callback_url?hub.mode=subscribe&hub.challenge=...&hub.verify_token=...``
    (redirects followed, each hop checked); None if the callback echoed the challenge, else
    why not (refused address, unreachable, timeout, a non-2xx status, a wrong echo). Every
    read waits at most the client's timeout, and the body (at most 1 KiB is read) must be in
    within that timeout too: a callback dripping bytes cannot hold a thread."""
    url = httpx.URL(callback_url).copy_merge_params(
        {"hub.mode": "subscribe", "hub.challenge": challenge, "hub.verify_token": verify_token})
    try:
        with client.stream("GET", url, follow_redirects=True,
                           headers={"User-Agent": USER_AGENT}) as r:
            deadline = clock() + (client.timeout.read or 10.0)
            answer = b""
            for chunk in r.iter_bytes():
                answer += chunk
                if len(answer) >= MAX_CHALLENGE_ANSWER:
                    break
                if clock() > deadline:
                    return "the callback did not answer in time"
            return challenge_failure(r.status_code, answer, challenge)
    except UnsafeURL as e:
        return f"the callback URL is refused: {e}"
    except httpx.TooManyRedirects:
        return "the callback redirected too many times"
    except httpx.TimeoutException:
        return "the callback did not answer in time"
    except httpx.HTTPError as e:
        return f"cannot reach the callback: {type(e).__name__}"


def deliver(client: httpx.Client, callback_url: str, raw: bytes, signature: str
            ) -> tuple[str, str]:
    """POST one batch of updates; (DELIVERED | RETRY | REFUSED, what happened). Redirects are
    not followed (a callback must answer itself) and only the status is read."""
    try:
        with client.stream("POST", callback_url, content=raw, headers={
                "Content-Type": "application/json", SIGNATURE_HEADER: signature,
                "User-Agent": USER_AGENT}) as r:  # the answer's body is never read
            status = r.status_code
    except UnsafeURL as e:
        return REFUSED, f"the callback URL is refused: {e}"
    except httpx.TimeoutException:
        return RETRY, "the callback did not answer in time"
    except httpx.HTTPError as e:
        return RETRY, f"cannot reach the callback: {type(e).__name__}"
    return verdict(status), f"the callback answered HTTP {status}"
