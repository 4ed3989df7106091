"""The plain HTML pages of ``/oauth/authorize``: log in, then consent. Every value is escaped;
every form carries the CSRF token and the authorization request's parameters."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from server.domain.oauth import SCOPES

#: Sent with every page: no framing (clickjacking on the consent button), no caching.
HEADERS = (
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; "
     b"form-action 'self'; frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),
)
HTML_TYPE = b"text/html; charset=utf-8"

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · shutterlog</title>
<style>body{{font-family:sans-serif;max-width:28em;margin:3em auto}}
.error{{color:#b00}} label{{display:block;margin:.5em 0}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""

_SCOPE_TEXT = {
    "basic": "read your profile",
    "public_content": "read public profiles and content",
    "follower_list": "read the lists of people you follow and who follow you",
    "comments": "post and delete comments for you",
    "relationships": "follow and unfollow accounts for you",
    "likes": "like and unlike for you",
}


def _hidden(fields: Mapping[str, str]) -> str:
    return "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in fields.items()
    )


def login_page(app_name: str, fields: Mapping[str, str], error: str = "") -> bytes:
    """The login form; ``fields`` are the hidden parameters (request and CSRF token)."""
    message = f'<p class="error">{escape(error)}</p>' if error else ""
    body = (
        f"<p>Log in to let <b>{escape(app_name)}</b> use your account.</p>{message}"
        f'<form method="post" action="/oauth/authorize">{_hidden(fields)}'
        '<input type="hidden" name="step" value="login">'
        '<label>Username <input name="username" autocomplete="username" required></label>'
        '<label>Password <input name="password" type="password" '
        'autocomplete="current-password" required></label>'
        '<button type="submit">Log in</button></form>'
    )
    return _PAGE.format(title="Log in", body=body).encode()


def consent_page(app_name: str, username: str, scopes: frozenset[str],
                 fields: Mapping[str, str]) -> bytes:
    """The consent form: what the app asks for, Allow or Cancel."""
    items = "".join(f"<li>{escape(_SCOPE_TEXT[s])}</li>" for s in SCOPES if s in scopes)
    body = (
        f"<p>Logged in as <b>@{escape(username)}</b>.</p>"
        f"<p><b>{escape(app_name)}</b> would like to:</p><ul>{items}</ul>"
        f'<form method="post" action="/oauth/authorize">{_hidden(fields)}'
        '<button type="submit" name="step" value="allow">Authorize</button> '
        '<button type="submit" name="step" value="deny">Cancel</button></form>'
    )
    return _PAGE.format(title="Authorize " + escape(app_name), body=body).encode()
