"""Encryption at rest for linked accounts' credentials: Fernet with key rotation.

Fernet (from ``cryptography``) is AES-128-CBC plus HMAC-SHA256 with a timestamp, in one
URL-safe token; ``MultiFernet`` over several keys encrypts with the first and decrypts with
any. The keys come from ``secrets.encryption_keys``, newest first; the entry ``master`` is the
key derived from ``secrets.key`` with HKDF-SHA256 (and is what an empty list means), so a
fresh installation needs no extra secret.

Rotation, with no downtime:

1. ``shutterlog secrets genkey`` prints a new key K2.
2. Put it first: ``encryption_keys = ["K2", "master"]`` (or ``["K2", "K1"]``) and restart
   every process. New credentials are encrypted with K2; old ones still decrypt.
3. Re-encrypt what is stored: ``shutterlog secrets rotate`` (``server/credentials.py``)
   re-seals every linked account's credentials with ``CredentialCipher.rotate``.
4. Drop the old key from the list.

This protects what is written from now on. The older ``AccountLinked`` events stay in the
append-only log sealed under the old key, so after a LEAKED key, also revoke the linked
credentials at the services and link the accounts again.

Tokens never appear in logs, and neither do keys: ``config show`` masks the setting.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

if TYPE_CHECKING:
    from server.config import Config

MASTER = "master"
_HKDF_INFO = b"shutterlog credentials encryption v1"
_UNDECRYPTABLE = "credentials cannot be decrypted with the configured keys"


class DecryptionError(ValueError):
    """A token no configured key decrypts (tampered, or its key was dropped too soon)."""


def check_key(entry: str) -> None:
    """ValueError unless ``entry`` is ``master`` or a Fernet key (the message never shows it)."""
    if entry == MASTER:
        return
    try:
        raw = base64.urlsafe_b64decode(entry.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ValueError(
            "an entry is neither 'master' nor a Fernet key (32 url-safe base64 bytes; "
            "make one with 'shutterlog secrets genkey')"
        )


def derive_key(master_secret: str) -> bytes:
    """The Fernet key derived from the master secret (HKDF-SHA256, fixed context)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(master_secret.encode()))


def generate_key() -> str:
    """A new random Fernet key, for ``secrets.encryption_keys``."""
    return Fernet.generate_key().decode("ascii")


class CredentialCipher:
    """Encrypts and decrypts credential blobs with the configured keys (first one encrypts)."""

    def __init__(self, keys: Iterable[bytes]) -> None:
        fernets = [Fernet(k) for k in keys]
        if not fernets:
            raise ValueError("at least one encryption key is needed")
        self._newest = fernets[0]
        self._fernet = MultiFernet(fernets)

    @classmethod
    def from_config(cls, config: Config) -> CredentialCipher:
        entries = config.secrets.encryption_keys or (MASTER,)
        return cls(
            derive_key(config.secrets.key) if e == MASTER else e.encode("ascii") for e in entries
        )

    def encrypt(self, plaintext: bytes) -> str:
        """A Fernet token (ASCII) of ``plaintext`` under the newest key."""
        return self._fernet.encrypt(plaintext).decode("ascii")

    def decrypt(self, token: str) -> bytes:
        """The plaintext of ``token``; DecryptionError if no configured key opens it."""
        try:
            return self._fernet.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise DecryptionError(_UNDECRYPTABLE) from None

    def is_current(self, token: str) -> bool:
        """Whether ``token`` is encrypted under the newest key (nothing to rotate)."""
        try:
            self._newest.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            return False
        return True

    def rotate(self, token: str) -> str:
        """``token`` re-encrypted under the newest key (its original timestamp kept)."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeEncodeError):
            raise DecryptionError(_UNDECRYPTABLE) from None
