"""Hashtags and mentions in captions and comments. Pure: no I/O.

A hashtag is ``#`` followed by letters, digits or underscores (Unicode letters too), not
preceded by a word character or another ``#`` or ``&`` (so ``a#b`` and ``&#123;`` are not
tags), at most ``MAX_TAG`` characters; tags compare case-insensitively and are stored in
their lower-case form. A mention is ``@username`` with the username rules of accounts.
"""

from __future__ import annotations

import re

MAX_TAG = 100
_TAG = re.compile(rf"(?<![\w#&])#(\w{{1,{MAX_TAG}}})(?!\w)")
_MENTION = re.compile(r"(?<![\w@.])@([A-Za-z0-9._]{1,30})(?![A-Za-z0-9_])")
TAG_NAME = re.compile(rf"\w{{1,{MAX_TAG}}}")  # whole names only: ``fullmatch``


def normalize_tag(name: str) -> str:
    """The stored form of a tag: lower case (``casefold`` would turn ß into ss: not wanted).
    "İ" (U+0130) is the one letter whose lower case adds a character that is not a word
    character ("i" and a combining dot above): it lowers to "i", so that the stored form is
    a valid tag name too."""
    return name.replace("\u0130", "I").lower()


def hashtags(text: str) -> tuple[str, ...]:
    """The distinct hashtags of ``text``, lower case, in order of first appearance."""
    seen: dict[str, None] = {}
    for m in _TAG.finditer(text):
        tag = normalize_tag(m.group(1))
        if not tag.isdigit():  # "#1" is a number, not a tag, as Instagram treated it
            seen.setdefault(tag)
    return tuple(seen)


def count_hashtags(text: str) -> int:
    """How many hashtags ``text`` holds (repeats included: the comment rule counts them)."""
    return sum(1 for m in _TAG.finditer(text) if not m.group(1).isdigit())


def mentions(text: str) -> tuple[str, ...]:
    """The distinct usernames mentioned with ``@name``, in order, as written (a trailing
    period ends a sentence, not a username)."""
    seen: dict[str, None] = {}
    for m in _MENTION.finditer(text):
        name = m.group(1).rstrip(".")
        if name:
            seen.setdefault(name.lower())
    return tuple(seen)


def valid_tag_name(name: str) -> bool:
    """Whether ``name`` (without ``#``) can be a tag."""
    return TAG_NAME.fullmatch(name) is not None and not name.isdigit()
