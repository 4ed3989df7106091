"""Which events notify whom, what the notification says, and per-user settings. Pure: no I/O.

``plan`` turns one event into ``Pending`` causes, each waiting in a collapse group of its
recipient: likes of one medium (``like:{media}``), comments on one medium
(``comment:{media}``), a mention (``mention:{comment or medium}``), new followers
(``follow``), follow requests (``request``), approvals of the recipient's requests
(``approval``). Nobody is notified about their own doing. When the group's window ends, its
causes still standing (``Pending.check`` says what must still be true: the like exists, the
comment and the medium are not deleted, the follow is still there) from actors the recipient
does not block, of kinds the recipient has not switched off, become one notification:
``text`` ("alice and 12 others liked your photo").

Settings: ``NotificationSettingsChanged`` on ``notifications:{user}`` (the user's shard)
carries the whole set of kinds switched off, so the inline projection is an absolute write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from server.domain import activity as act
from server.domain.comments import CommentAdded
from server.domain.devices import Device
from server.domain.events import EVENTS, Event
from server.domain.graph import FollowApproved, FollowRequested, UserFollowed
from server.domain.likes import MediaLiked
from server.domain.media import MediaPosted
from server.domain.push import Notification, Platform, collapse_id, notification_id

LIKES, COMMENTS, MENTIONS = "likes", "comments", "mentions"
FOLLOWS, REQUESTS, APPROVALS = "follows", "follow_requests", "follow_approvals"
#: Every kind a user can switch on or off (all on by default).
KINDS = (LIKES, COMMENTS, MENTIONS, FOLLOWS, REQUESTS, APPROVALS)
#: The event types ``plan`` reads.
TYPES = ("MediaLiked", "CommentAdded", "MediaPosted", "UserFollowed", "FollowRequested",
         "FollowApproved")
#: What a cause needs to still be true at send time (see ``Pending.check``).
LIKE_EXISTS, COMMENT_EXISTS, MEDIUM_EXISTS = "like", "comment", "medium"
FOLLOWING, REQUESTING, APPROVED = "following", "requesting", "approved"


@EVENTS.event("NotificationSettingsChanged", version=1)
class NotificationSettingsChanged(Event):
    """The kinds of push notification ``user_id`` has switched off (the whole set)."""

    user_id: int
    disabled: tuple[str, ...]


def settings_stream(user_id: int) -> str:
    return f"notifications:{user_id}"


def settings_json(disabled: frozenset[str]) -> dict[str, bool]:
    """Every kind, true when it is on."""
    return {kind: kind not in disabled for kind in KINDS}


def decide_settings(user_id: int, disabled: frozenset[str],
                    changes: Mapping[str, bool]) -> list[Event]:
    """The event switching ``changes`` (kind: on) given the kinds now off; none when nothing
    changes. Unknown kinds are the caller's to refuse (the API names them)."""
    after = (disabled - {k for k, on in changes.items() if on}) | {
        k for k, on in changes.items() if not on}
    if after == disabled:
        return []
    return [NotificationSettingsChanged(user_id=user_id,
                                        disabled=tuple(k for k in KINDS if k in after))]


@dataclass(frozen=True)
class Pending:
    """One cause of a notification, waiting in its recipient's collapse group ``group``.

    ``key`` is unique per cause (the activity feed's item key), so adding a cause twice
    keeps one. ``check`` names what must still hold when it is sent, about ``subject``: a
    like (medium ``media_id``, liker ``actor``), a comment, a medium, or the follow edge
    between ``actor`` and the recipient.
    """

    recipient: int
    kind: str
    group: str
    key: str
    actor: int
    event_id: int
    created_ms: int
    check: str
    media_id: int = 0
    comment_id: int = 0
    text: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Pending:
        return cls(**d)


