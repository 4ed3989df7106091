"""Comments: the events of a comment's stream and the rules Instagram's API enforced. Pure.

A comment's id comes from its medium's shard's ``next_id()``; its stream ``comment:{id}``
lives in that shard, so the medium's comment count is local. Rules (July 2014 API
guidelines): at most 300 characters, at most 4 hashtags, at most 1 URL, not all capital
letters; each refusal has its own ``error_type``.
"""

from __future__ import annotations

import re

from server.domain import tags as tagging
from server.domain.events import EVENTS, Event

MAX_LENGTH = 300
MAX_TAGS = 4
MAX_URLS = 1
_URL = re.compile(
    r"(?i)\b(?:https?://|www\.)[^\s]+|\b[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*\."
    r"(?:com|net|org|io|co|me|ly|info|biz|app|dev|gl|tv|us|uk|de|fr)\b(?:/[^\s]*)?"
)


class CommentError(ValueError):
    """A refused comment; ``error_type`` names the broken rule as the v1 API did."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


@EVENTS.event("CommentAdded", version=1)
class CommentAdded(Event):
    """``tags`` are the comment's hashtags when its author owns the medium (only the owner's
    comments tag a medium); ``mentions`` the usernames it mentions."""

    comment_id: int
    media_id: int
    media_owner: int
    author: int
    text: str
    tags: tuple[str, ...]
    mentions: tuple[str, ...]


@EVENTS.event("CommentDeleted", version=1)
class CommentDeleted(Event):
    """``by`` deleted the comment: its author or the medium's owner."""

    comment_id: int
    media_id: int
    media_owner: int
    author: int
    by: int


COMMENT_TYPES = ("CommentAdded", "CommentDeleted")


def comment_stream(comment_id: int) -> str:
    return f"comment:{comment_id}"


def count_urls(text: str) -> int:
    return len(_URL.findall(text))


def check_comment(text: str) -> str:
    """The comment's text, stripped, if it keeps the rules; CommentError otherwise."""
    text = text.strip()
    if not text:
        raise CommentError("APIInvalidParametersError", "text is required")
    if any(ord(c) < 32 and c not in "\n\t" for c in text):
        raise CommentError("APIInvalidParametersError", "text must not contain control "
                           "characters")
    if len(text) > MAX_LENGTH:
        raise CommentError("APICommentTooLongError",
                           f"Your comment is too long: at most {MAX_LENGTH} characters.")
    if tagging.count_hashtags(text) > MAX_TAGS:
        raise CommentError("APICommentTooManyTagsError",
                           f"Your comment has too many hashtags: at most {MAX_TAGS}.")
    if count_urls(text) > MAX_URLS:
        raise CommentError("APICommentTooManyURLsError",
                           f"Your comment has too many URLs: at most {MAX_URLS}.")
    if all_caps(text):
        raise CommentError("APICommentAllCapsError",
                           "Your comment cannot consist of all capital letters.")
    return text


def all_caps(text: str) -> bool:
    """Whether the text's letters (two or more, once hashtags, mentions and URLs are set
    aside) are all capitals."""
    plain = _URL.sub(" ", text)
    plain = re.sub(r"[#@]\w+", " ", plain)
    letters = [c for c in plain if c.isalpha() and c.lower() != c.upper()]
    return len(letters) >= 2 and all(c.isupper() for c in letters)


def may_delete(by: int, author: int, media_owner: int) -> bool:
    """A comment may be deleted by its author or by the medium's owner."""
    return by in (author, media_owner)


def comment_tags(text: str, author: int, media_owner: int) -> tuple[str, ...]:
    """The tags a comment gives its medium: its hashtags if the owner wrote it, else none."""
    return tagging.hashtags(text) if author == media_owner else ()
