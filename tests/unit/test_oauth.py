"""Scopes, redirect URIs, the signed-request signature, and sealed secrets."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from server.domain.oauth import (
    OAuthError,
    check_redirect_uri,
    check_redirect_uri_format,
    parse_scopes,
    scope_text,
    signature,
    signature_matches,
)
from server.secretbox import SecretBox


def test_scopes() -> None:
    """basic is always granted; + and spaces separate; unknown scopes are invalid_scope."""
    assert parse_scopes(None) == {"basic"}
    assert parse_scopes("likes+comments") == {"basic", "likes", "comments"}
    assert scope_text(parse_scopes("relationships likes")) == "basic relationships likes"
    with pytest.raises(OAuthError) as e:
        parse_scopes("basic admin")
    assert e.value.error == "invalid_scope"


def test_redirect_uri_must_match_exactly() -> None:
    """Only the registered URI itself (or none: the registered one is used) is accepted."""
    reg = "https://app.example/cb"
    assert check_redirect_uri(reg, None) == reg
    assert check_redirect_uri(reg, reg) == reg
    for other in (reg + "/x", reg + "?a=1", "https://app.example/c", "https://evil/cb"):
        with pytest.raises(OAuthError):
            check_redirect_uri(reg, other)
    for bad in ("ftp://x/", "/relative", "https://x/#frag", "http://", "https:///cb",
                "https://app.example/cb\r\nSet-Cookie: x=1", "https://app.example/c b"):
        with pytest.raises(OAuthError):  # no host, a header split, white space
            check_redirect_uri_format(bad)
    check_redirect_uri_format("http://127.0.0.1:8000/cb?x=1")


def test_signature_is_instagrams() -> None:
    """sig = HMAC-SHA256(secret, endpoint + '|k=v' for sorted params, sig excluded)."""
    params = {"access_token": "fb2e77d.47a0479900504cb3ab4a1f626d174d2d", "count": "10",
              "sig": "ignored"}
    secret = "6dc1787668c64c939929c17683d7cb74"
    message = "/media/657988443280050001_25025320|access_token=fb2e77d.47a0479900504cb3ab4a1f6" \
              "26d174d2d|count=10"
    expected = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    assert signature("/media/657988443280050001_25025320", params, secret) == expected
    assert signature_matches("/media/657988443280050001_25025320", params, secret,
                             expected.upper())
    assert not signature_matches("/media/1", params, secret, expected)


def test_secret_box_round_trip_and_tamper() -> None:
    """Sealed secrets open with the same master and purpose only, and detect tampering."""
    box = SecretBox("master", "purpose")
    sealed = box.seal(b"client secret")
    assert b"client secret" not in sealed and box.open(sealed) == b"client secret"
    assert box.seal(b"x") != box.seal(b"x")  # random nonces
    for other in (SecretBox("master", "other"), SecretBox("other", "purpose")):
        with pytest.raises(ValueError):
            other.open(sealed)
    with pytest.raises(ValueError):
        box.open(sealed[:-1] + bytes([sealed[-1] ^ 1]))
