"""The social graph: follow edges, follow requests, blocks, and the relationship state machine.
Pure: no I/O.

A follow edge's history is the stream ``follow:{follower}:{followee}`` (in the follower's
shard); a block's is ``block:{blocker}:{blocked}`` (in the blocker's shard). Decisions take the
state read from the inline projections and return the events to append.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from server.domain.events import EVENTS, Event


class Edge(enum.Enum):
    """The state of one follow edge, follower to followee."""

    NONE = "none"
    REQUESTED = "requested"
    ACTIVE = "active"


class Action(enum.Enum):
    """What ``POST /v1/users/{id}/relationship`` may ask for."""

    FOLLOW = "follow"
    UNFOLLOW = "unfollow"
    APPROVE = "approve"
    IGNORE = "ignore"
    BLOCK = "block"
    UNBLOCK = "unblock"


class RelationshipError(ValueError):
    """An action the rules refuse; ``kind`` is ``invalid`` or ``not_allowed``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True, kw_only=True)
class _Pair(Event):
    follower: int
    followee: int


@EVENTS.event("FollowRequested", version=1)
class FollowRequested(_Pair):
    """The follower asked to follow a private account."""


@EVENTS.event("UserFollowed", version=1)
class UserFollowed(_Pair):
    """The follower now follows the followee (a public account)."""


@EVENTS.event("FollowApproved", version=1)
class FollowApproved(_Pair):
    """The followee approved a request: the edge is active."""


@EVENTS.event("FollowIgnored", version=1)
class FollowIgnored(_Pair):
    """The followee turned a request down: the edge is gone."""


@EVENTS.event("UserUnfollowed", version=1)
class UserUnfollowed(_Pair):
    """The edge (active or requested) is gone: the follower left, or a block removed it
    (``reason`` is ``blocked``)."""

    reason: str = "unfollowed"


@dataclass(frozen=True, slots=True, kw_only=True)
class _FollowerSide(Event):
    followee: int
    follower: int
    source: int  # the follow-stream event this mirrors (its id: the idempotency key's root)


@EVENTS.event("FollowerRequested", version=1)
class FollowerRequested(_FollowerSide):
    """The followers side of a follow request (in the followee's shard)."""


@EVENTS.event("FollowerAdded", version=1)
class FollowerAdded(_FollowerSide):
    """The followers side of an active edge: the followee now has this follower."""


@EVENTS.event("FollowerRemoved", version=1)
class FollowerRemoved(_FollowerSide):
    """The followers side of a removed edge (unfollow, ignored request, block)."""

    reason: str = "unfollowed"


@EVENTS.event("UserBlocked", version=1)
class UserBlocked(Event):
    blocker: int
    blocked: int


@EVENTS.event("UserUnblocked", version=1)
class UserUnblocked(Event):
    blocker: int
    blocked: int


#: Event types that change a follow edge, and the edge state each leaves behind.
EDGE_AFTER: dict[str, Edge] = {
    "FollowRequested": Edge.REQUESTED,
    "UserFollowed": Edge.ACTIVE,
    "FollowApproved": Edge.ACTIVE,
    "FollowIgnored": Edge.NONE,
    "UserUnfollowed": Edge.NONE,
}
FOLLOW_TYPES = tuple(EDGE_AFTER)
#: The followers-side events (``followers:{followee}:{follower}`` streams, in the followee's
#: shard), the edge state each leaves, and the follow-stream events they mirror.
FOLLOWER_EDGE_AFTER: dict[str, Edge] = {
    "FollowerRequested": Edge.REQUESTED,
    "FollowerAdded": Edge.ACTIVE,
    "FollowerRemoved": Edge.NONE,
}
FOLLOWER_TYPES = tuple(FOLLOWER_EDGE_AFTER)
BLOCK_TYPES = ("UserBlocked", "UserUnblocked")


def follow_stream(follower: int, followee: int) -> str:
    return f"follow:{follower}:{followee}"


def followers_stream(followee: int, follower: int) -> str:
    """The followers side of one edge: lives in the followee's shard, next to the followee's
    media, so a post and a new follower are ordered by that shard's log."""
    return f"followers:{followee}:{follower}"


