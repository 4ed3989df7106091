"""Username rules, where usernames live, and the sign-up decision."""

from __future__ import annotations

import hashlib

import pytest

from server.config import AccountsConfig
from server.domain.accounts import (
    AccountError,
    Register,
    UsernameTaken,
    UserRegistered,
    check_password,
    check_profile,
    check_username,
    decide_register,
    username_shard,
)
from server.passwords import hash_password, verify_password


@pytest.mark.parametrize("name", ["a", "A.b_c", "x" * 30, "user.name_9", "_", "..."])
def test_valid_usernames(name: str) -> None:
    """1-30 letters, digits, periods and underscores pass."""
    check_username(name)


@pytest.mark.parametrize("name", ["", "x" * 31, "with space", "dash-ed", "émile", "a@b", "a\n"])
def test_invalid_usernames(name: str) -> None:
    """Anything else is refused, naming the username field."""
    with pytest.raises(AccountError) as e:
        check_username(name)
    assert e.value.field == "username"


def test_username_shard_is_stable_and_case_insensitive() -> None:
    """The shard is sha256-based (fixed across processes and releases) and ignores case."""
    digest = hashlib.sha256(b"alice").digest()
    assert username_shard("Alice", 16) == username_shard("alice", 16) == \
        int.from_bytes(digest[:8], "big") % 16 == 15
    assert (username_shard("bob", 16), username_shard("BOB", 8192)) == (10, 1754)
    assert {username_shard(f"user{i}", 16) for i in range(200)} == set(range(16))


def test_passwords_and_profile_rules() -> None:
    """Short and huge passwords, bad websites and emails are refused by field."""
    check_password("eight ch")
    for bad in ("short", "x" * 1025):
        with pytest.raises(AccountError, match="password"):
            check_password(bad)
    check_profile("Name", "bio", "https://x.example/p", "a@b.example")
    for args, field in ((("N", "", "ftp://x", ""), "website"),
                        (("N", "", "", "nope"), "email"),
                        (("N" * 101, "", "", ""), "full_name"),
                        (("N", "b\x07", "", ""), "bio")):
        with pytest.raises(AccountError) as e:
            check_profile(*args)
        assert e.value.field == field


def test_decide_register() -> None:
    """A free username yields one UserRegistered; a claimed one is UsernameTaken."""
    cmd = Register("Carol", "$argon2id$hash", "Carol C", is_private=True)
    [event] = decide_register(None, cmd, 42)
    assert isinstance(event, UserRegistered)
    assert (event.user_id, event.username, event.is_private) == (42, "Carol", True)
    with pytest.raises(UsernameTaken):
        decide_register(7, cmd, 43)


def test_argon2_hashes_with_the_configured_parameters() -> None:
    """The default parameters are RFC 9106's profile (argon2id, 64 MiB, t=3, p=4) and a hash
    verifies only its own password."""
    cfg = AccountsConfig()
    stored = hash_password(cfg, "a long password")
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert verify_password(cfg, stored, "a long password")
    assert not verify_password(cfg, stored, "another password")
    assert not verify_password(cfg, "not a hash", "a long password")
