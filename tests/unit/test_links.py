"""Linked accounts, the pure part: services, request fields, unlink decisions, how the events
print, the activity item, and the PostgreSQL share ledger's interface."""

from __future__ import annotations

import pytest

from zope.interface.verify import verifyObject

from plugins.shareout import IShareLedger
from server.db import Database
from server.domain import activity as act
from server.domain.events import EVENTS
from server.domain.links import (
    CREDENTIAL_DEAD,
    USER,
    AccountLinked,
    Link,
    LinkError,
    check_service,
    credential_fields,
    decide_unlink,
)
from server.store.shares import Share, ShareLedger

LINK = Link(7, "mastodon", "@alice", "gAAAA-token", link_id=100, linked_ms=1)


def test_known_services_pass_and_unknown_ones_name_the_known() -> None:
    """check_service accepts the four targets; anything else is refused with the list."""
    assert check_service("webhook") == "webhook"
    with pytest.raises(LinkError, match="unknown service 'Twitter'.*twitter, facebook"):
        check_service("Twitter")


def test_request_fields_map_to_credentials_per_service() -> None:
    """``token`` becomes ``access_token``; optional fields pass; values are trimmed."""
    assert credential_fields("mastodon", {"token": " t ", "instance_url": "https://m.example",
                                          "visibility": "unlisted", "url": None}) == {
        "access_token": "t", "instance_url": "https://m.example", "visibility": "unlisted"}
    assert credential_fields("webhook", {"url": "https://h.example", "secret": "s" * 16}) == {
        "url": "https://h.example", "secret": "s" * 16}


@pytest.mark.parametrize("service, given, message", [
    ("facebook", {"token": "t"}, "page_id is required to link facebook"),
    ("twitter", {"token": "  "}, "token is required to link twitter"),
    ("twitter", {"token": "t", "secret": "x"}, "secret is not a field of a twitter link"),
])
def test_missing_and_foreign_fields_are_refused(service: str, given: dict[str, str],
                                                message: str) -> None:
    """A missing required field or a field of another service is a LinkError naming it."""
    with pytest.raises(LinkError, match=message):
        credential_fields(service, given)


def test_unlink_ends_only_the_current_link() -> None:
    """A user's unlink ends the current link; a dead credential of an older link ends
    nothing (the user linked again since); no link, nothing."""
    (event,) = decide_unlink(LINK, "mastodon", USER, None)
    assert (event.reason, event.link_id, event.user_id) == (USER, 100, 7)
    assert decide_unlink(LINK, "mastodon", CREDENTIAL_DEAD, 99, "401") == []
    assert decide_unlink(None, "mastodon", USER, None) == []
    (dead,) = decide_unlink(LINK, "mastodon", CREDENTIAL_DEAD, 100, "x" * 900)
    assert len(dead.detail) == 500
    with pytest.raises(ValueError):
        decide_unlink(LINK, "mastodon", "bored", None)


def test_tools_mask_the_sealed_credentials() -> None:
    """AccountLinked declares ``credentials`` secret: printing the event masks it."""
    event = AccountLinked(user_id=7, service="twitter", account="@a", credentials="gAAAA")
    assert EVENTS.redacted(event) == {"user_id": 7, "service": "twitter", "account": "@a",
                                      "credentials": "***"}


def test_the_unlinked_activity_item_tells_the_user_what_to_do() -> None:
    """An unlinked item reads as a message to the owner, naming the service."""
    group = act.Group(act.UNLINKED, [7], 0, None, None, "twitter")
    assert act.describe(group, str) == (
        "Your X account was unlinked: X refused its credentials. Link it again to keep "
        "sharing there.")
    assert act.unlinked_key(5) == "u:5"


def test_share_rows_show_pending_states_as_pending() -> None:
    """The owner sees queued and attempting shares as pending, never the ledger's key."""
    row = Share(1, "twitter", "shutterlog-9-twitter", "attempting", None, None, None, 0, None,
                0, 12_000)
    assert row.json() == {"service": "twitter", "state": "pending", "remote_id": None,
                          "url": None, "error": None, "attempts": 0, "updated_time": "12"}


def test_the_postgres_ledger_provides_ishareledger() -> None:
    """ShareLedger is an IShareLedger (no connection is made)."""
    ledger = ShareLedger(Database("postgresql://x/a"), 1, "twitter", lambda: 0)
    assert verifyObject(IShareLedger, ledger)
