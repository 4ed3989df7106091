"""Who is calling and may they: access tokens, rate limits, signed requests, scopes.

Every check raises ``APIError`` with the Instagram API's error types:
``OAuthParameterException`` (no token), ``OAuthAccessTokenException`` (invalid, expired or
revoked token), ``OAuthRateLimitException`` (429), ``OAuthForbiddenException`` (403, signed
requests) and ``OAuthPermissionsException`` (missing scope). Runs in the service threadpool.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from server.api.envelope import APIError
from server.domain.oauth import signature_matches
from server.domain.ratelimit import Verdict
from server.interfaces import IShardRouter
from server.secretbox import SecretBox
from server.store import apps
from server.store.ratelimit import RateLimiter
from server.store.tokens import TokenInfo, digest

BEARER = "bearer "


@dataclass(frozen=True)
class Credentials:
    """The credentials a request carries (read on the reactor thread)."""

    token: str | None
    address: str


def credentials(query: Mapping[str, str], authorization: str | None, address: str,
                body: Mapping[str, object] | None = None) -> Credentials:
    """The access token from ``access_token`` (query or form) or ``Authorization: Bearer``;
    both at once must agree."""
    given = query.get("access_token")
    if given is None and body is not None and isinstance(body.get("access_token"), str):
        given = str(body["access_token"])
    header = None
    if authorization:
        if not authorization.lower().startswith(BEARER):
            raise APIError(400, "OAuthParameterException",
                           "the Authorization header must be 'Bearer ACCESS-TOKEN'")
        header = authorization[len(BEARER):].strip()
    if given is not None and header is not None and given != header:
        raise APIError(400, "OAuthParameterException",
                       "access_token and the Authorization header name different tokens")
    token = given if given is not None else header
    return Credentials(token or None, address)


def limit(limiter: RateLimiter, creds: Credentials) -> tuple[TokenInfo | None, Verdict]:
    """Look the token up and take from the rate-limit buckets (one Redis round trip)."""
    info, verdict = limiter.check(digest(creds.token) if creds.token else None, creds.address)
    if not verdict.allowed:
        raise RateLimited(verdict)
    return info, verdict


class RateLimited(APIError):
    def __init__(self, verdict: Verdict) -> None:
        super().__init__(
            429, "OAuthRateLimitException",
            f"The maximum number of requests ({verdict.limit} per window) has been exceeded; "
            f"retry in {verdict.retry_after_s} s.",
        )
        self.verdict = verdict


def require_token(creds: Credentials, info: TokenInfo | None) -> TokenInfo:
    if creds.token is None:
        raise APIError(400, "OAuthParameterException",
                       "Missing access_token URL parameter or Authorization header.")
    if info is None:
        raise APIError(400, "OAuthAccessTokenException", "The access_token provided is invalid.")
    return info


def require_scope(info: TokenInfo, scope: str) -> None:
    if scope not in info.scopes:
        raise APIError(
            400, "OAuthPermissionsException",
            f"This request requires scope={scope}, but this access token is not authorized "
            f"with this scope. The user must re-authorize your application with "
            f"scope={scope} to be granted this permission.",
        )


def check_signature(
    router: IShardRouter, box: SecretBox, endpoint: str, params: Mapping[str, str],
    info: TokenInfo | None,
) -> None:
    """Verify ``sig`` when the request carries one or its app requires one. The secret is
    the app's: the token's app, else the ``client_id`` parameter's."""
    sig = params.get("sig")
    required = info is not None and info.require_signed
    if sig is None and not required:
        return
    if sig is None:
        raise APIError(403, "OAuthForbiddenException",
                       "Invalid signed-request: Missing required parameter 'sig'")
    client_id = info.client_id if info is not None else params.get("client_id", "")
    app = apps.get(router, client_id) if client_id else None
    if app is None or app.revoked:
        raise APIError(403, "OAuthForbiddenException",
                       "Invalid signed-request: no valid client to check the signature with")
    if not signature_matches(endpoint, params, app.secret(box), sig):
        raise APIError(403, "OAuthForbiddenException",
                       "Invalid signed-request: Signature does not match")