def plan(data: Event, event_id: int, created_ms: int,
         mentioned: Sequence[int] = ()) -> list[Pending]:
    """The causes ``data`` puts in collapse groups; ``mentioned`` are the ids of the users
    its mentions name (resolved by the caller). Never one to the actor itself."""

    def cause(recipient: int, kind: str, group: str, key: str, actor: int, check: str,
              **subject: Any) -> Pending:
        return Pending(recipient, kind, group, key, actor, event_id, created_ms, check,
                       **subject)

    out: list[Pending] = []
    if isinstance(data, MediaLiked):
        out.append(cause(data.media_owner, LIKES, f"like:{data.media_id}",
                         act.like_key(data.media_id, data.user_id), data.user_id, LIKE_EXISTS,
                         media_id=data.media_id))
    elif isinstance(data, CommentAdded):
        out.append(cause(data.media_owner, COMMENTS, f"comment:{data.media_id}",
                         act.comment_key(data.comment_id), data.author, COMMENT_EXISTS,
                         media_id=data.media_id, comment_id=data.comment_id, text=data.text))
        out += [cause(user, MENTIONS, f"mention:{data.comment_id}",
                      act.mention_key(data.comment_id), data.author, COMMENT_EXISTS,
                      media_id=data.media_id, comment_id=data.comment_id, text=data.text)
                for user in mentioned]
    elif isinstance(data, MediaPosted):
        out += [cause(user, MENTIONS, f"mention:{data.media_id}",
                      act.mention_key(data.media_id), data.owner, MEDIUM_EXISTS,
                      media_id=data.media_id, text=data.caption)
                for user in mentioned]
    elif isinstance(data, UserFollowed):
        out.append(cause(data.followee, FOLLOWS, "follow", act.follow_key(data.follower),
                         data.follower, FOLLOWING))
    elif isinstance(data, FollowRequested):
        out.append(cause(data.followee, REQUESTS, "request", act.request_key(data.follower),
                         data.follower, REQUESTING))
    elif isinstance(data, FollowApproved):
        out.append(cause(data.follower, APPROVALS, "approval", f"a:{data.followee}",
                         data.followee, APPROVED))
    return [p for p in out if p.recipient != p.actor]


def deliverable(causes: Sequence[Pending], disabled: frozenset[str], blocked: frozenset[int],
                standing: Callable[[Pending], bool]) -> list[Pending]:
    """The causes still worth a notification, newest first: of kinds switched on, from
    actors the recipient does not block, whose subject still stands, one per actor."""
    out: list[Pending] = []
    actors: set[int] = set()
    for p in sorted(causes, key=lambda p: p.event_id, reverse=True):
        if p.kind in disabled or p.actor in blocked or p.actor in actors or not standing(p):
            continue
        actors.add(p.actor)
        out.append(p)
    return out


_PLURAL = {
    COMMENTS: "commented on your photo",
    MENTIONS: "mentioned you",
    FOLLOWS: "started following you",
    REQUESTS: "requested to follow you",
    APPROVALS: "accepted your follow request",
}
_ACTIVITY_KIND = {LIKES: act.LIKE, COMMENTS: act.COMMENT, MENTIONS: act.MENTION,
                  FOLLOWS: act.FOLLOW, REQUESTS: act.REQUEST}


def text(causes: Sequence[Pending], name: Callable[[int], str]) -> str:
    """What the notification of ``causes`` (newest first, one kind) says: the activity
    feed's words for one cause ("alice commented: nice"), "alice and 12 others liked your
    photo" for several."""
    first = causes[0]
    actors = [p.actor for p in causes]
    if first.kind == LIKES or (len(causes) == 1 and first.kind in _ACTIVITY_KIND):
        group = act.Group(_ACTIVITY_KIND[first.kind], actors, first.created_ms,
                          first.media_id or None, first.comment_id or None, first.text)
        return act.describe(group, name)
    return f"{act.who(actors, name)} {_PLURAL[first.kind]}"


def notification(device: Device, recipient: int, group: str, opened_by: int,
                 causes: Sequence[Pending], body: str) -> Notification:
    """The notification of ``causes`` (collapse group ``group`` of ``recipient``, whose
    window the event ``opened_by`` opened) to ``device``. Its id is the same however often
    it is computed: the dedupe record's key and APNs' ``apns-id``."""
    first = causes[0]
    data = {"kind": first.kind, "user_id": str(first.actor), "count": str(len(causes))}
    if first.media_id:
        data["media_id"] = str(first.media_id)
    platform: Platform = "ios" if device.platform == "ios" else "android"
    return Notification(
        device.token, platform, notification_id(f"{recipient}:{group}:{opened_by}",
                                                device.token),
        body=body, collapse_key=collapse_id(group), topic=device.app,
        sound="default", data=data)
