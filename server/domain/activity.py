"""The activity feed: what happened to a user's things, and how items read. Pure: no I/O.

Items are stored one per cause (a like, a comment, a mention, a follow, a follow request),
under a key that makes re-applying an event a no-op and lets its undoing remove it (an
unlike removes the like's item). Likes are aggregated when a page is read: every like of the
same medium within the page becomes one group, "alice and 12 others liked your photo".
Read-time aggregation keeps the stored items independent (idempotent, removable one by one)
at the cost of a group that straddles two pages appearing on both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from server.domain.links import SERVICE_NAMES

LIKE, COMMENT, MENTION, FOLLOW, REQUEST = "like", "comment", "mention", "follow", "request"
#: A linked account ended because its service refused the credentials (``text``: service).
UNLINKED = "unlinked"


@dataclass(frozen=True)
class Item:
    """One stored activity item; ``key`` is unique per cause."""

    key: str
    kind: str
    actor: int
    created_ms: int
    media_id: int | None = None
    comment_id: int | None = None
    text: str = ""


def like_key(media_id: int, liker: int) -> str:
    return f"l:{media_id}:{liker}"


def comment_key(comment_id: int) -> str:
    return f"c:{comment_id}"


def mention_key(source_id: int) -> str:
    return f"m:{source_id}"


def follow_key(follower: int) -> str:
    return f"f:{follower}"


def request_key(follower: int) -> str:
    return f"r:{follower}"


def unlinked_key(event_id: int) -> str:
    return f"u:{event_id}"


@dataclass
class Group:
    """What a page shows: one item, or several likes of one medium."""

    kind: str
    actors: list[int]
    created_ms: int
    media_id: int | None
    comment_id: int | None
    text: str
    keys: list[str] = field(default_factory=list)


def aggregate(items: list[Item], limit: int) -> tuple[list[Group], int]:
    """Groups of up to ``limit`` from items newest first: likes of one medium join the
    group of the first (newest) of them. Returns the groups and how many items they used
    (the next page starts after those)."""
    groups: list[Group] = []
    likes: dict[int, Group] = {}
    used = 0
    for item in items:
        if item.kind == LIKE and item.media_id in likes:
            group = likes[item.media_id]
            if item.actor not in group.actors:
                group.actors.append(item.actor)
            group.keys.append(item.key)
            used += 1
            continue
        if len(groups) == limit:
            break
        group = Group(item.kind, [item.actor], item.created_ms, item.media_id,
                      item.comment_id, item.text, [item.key])
        if item.kind == LIKE and item.media_id is not None:
            likes[item.media_id] = group
        groups.append(group)
        used += 1
    return groups, used


def who(actors: list[int], name: Callable[[int], str]) -> str:
    """Who did it: "alice", "alice and bob", "alice and 12 others" (the first is named)."""
    first = name(actors[0])
    others = len(actors) - 1
    if others == 0:
        return first
    if others == 1:
        return f"{first} and {name(actors[1])}"
    return f"{first} and {others} others"


def describe(group: Group, name: Callable[[int], str], what: str = "photo") -> str:
    """The text of a group: "alice liked your photo", "alice and bob liked your photo",
    "alice and 12 others liked your photo", "alice commented: nice", ..."""
    first = name(group.actors[0])
    if group.kind == LIKE:
        return f"{who(group.actors, name)} liked your {what}"
    if group.kind == COMMENT:
        return f"{first} commented: {group.text}"
    if group.kind == MENTION:
        return f"{first} mentioned you: {group.text}"
    if group.kind == FOLLOW:
        return f"{first} started following you"
    if group.kind == REQUEST:
        return f"{first} requested to follow you"
    if group.kind == UNLINKED:
        service = SERVICE_NAMES.get(group.text, group.text)
        return (f"Your {service} account was unlinked: {service} refused its credentials. "
                "Link it again to keep sharing there.")
    raise ValueError(f"unknown activity kind {group.kind!r}")
