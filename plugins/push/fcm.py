"""FCM HTTP v1 provider: an OAuth2 access token from a service account, one connection.

google-auth makes the access token: it signs a JWT assertion (RS256, ``iss`` the service
account, ``aud`` the token endpoint, the ``firebase.messaging`` scope) and trades it at the
token endpoint (the JWT bearer grant). Its HTTP goes through ``HttpxRequest``, so the token
endpoint is reached with the same TLS settings as FCM. ``AccessToken`` keeps the token until
``margin`` seconds before it expires (by the clock passed in) and replaces it early when FCM
answers 401 to it; that request is then tried once more.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import google.auth.exceptions
import google.auth.transport
import httpx
from google.oauth2 import service_account

from zope.interface import implementer

from plugins.push.http import Answer, Channel
from server.config import ConfigError, PushConfig
from server.domain.fcm import (
    SCOPE,
    DataTooLarge,
    access_token_rejected,
    error_of,
    fcm_message,
    fcm_result,
)
from server.domain.push import (
    Failed,
    Notification,
    PushResult,
    RetryLater,
    RetryPolicy,
    parse_retry_after,
)
from server.interfaces import IPushProvider

log = logging.getLogger(__name__)


class _Response(google.auth.transport.Response):
    def __init__(self, answer: Answer) -> None:
        self._answer = answer

    @property
    def status(self) -> int:
        return self._answer.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._answer.headers

    @property
    def data(self) -> bytes:
        return self._answer.body


class HttpxRequest(google.auth.transport.Request):
    """google-auth's transport interface over our httpx channel."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def __call__(self, url: str, method: str = "GET", body: bytes | None = None,
                 headers: Mapping[str, str] | None = None, timeout: float | None = None,
                 **kwargs: Any) -> _Response:
        try:
            answer = self.channel.request(method, httpx.URL(url), dict(headers or {}), body)
        except httpx.TransportError as e:
            raise google.auth.exceptions.TransportError(type(e).__name__) from None
        return _Response(answer)


def load_credentials(path: str, token_uri: str = "",
                     ) -> tuple[service_account.Credentials, str]:
    """(credentials scoped for FCM, their token endpoint) from a service account's JSON key
    file; ``token_uri`` replaces the file's endpoint. ``ConfigError`` never shows the file's
    content."""
    key = "push.fcm_credentials_file"
    try:
        with open(path, "rb") as f:
            info = json.load(f)
        creds = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
    except OSError as e:
        raise ConfigError(f"{key}: cannot read {path}: {e.strerror}") from None
    except (ValueError, TypeError, KeyError, AttributeError):
        raise ConfigError(f"{key}: {path} is not a service account key file") from None
    if token_uri:
        return creds.with_token_uri(token_uri), token_uri
    return creds, str(info["token_uri"])


class AccessToken:
    """The OAuth2 access token in use, replaced ``margin`` seconds before it expires."""

    def __init__(self, credentials: service_account.Credentials,
                 request: google.auth.transport.Request, *, margin: float = 300,
                 clock: Callable[[], float] = time.time) -> None:
        self.credentials = credentials
        self.request = request
        self.margin = margin
        self.clock = clock
        self.expires_at = 0.0
        self.fetched = 0  #: tokens obtained so far
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AccessToken({self.credentials.service_account_email!r})"

    def current(self) -> str:
        """A token valid for at least ``margin`` more seconds. Raises google-auth's
        ``RefreshError`` (refused) or ``TransportError`` (unreachable)."""
        with self._lock:
            if not self.credentials.token or self.clock() >= self.expires_at - self.margin:
                self._fetch()
            return str(self.credentials.token)

    def replace(self, rejected: str) -> str:
        """A new token after FCM refused ``rejected`` (unless already replaced)."""
        with self._lock:
            if self.credentials.token == rejected:
                self._fetch()
            return str(self.credentials.token)

    def _fetch(self) -> None:
        self.credentials.refresh(self.request)
        expiry = self.credentials.expiry  # naive UTC, google-auth's own clock
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        self.expires_at = self.clock() + (expiry - now).total_seconds() if expiry else 0.0
        self.fetched += 1
        log.info("got a new FCM access token for %s", self.credentials.service_account_email)


@implementer(IPushProvider)
class FcmProvider:
    """Sends FCM HTTP v1 messages to Android (and iOS devices registered through FCM)."""

    name = "fcm"

    def __init__(self, token: AccessToken, project: str, base_url: str, *, ca_file: str = "",
                 timeout: float = 10.0, policy: RetryPolicy | None = None) -> None:
        if not project:
            raise ConfigError("push.fcm_project: required (the key file names no project_id)")
        self.token = token
        self.project = project
        self.policy = policy or RetryPolicy()
        self.channel = Channel(base_url, ca_file=ca_file, timeout=timeout)
        self.path = f"/v1/projects/{project}/messages:send"

    def __repr__(self) -> str:
        return f"FcmProvider({self.channel.base}, project={self.project!r}, {self.token!r})"

    @classmethod
    def from_config(cls, push: PushConfig, clock: Callable[[], float] = time.time,
                    ) -> FcmProvider:
        """Built from the ``push.fcm_*`` settings; ``ConfigError`` naming what is wrong."""
        if not push.fcm_credentials_file:
            raise ConfigError("push.fcm_credentials_file: required when a platform uses fcm")
        creds, token_uri = load_credentials(push.fcm_credentials_file, push.fcm_token_uri)
        token_channel = Channel(token_uri, ca_file=push.ca_file, timeout=push.timeout)
        token = AccessToken(creds, HttpxRequest(token_channel), clock=clock)
        return cls(token, push.fcm_project or creds.project_id or "", push.fcm_url,
                   ca_file=push.ca_file, timeout=push.timeout)

    def send(self, notification: Notification, attempt: int = 0) -> PushResult:
        clock = self.token.clock

        def backoff(retry_after: float | None) -> float:
            return self.policy.delay(attempt, notification.id, retry_after)

        try:
            body = json.dumps(fcm_message(notification, clock())).encode()
        except DataTooLarge:
            return Failed("DataTooLarge")
        headers = {"content-type": "application/json; charset=UTF-8"}
        try:
            bearer = self.token.current()
            answer = self.channel.post(self.path, headers | {"authorization": f"Bearer {bearer}"},
                                       body)
            if answer.status == 401 and access_token_rejected(401, error_of(answer.body)):
                bearer = self.token.replace(bearer)
                answer = self.channel.post(
                    self.path, headers | {"authorization": f"Bearer {bearer}"}, body)
        except (httpx.TransportError, google.auth.exceptions.TransportError) as e:
            log.warning("FCM unreachable for %s: %s", notification.describe(), e)
            return RetryLater("unreachable", backoff(None))
        except google.auth.exceptions.RefreshError as e:
            retry = getattr(e, "retryable", False)
            log.warning("the token endpoint refused the service account (%s)",
                        "will retry" if retry else "check push.fcm_credentials_file")
            return RetryLater("token endpoint", backoff(None)) if retry else Failed(
                "access token refused")
        retry_after = parse_retry_after(answer.headers.get("retry-after"), clock())
        result = fcm_result(answer.status, answer.body, retry_after, backoff)
        if isinstance(result, RetryLater | Failed):
            log.warning("FCM answered %d %s for %s", answer.status, result.reason,
                        notification.describe())
        return result

    def close(self) -> None:
        self.channel.close()
        request = self.token.request
        if isinstance(request, HttpxRequest):
            request.channel.close()
