"""The relationship state machine: follows, requests, approvals, blocks."""

from __future__ import annotations

from typing import Any

import pytest

from server.domain.graph import (
    Action,
    Edge,
    Pair,
    RelationshipError,
    apply,
    decide_incoming,
    decide_outgoing,
    incoming_status,
    may_view,
    outgoing_status,
)


def pair(**kw: Any) -> Pair:
    base: dict[str, Any] = dict(me=1, them=2, outgoing=Edge.NONE, incoming=Edge.NONE, i_block=False,
                they_block=False, them_private=False)
    return Pair(**(base | kw))


def types(events: list[Any]) -> list[str]:
    return [e.TYPE for e in events]


def test_follow_public_private_and_repeat() -> None:
    """Following a public account is immediate, a private one a request; repeats do nothing."""
    assert types(decide_outgoing(pair(), Action.FOLLOW)) == ["UserFollowed"]
    assert types(decide_outgoing(pair(them_private=True), Action.FOLLOW)) == ["FollowRequested"]
    assert decide_outgoing(pair(outgoing=Edge.ACTIVE), Action.FOLLOW) == []
    assert decide_outgoing(pair(outgoing=Edge.REQUESTED, them_private=True), Action.FOLLOW) == []


def test_unfollow_cancels_follows_and_requests() -> None:
    """Unfollow removes an active edge or a pending request; with none it does nothing."""
    for edge in (Edge.ACTIVE, Edge.REQUESTED):
        [e] = decide_outgoing(pair(outgoing=edge), Action.UNFOLLOW)
        assert e.TYPE == "UserUnfollowed" and e.reason == "unfollowed"  # type: ignore[attr-defined]
    assert decide_outgoing(pair(), Action.UNFOLLOW) == []


def test_blocks_forbid_following_either_way() -> None:
    """Neither side of a block may follow the other."""
    for kw in ({"i_block": True}, {"they_block": True}):
        with pytest.raises(RelationshipError) as e:
            decide_outgoing(pair(**kw), Action.FOLLOW)
        assert e.value.kind == "not_allowed"


def test_block_removes_my_edge_and_unblock() -> None:
    """Blocking appends the block and the removal of my edge; unblocking only the unblock."""
    events = decide_outgoing(pair(outgoing=Edge.ACTIVE), Action.BLOCK)
    assert types(events) == ["UserBlocked", "UserUnfollowed"]
    assert events[1].reason == "blocked"  # type: ignore[attr-defined]
    assert types(decide_outgoing(pair(), Action.BLOCK)) == ["UserBlocked"]
    assert decide_outgoing(pair(i_block=True), Action.BLOCK) == []
    assert types(decide_outgoing(pair(i_block=True), Action.UNBLOCK)) == ["UserUnblocked"]
    assert decide_outgoing(pair(), Action.UNBLOCK) == []


def test_approve_and_ignore_requests() -> None:
    """Approve turns a request into a follow, ignore drops it; both act on their edge to me."""
    [e] = decide_incoming(pair(incoming=Edge.REQUESTED), Action.APPROVE)
    assert (e.TYPE, e.follower, e.followee) == ("FollowApproved", 2, 1)  # type: ignore[attr-defined]
    assert decide_incoming(pair(incoming=Edge.ACTIVE), Action.APPROVE) == []
    with pytest.raises(RelationshipError) as err:
        decide_incoming(pair(), Action.APPROVE)
    assert err.value.kind == "invalid"
    assert types(decide_incoming(pair(incoming=Edge.REQUESTED), Action.IGNORE)) == [
        "FollowIgnored"]
    assert decide_incoming(pair(incoming=Edge.ACTIVE), Action.IGNORE) == []


def test_no_relationship_with_oneself() -> None:
    """Every action on oneself is refused."""
    for action in Action:
        decide = decide_incoming if action in (Action.APPROVE, Action.IGNORE) else decide_outgoing
        with pytest.raises(RelationshipError):
            decide(pair(them=1), action)


def test_statuses_and_fold() -> None:
    """Statuses use the Instagram API's words; the fold follows the events."""
    assert [outgoing_status(e) for e in Edge] == ["none", "requested", "follows"]
    assert [incoming_status(e, False) for e in Edge] == ["none", "requested_by", "followed_by"]
    assert incoming_status(Edge.ACTIVE, True) == "blocked_by_you"
    events = decide_outgoing(pair(them_private=True), Action.FOLLOW)
    assert apply(Edge.NONE, events) is Edge.REQUESTED
    assert apply(Edge.REQUESTED, decide_incoming(pair(me=2, them=1, incoming=Edge.REQUESTED),
                                                 Action.APPROVE)) is Edge.ACTIVE
    assert may_view(True, Edge.ACTIVE, False) and not may_view(True, Edge.REQUESTED, False)
    assert may_view(True, Edge.NONE, True) and may_view(False, Edge.NONE, False)
