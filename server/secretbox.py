"""Secrets at rest: authenticated encryption with keys derived from the master secret.

``SecretBox(master, purpose)`` derives a 256-bit key with HKDF-SHA256 (``purpose`` as the
info, so each use has its own key) and seals with AES-256-GCM (a random 96-bit nonce before
the ciphertext). Used for what must be read back, not merely checked: app client secrets
(HMAC of signed requests needs them), and later share-out credentials. Changing
``secrets.key`` makes sealed values unreadable: rotate by re-sealing.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12


class SecretBox:
    """Seals and opens small secrets for one purpose."""

    def __init__(self, master: str, purpose: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=f"shutterlog {purpose}".encode()).derive(master.encode())
        self._aead = AESGCM(key)
        self._aad = purpose.encode()

    def seal(self, plaintext: bytes) -> bytes:
        """Nonce followed by the ciphertext and its tag."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, self._aad)

    def open(self, box: bytes) -> bytes:
        """The plaintext; ValueError if the box was altered or sealed with another key."""
        try:
            return self._aead.decrypt(box[:NONCE_BYTES], box[NONCE_BYTES:], self._aad)
        except (InvalidTag, ValueError):
            raise ValueError("cannot open the sealed secret (altered, or another key)") from None
