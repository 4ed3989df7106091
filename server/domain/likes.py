"""Likes: the events of a (medium, liker) stream and the decision. Pure: no I/O.

The stream ``like:{media_id}:{user_id}`` lives in the medium's shard: likers of a hot medium
never share a stream, so they never conflict; the one hot spot left is the medium's counter
row, updated last in the like's transaction.
"""

from __future__ import annotations

from server.domain.events import EVENTS, Event


@EVENTS.event("MediaLiked", version=1)
class MediaLiked(Event):
    media_id: int
    media_owner: int
    user_id: int


@EVENTS.event("MediaUnliked", version=1)
class MediaUnliked(Event):
    media_id: int
    media_owner: int
    user_id: int


LIKE_TYPES = ("MediaLiked", "MediaUnliked")


def like_stream(media_id: int, user_id: int) -> str:
    return f"like:{media_id}:{user_id}"


def decide_like(liked: bool, like: bool, media_id: int, media_owner: int,
                user_id: int) -> list[Event]:
    """The events of a like (``like``) or an unlike given whether the user likes the medium
    now: none when nothing changes (a repeated like is not an error, as in the v1 API)."""
    if like == liked:
        return []
    cls = MediaLiked if like else MediaUnliked
    return [cls(media_id=media_id, media_owner=media_owner, user_id=user_id)]
