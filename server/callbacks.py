"""The two HTTP calls of webhook subscriptions, over the outbound-safe client
(``server.outbound.safe_client``): the verification ``GET`` a new subscription's callback must
answer, and the signed ``POST`` of updates. Synchronous: the API runs the first in its
threadpool, the worker pool the second (cooperative under gevent).

Neither raises for what a callback or the network does: each returns what happened, in words
an app can act on (they are shown in API errors and in ``GET /v1/subscriptions``), never with
a secret in them (the verify token is in the URL, so URLs are not repeated).
"""

from __future__ import annotations

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
from server.outbound import deadline

USER_AGENT = "shutterlog-webhooks/1"
#: Headers of both calls; answers are asked for unencoded, since a compressed body is never
#: inflated (a few bytes of it can stand for gigabytes).
HEADERS = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
DEFAULT_TIMEOUT = 10.0  # seconds, for a client without a read timeout


def verify(client: httpx.Client, callback_url: str, verify_token: str, challenge: str
           ) -> str | None:
    """``GET callback_url?hub.mode=subscribe&hub.challenge=...&hub.verify_token=...``
    (redirects followed by hand, at most the client's ``max_redirects``, each hop checked);
    None if the callback echoed the challenge, else why not (refused address, unreachable,
    timeout, a non-2xx status, an encoded answer, a wrong echo). A redirect's body is never
    read, at most 1 KiB of the answer is, as sent (never inflated), and the whole exchange
    must be over within the client's timeout (``server.outbound.deadline``): a callback
    dripping bytes cannot hold a thread."""
    try:
        url = httpx.URL(callback_url).copy_merge_params(
            {"hub.mode": "subscribe", "hub.challenge": challenge,
             "hub.verify_token": verify_token})
        request = client.build_request("GET", url, headers=HEADERS)
        with deadline(total_time(client)):
            for _hop in range(client.max_redirects + 1):
                r = client.send(request, stream=True, follow_redirects=False)
                try:
                    if r.next_request is None:
                        return challenge_failure(r.status_code, first_bytes(r), challenge,
                                                 r.headers.get("Content-Encoding", ""))
                    request = r.next_request  # closed unread: a redirect's body is not ours
                finally:
                    r.close()
            return "the callback redirected too many times"
    except (UnsafeURL, httpx.InvalidURL) as e:
        return f"the callback URL is refused: {e}"
    except httpx.TimeoutException:
        return "the callback did not answer in time"
    except httpx.HTTPError as e:
        return f"cannot reach the callback: {type(e).__name__}"


def first_bytes(r: httpx.Response) -> bytes:
    """The start of an answer's body as sent (never decoded): at least
    ``MAX_CHALLENGE_ANSWER`` bytes, if it has them."""
    answer = b""
    for chunk in r.iter_raw():
        answer += chunk
        if len(answer) >= MAX_CHALLENGE_ANSWER:
            break
    return answer


def total_time(client: httpx.Client) -> float:
    """The time one whole exchange may take: the client's (read) timeout."""
    return client.timeout.read or DEFAULT_TIMEOUT


def deliver(client: httpx.Client, callback_url: str, raw: bytes, signature: str
            ) -> tuple[str, str]:
    """POST one batch of updates; (DELIVERED | RETRY | REFUSED, what happened). Redirects are
    not followed (a callback must answer itself), only the status is read, and the whole
    exchange must be over within the client's timeout (``server.outbound.deadline``)."""
    try:
        with deadline(total_time(client)), client.stream(
                "POST", callback_url, content=raw, headers=HEADERS | {
                    "Content-Type": "application/json", SIGNATURE_HEADER: signature,
                }) as r:  # the answer's body is never read
            status = r.status_code
    except (UnsafeURL, httpx.InvalidURL) as e:
        return REFUSED, f"the callback URL is refused: {e}"
    except httpx.TimeoutException:
        return RETRY, "the callback did not answer in time"
    except httpx.HTTPError as e:
        return RETRY, f"cannot reach the callback: {type(e).__name__}"
    return verdict(status), f"the callback answered HTTP {status}"
