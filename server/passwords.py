"""Password hashing with argon2id (argon2-cffi), with parameters from ``accounts.*``.

Defaults are RFC 9106's second recommended profile (t=3, m=64 MiB, p=4): about 0.1 s of two
cores per hash here, by design the dominant cost of a sign-up or a password grant. The
parameters are stored in each hash, so changing them affects new hashes only.
"""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from server.config import AccountsConfig


@cache
def hasher(cfg: AccountsConfig) -> PasswordHasher:
    return PasswordHasher(time_cost=cfg.argon2_time_cost, memory_cost=cfg.argon2_memory_kib,
                          parallelism=cfg.argon2_parallelism)


def hash_password(cfg: AccountsConfig, password: str) -> str:
    return hasher(cfg).hash(password)


def verify_password(cfg: AccountsConfig, stored: str, password: str) -> bool:
    """Whether ``password`` matches the stored hash (never raises for a mismatch)."""
    try:
        return bool(hasher(cfg).verify(stored, password))
    except (VerificationError, InvalidHashError):
        return False
