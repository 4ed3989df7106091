"""OAuth2 and request signing rules, in the shape of the Instagram v1 API. Pure: no I/O.

Scopes, the exact redirect-URI match, the ``sig`` of a signed request, and the events of apps
(OAuth clients): ``AppCreated`` and ``AppRevoked`` on the stream ``app:{client_id}``, which
lives in the shard ``app_shard(client_id)``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from server.domain.events import EVENTS, Event

#: The scopes of the Instagram API; every token has ``basic``.
SCOPES = ("basic", "public_content", "follower_list", "comments", "relationships", "likes")
DEFAULT_SCOPES = frozenset({"basic"})


class OAuthError(ValueError):
    """A refused OAuth request; ``error`` is the RFC 6749 error code for redirects."""

    def __init__(self, message: str, error: str = "invalid_request") -> None:
        super().__init__(message)
        self.error = error


@EVENTS.event("AppCreated", version=1, secret=("secret_box",))
class AppCreated(Event):
    """An OAuth client. ``secret_box`` is the client secret sealed with a key derived from
    the master secret (HMAC of signed requests needs the secret itself, so it cannot be a
    one-way hash)."""

    client_id: str
    name: str
    redirect_uri: str
    secret_box: bytes
    require_signed: bool


@EVENTS.event("AppRevoked", version=1)
class AppRevoked(Event):
    client_id: str


def app_stream(client_id: str) -> str:
    return f"app:{client_id}"


def app_shard(client_id: str, shard_count: int) -> int:
    """The logical shard of an app's stream and row (first 8 bytes of sha256)."""
    return int.from_bytes(hashlib.sha256(client_id.encode()).digest()[:8], "big") % shard_count


def parse_scopes(text: str | None) -> frozenset[str]:
    """The scopes a ``scope`` parameter asks for (space- or plus-separated); ``basic`` is
    always granted. OAuthError(invalid_scope) names an unknown scope."""
    asked = {s for s in (text or "").replace("+", " ").split() if s}
    unknown = sorted(asked - set(SCOPES))
    if unknown:
        raise OAuthError(f"unknown scope: {', '.join(unknown)}", "invalid_scope")
    return frozenset(asked) | DEFAULT_SCOPES


def scope_text(scopes: Iterable[str]) -> str:
    """Scopes in their canonical order, space-separated."""
    chosen = set(scopes)
    return " ".join(s for s in SCOPES if s in chosen)


def check_redirect_uri(registered: str, given: str | None) -> str:
    """The redirect URI to use: it must equal the registered one exactly (no prefix or
    wildcard matching: open redirects steal codes)."""
    if given is None or given == "":
        return registered
    if not hmac.compare_digest(given.encode(), registered.encode()):
        raise OAuthError("Redirect URI does not match registered redirect URI")
    return given


def check_redirect_uri_format(uri: str) -> None:
    """A registrable redirect URI: absolute http(s) with a host, no fragment, no white space
    or control character (it ends up in a Location header)."""
    parts = urlsplit(uri)
    if (parts.scheme not in ("http", "https") or not parts.hostname or "#" in uri
            or any(c.isspace() or not c.isprintable() for c in uri)):
        raise OAuthError("redirect URI must be an absolute http:// or https:// URL with a host, "
                         "without # or white space")
    if len(uri) > 2000:
        raise OAuthError("redirect URI is too long")


def signature(endpoint: str, params: Mapping[str, str], secret: str) -> str:
    """The ``sig`` of a signed request, as Instagram defined it: HMAC-SHA256 with the client
    secret over the endpoint (the path after ``/v1``) followed by ``|key=value`` for every
    parameter except ``sig``, sorted by key; hex digest."""
    message = endpoint + "".join(
        f"|{key}={params[key]}" for key in sorted(params) if key != "sig"
    )
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def signature_matches(endpoint: str, params: Mapping[str, str], secret: str, sig: str) -> bool:
    """Whether ``sig`` is the signature of the request (constant-time comparison)."""
    return hmac.compare_digest(signature(endpoint, params, secret), sig.lower())