def mirror(event: Event, source: int) -> Event:
    """The followers-side event mirroring a follow-stream event (``source`` is its id)."""
    follower, followee = event.follower, event.followee  # type: ignore[attr-defined]
    state = EDGE_AFTER[event.TYPE]
    if state is Edge.ACTIVE:
        return FollowerAdded(followee=followee, follower=follower, source=source)
    if state is Edge.REQUESTED:
        return FollowerRequested(followee=followee, follower=follower, source=source)
    reason = getattr(event, "reason", "ignored" if event.TYPE == "FollowIgnored" else "unfollowed")
    return FollowerRemoved(followee=followee, follower=follower, source=source, reason=reason)


def block_stream(blocker: int, blocked: int) -> str:
    return f"block:{blocker}:{blocked}"


@dataclass(frozen=True)
class Pair:
    """What a decision about (me, them) needs to know."""

    me: int
    them: int
    outgoing: Edge  # my edge to them
    incoming: Edge  # their edge to me
    i_block: bool
    they_block: bool
    them_private: bool


def decide_outgoing(pair: Pair, action: Action) -> list[Event]:
    """Events on my follow stream to them (follow, unfollow), or on my block stream (block,
    unblock, with the removal of my edge to them). Their edge to me is the followers side's
    business (approve, ignore: ``decide_incoming``) or a block consumer's."""
    me, them = pair.me, pair.them
    if me == them:
        raise RelationshipError("invalid", "you cannot change a relationship with yourself")
    if action is Action.FOLLOW:
        if pair.i_block or pair.they_block:
            raise RelationshipError("not_allowed", "you cannot follow this user")
        if pair.outgoing is not Edge.NONE:
            return []
        if pair.them_private:
            return [FollowRequested(follower=me, followee=them)]
        return [UserFollowed(follower=me, followee=them)]
    if action is Action.UNFOLLOW:
        if pair.outgoing is Edge.NONE:
            return []
        return [UserUnfollowed(follower=me, followee=them)]
    if action is Action.BLOCK:
        if pair.i_block:
            return []
        events: list[Event] = [UserBlocked(blocker=me, blocked=them)]
        if pair.outgoing is not Edge.NONE:
            events.append(UserUnfollowed(follower=me, followee=them, reason="blocked"))
        return events
    if action is Action.UNBLOCK:
        return [UserUnblocked(blocker=me, blocked=them)] if pair.i_block else []
    raise ValueError(f"{action} is decided by decide_incoming")


def decide_incoming(pair: Pair, action: Action) -> list[Event]:
    """Events on their follow stream to me: approve or ignore their request."""
    me, them = pair.me, pair.them
    if me == them:
        raise RelationshipError("invalid", "you cannot change a relationship with yourself")
    if action is Action.APPROVE:
        if pair.incoming is Edge.ACTIVE:
            return []
        if pair.incoming is Edge.NONE:
            raise RelationshipError("invalid", "this user has not requested to follow you")
        if pair.i_block or pair.they_block:
            raise RelationshipError("not_allowed", "you cannot approve this user")
        return [FollowApproved(follower=them, followee=me)]
    if action is Action.IGNORE:
        if pair.incoming is not Edge.REQUESTED:
            return []
        return [FollowIgnored(follower=them, followee=me)]
    raise ValueError(f"{action} is decided by decide_outgoing")


INCOMING_ACTIONS = (Action.APPROVE, Action.IGNORE)


def outgoing_status(edge: Edge) -> str:
    """``outgoing_status`` as the Instagram API named it: follows, requested or none."""
    return {Edge.ACTIVE: "follows", Edge.REQUESTED: "requested", Edge.NONE: "none"}[edge]


def incoming_status(edge: Edge, i_block: bool) -> str:
    """``incoming_status``: followed_by, requested_by, blocked_by_you or none."""
    if i_block:
        return "blocked_by_you"
    return {Edge.ACTIVE: "followed_by", Edge.REQUESTED: "requested_by", Edge.NONE: "none"}[edge]


def apply(edge: Edge, events: list[Event]) -> Edge:
    """The edge after ``events`` (the follow stream's own fold)."""
    for e in events:
        edge = EDGE_AFTER.get(e.TYPE, edge)
    return edge


def may_view(private: bool, viewer_follows: Edge, is_self: bool) -> bool:
    """Whether a viewer may list a user's edges (and, later, media): public accounts, the
    owner, and accepted followers of a private account."""
    return is_self or not private or viewer_follows is Edge.ACTIVE
