"""Accounts: the sign-up decision, username rules, and where a user lives. Pure: no I/O.

A new user's logical shard is derived from the username (``username_shard``), and the
username claim lives in that shard, so uniqueness is a local unique index and lookups by
username hash to one shard. The user id then comes from that shard's ``next_id()``, so
``shard_of(user_id)`` routes every later read.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from server.domain.events import EVENTS, Event

USERNAME = re.compile(r"^[A-Za-z0-9._]{1,30}$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
PASSWORD_MIN = 8
PASSWORD_MAX = 1024  # bytes: argon2 hashes any length, but a bound keeps the work bounded
FULL_NAME_MAX = 100
BIO_MAX = 300
WEBSITE_MAX = 300
EMAIL_MAX = 254


class AccountError(ValueError):
    """A sign-up the rules refuse; ``field`` names the offending parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class UsernameTaken(AccountError):
    """Someone already has this username (compared case-insensitively)."""

    def __init__(self, username: str) -> None:
        super().__init__("username", f"the username {username!r} is taken")


@EVENTS.event("UserRegistered", version=1, secret=("password_hash",))
class UserRegistered(Event):
    """A new account. ``password_hash`` is an argon2id hash (never the password): the log is
    as protected as the users table, and replay needs it to rebuild that table."""

    user_id: int
    username: str
    full_name: str
    bio: str
    website: str
    email: str
    password_hash: str
    is_private: bool


@EVENTS.event("AccountPrivacyChanged", version=1)
class AccountPrivacyChanged(Event):
    """The owner made the account private (follows become requests; its media are seen by
    approved followers only and are no longer found by strangers' searches) or public."""

    user_id: int
    is_private: bool


@dataclass(frozen=True)
class Register:
    """The sign-up command (the password already hashed by the caller)."""

    username: str
    password_hash: str
    full_name: str
    bio: str = ""
    website: str = ""
    email: str = ""
    is_private: bool = False


def normalize(username: str) -> str:
    """The form usernames are compared and indexed in."""
    return username.lower()


def username_shard(username: str, shard_count: int) -> int:
    """The logical shard of a username: the first 8 bytes of sha256 of its lower-case form,
    modulo the shard count (fixed, unlike Python's ``hash()``)."""
    digest = hashlib.sha256(normalize(username).encode()).digest()
    return int.from_bytes(digest[:8], "big") % shard_count


def check_username(username: str) -> None:
    """AccountError unless 1-30 letters, digits, periods and underscores."""
    if not USERNAME.fullmatch(username):
        raise AccountError(
            "username", "username must be 1-30 letters, digits, periods or underscores"
        )


def check_password(password: str) -> None:
    """AccountError unless the password is 8 to 1,024 bytes long."""
    size = len(password.encode())
    if size < PASSWORD_MIN:
        raise AccountError("password", f"password must be at least {PASSWORD_MIN} characters")
    if size > PASSWORD_MAX:
        raise AccountError("password", f"password must be at most {PASSWORD_MAX} bytes")


def check_profile(full_name: str, bio: str, website: str, email: str) -> None:
    """AccountError naming the first profile field that breaks its rule."""
    for field, value, limit in (
        ("full_name", full_name, FULL_NAME_MAX),
        ("bio", bio, BIO_MAX),
        ("website", website, WEBSITE_MAX),
        ("email", email, EMAIL_MAX),
    ):
        if len(value) > limit:
            raise AccountError(field, f"{field} must be at most {limit} characters")
        if any(ord(c) < 32 and c not in "\n\t" for c in value):
            raise AccountError(field, f"{field} must not contain control characters")
    if website and not re.fullmatch(r"https?://[^\s/]+\S*", website):
        raise AccountError("website", "website must be an http:// or https:// URL")
    if email and not EMAIL.fullmatch(email):
        raise AccountError("email", "email is not an email address")


def decide_register(taken_by: int | None, command: Register, user_id: int) -> list[Event]:
    """The events of a sign-up: refused when the username's claim already has an owner."""
    check_username(command.username)
    check_profile(command.full_name, command.bio, command.website, command.email)
    if taken_by is not None:
        raise UsernameTaken(command.username)
    return [
        UserRegistered(
            user_id=user_id,
            username=command.username,
            full_name=command.full_name,
            bio=command.bio,
            website=command.website,
            email=command.email,
            password_hash=command.password_hash,
            is_private=command.is_private,
        )
    ]


def decide_privacy(user_id: int, is_private_now: bool, wanted: bool) -> list[Event]:
    """The events of switching an account's privacy: none when it already is as wanted (a
    repeat changes nothing and appends nothing)."""
    if is_private_now == wanted:
        return []
    return [AccountPrivacyChanged(user_id=user_id, is_private=wanted)]


def user_stream(user_id: int) -> str:
    """The stream of a user's account events."""
    return f"user:{user_id}"
