"""Linked accounts: a user's accounts on other networks, which share-out posts to. Pure.

A link lives on its own stream ``link:{user}:{service}`` in the user's shard: linking again
replaces the credentials (a new ``AccountLinked``), unlinking ends it (``AccountUnlinked``,
by the user or because the service refused the credentials). The credentials travel in the
event only as a Fernet token (``server/crypto.py``), never in clear; the field is declared
``secret`` so that tools printing events mask even that.

The API takes the remote OAuth token as ``token`` (``access_token`` is our own API's token
parameter); ``credential_fields`` maps the request's fields to the target's credential names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from server.domain.events import EVENTS, Event
from server.domain.media import SHARE_TARGETS

USER, CREDENTIAL_DEAD = "user", "credential_dead"
UNLINK_REASONS = (USER, CREDENTIAL_DEAD)
#: How services are named to people.
SERVICE_NAMES = {"twitter": "X", "facebook": "Facebook", "mastodon": "Mastodon",
                 "webhook": "webhook"}

#: Request field -> credential field, per service: (required, optional).
_FIELDS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "mastodon": ({"token": "access_token", "instance_url": "instance_url"},
                 {"visibility": "visibility"}),
    "twitter": ({"token": "access_token"}, {}),
    "facebook": ({"token": "access_token", "page_id": "page_id"}, {}),
    "webhook": ({"url": "url", "secret": "secret"}, {}),
}
#: Every request field some service takes (the endpoint's parameters).
REQUEST_FIELDS = ("token", "instance_url", "page_id", "url", "secret", "visibility")


@EVENTS.event("AccountLinked", version=1, secret=("credentials",))
class AccountLinked(Event):
    """``user_id`` linked (or re-linked) an account on ``service``; ``account`` is the remote
    handle the service confirmed, ``credentials`` a Fernet token of the credentials JSON."""

    user_id: int
    service: str
    account: str
    credentials: str


@EVENTS.event("AccountUnlinked", version=1)
class AccountUnlinked(Event):
    """The link ``link_id`` (its ``AccountLinked`` event) ended: ``reason`` is ``user`` or
    ``credential_dead`` (the service refused the credentials; ``detail`` says how)."""

    user_id: int
    service: str
    reason: str
    link_id: int
    detail: str


LINK_TYPES = ("AccountLinked", "AccountUnlinked")


class LinkError(ValueError):
    """A refused link request, with the API's code and error type."""

    def __init__(self, message: str, code: int = 400,
                 error_type: str = "APIInvalidParametersError") -> None:
        super().__init__(message)
        self.code = code
        self.error_type = error_type


def link_stream(user_id: int, service: str) -> str:
    return f"link:{user_id}:{service}"


def check_service(name: str) -> str:
    """``name`` as a known service; LinkError naming the known ones otherwise."""
    if name not in SHARE_TARGETS:
        raise LinkError(f"service: unknown service {name!r} (known: {', '.join(SHARE_TARGETS)})")
    return name


def credential_fields(service: str, given: Mapping[str, str | None]) -> dict[str, str]:
    """The credential fields of a link request for ``service``; LinkError naming a missing
    required field or a field this service does not take."""
    required, optional = _FIELDS[check_service(service)]
    out: dict[str, str] = {}
    for name, field in required.items():
        value = (given.get(name) or "").strip()
        if not value:
            raise LinkError(f"{name} is required to link {service}")
        out[field] = value
    for name, extra in given.items():
        if extra is None or name in required:
            continue
        if name not in optional:
            raise LinkError(f"{name} is not a field of a {service} link")
        out[optional[name]] = extra.strip()
    return out


@dataclass(frozen=True)
class Link:
    """A current link as the store holds it (``credentials``: the Fernet token)."""

    user_id: int
    service: str
    account: str
    credentials: str
    link_id: int
    linked_ms: int


def decide_unlink(current: Link | None, service: str, reason: str, link_id: int | None,
                  detail: str = "") -> list[AccountUnlinked]:
    """The unlink of ``current``: nothing if there is no link, or if ``link_id`` names an
    earlier link than the current one (a dead credential must not end a newer link)."""
    if reason not in UNLINK_REASONS:
        raise ValueError(f"unknown unlink reason {reason!r}")
    if current is None or (link_id is not None and link_id != current.link_id):
        return []
    return [AccountUnlinked(user_id=current.user_id, service=service, reason=reason,
                            link_id=current.link_id, detail=detail[:500])]
