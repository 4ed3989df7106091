"""APNs provider: HTTP/2 to Apple's provider API with token (JWT) authentication.

Every request carries ``authorization: bearer <JWT>``, an ES256 token signed with the team's
.p8 key, whose header names the key (``kid``) and whose claims name the team (``iss``) and
the time it was made (``iat``). Apple wants one token reused for 20 to 60 minutes: a new one
sooner is answered 429 ``TooManyProviderTokenUpdates``, one older than an hour 403
``ExpiredProviderToken``. ``ProviderToken`` makes a new token once the configured lifetime
(1200-3600 s) has passed, and outside that rule only when APNs rejected the current one
(403 ``ExpiredProviderToken``/``InvalidProviderToken``): then the request is tried once more
with the new token, and a second rejection fails the notification.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from zope.interface import implementer

from plugins.push.h2channel import H2Channel, TransportError
from server.config import ConfigError, PushConfig
from server.domain.apns import (
    PayloadTooLarge,
    apns_body,
    apns_headers,
    apns_result,
    error_of,
    provider_token_rejected,
)
from server.domain.push import Failed, Notification, PushResult, RetryLater, RetryPolicy
from server.interfaces import IPushProvider

log = logging.getLogger(__name__)

MIN_LIFETIME = 1200
MAX_LIFETIME = 3600


def load_signing_key(path: str, key: str = "push.apns_key_file") -> ec.EllipticCurvePrivateKey:
    """The P-256 private key of a .p8 file; ``ConfigError`` naming ``key`` (never showing
    the file's content) when it is missing or not such a key."""
    try:
        with open(path, "rb") as f:
            loaded = load_pem_private_key(f.read(), password=None)
    except OSError as e:
        raise ConfigError(f"{key}: cannot read {path}: {e.strerror}") from None
    except (ValueError, TypeError):
        raise ConfigError(f"{key}: {path} is not a PEM private key") from None
    if not isinstance(loaded, ec.EllipticCurvePrivateKey) or loaded.curve.name != "secp256r1":
        raise ConfigError(f"{key}: {path} is not an APNs (ES256, P-256) signing key")
    return loaded


class ProviderToken:
    """The JWT in use, made anew after ``lifetime`` seconds or when APNs rejected it."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, key_id: str, team_id: str,
                 lifetime: float = 3000, clock: Callable[[], float] = time.time) -> None:
        if not MIN_LIFETIME <= lifetime <= MAX_LIFETIME:
            raise ValueError(f"lifetime must be {MIN_LIFETIME}-{MAX_LIFETIME} seconds")
        self._key = key
        self.key_id = key_id
        self.team_id = team_id
        self.lifetime = lifetime
        self.clock = clock
        self._lock = threading.Lock()
        self._token = ""
        self.issued_at = 0
        self.minted = 0  #: tokens made so far

    def __repr__(self) -> str:
        return f"ProviderToken(kid={self.key_id!r}, iss={self.team_id!r})"

    def current(self) -> str:
        """The token to send now (a new one once the current one has lived ``lifetime``)."""
        with self._lock:
            if not self._token or self.clock() - self.issued_at >= self.lifetime:
                self._mint()
            return self._token

    def replace(self, rejected: str) -> str:
        """A new token after APNs rejected ``rejected``, unless another sender already
        replaced it (then the newer one): concurrent rejections make one new token."""
        with self._lock:
            if self._token == rejected:
                self._mint()
            return self._token

    def _mint(self) -> None:
        self.issued_at = int(self.clock())
        self._token = jwt.encode({"iss": self.team_id, "iat": self.issued_at}, self._key,
                                 algorithm="ES256", headers={"kid": self.key_id})
        self.minted += 1
        log.info("made a new APNs provider token (kid %s, iat %d)", self.key_id, self.issued_at)


@implementer(IPushProvider)
class ApnsProvider:
    """Sends to APNs over one HTTP/2 connection; see the module docstring for the token."""

    name = "apns"

    def __init__(self, token: ProviderToken, topic: str, base_url: str, *, ca_file: str = "",
                 timeout: float = 10.0, policy: RetryPolicy | None = None) -> None:
        self.token = token
        self.topic = topic
        self.policy = policy or RetryPolicy()
        self.channel = H2Channel(base_url, ca_file=ca_file, timeout=timeout,
                                 unindexed=("apns-id", "apns-collapse-id", "apns-expiration"))

    def __repr__(self) -> str:
        return f"ApnsProvider({self.channel.base}, topic={self.topic!r}, {self.token!r})"

    @classmethod
    def from_config(cls, push: PushConfig, clock: Callable[[], float] = time.time,
                    ) -> ApnsProvider:
        """Built from the ``push.apns_*`` settings; ``ConfigError`` naming what is missing."""
        for key in ("apns_key_file", "apns_key_id", "apns_team_id", "apns_topic"):
            if not getattr(push, key):
                raise ConfigError(f"push.{key}: required when a platform uses apns")
        token = ProviderToken(load_signing_key(push.apns_key_file), push.apns_key_id,
                              push.apns_team_id, push.apns_jwt_lifetime, clock)
        return cls(token, push.apns_topic, push.apns_url, ca_file=push.ca_file,
                   timeout=push.timeout)

    def send(self, notification: Notification, attempt: int = 0) -> PushResult:
        if notification.platform != "ios":
            raise ValueError(f"APNs cannot send to {notification.describe()}")
        try:
            body = apns_body(notification)
        except PayloadTooLarge:
            return Failed("PayloadTooLarge")
        headers = apns_headers(notification, self.topic)
        path = f"/3/device/{notification.device_token}"

        def backoff(retry_after: float | None) -> float:
            return self.policy.delay(attempt, notification.id, retry_after)

        jwt_ = self.token.current()
        try:
            answer = self.channel.post(path, headers | {"authorization": f"bearer {jwt_}"}, body)
            if answer.status == 403 and provider_token_rejected(403, error_of(answer.body)[0]):
                jwt_ = self.token.replace(jwt_)
                answer = self.channel.post(
                    path, headers | {"authorization": f"bearer {jwt_}"}, body)
        except TransportError as e:
            log.warning("APNs unreachable for %s: %s", notification.describe(),
                        type(e).__name__)
            return RetryLater(type(e).__name__, backoff(None))
        result = apns_result(answer.status, answer.body, answer.headers.get("apns-id"),
                             backoff)
        if not isinstance(result, RetryLater | Failed):
            return result
        log.warning("APNs answered %d %s for %s", answer.status, result.reason,
                    notification.describe())
        return result

    def close(self) -> None:
        self.channel.close()
