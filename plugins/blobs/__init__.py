"""The blob store (``server.interfaces.IBlobStore``): local content-addressed files.

``open_store(config)`` returns the store under ``media.blob_dir`` (default ``VAR/blobs``).
Another backend (an object store) would implement the same interface.
"""

from __future__ import annotations

import re

from server.config import Config
from server.interfaces import IBlobStore

#: A blob name: the sha256 of its bytes in hex, and the extension of its type.
NAME = re.compile(r"^[0-9a-f]{64}\.(jpg|png|webp|mp4)$")
CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp",
                 "mp4": "video/mp4"}


def open_store(config: Config) -> IBlobStore:
    from plugins.blobs.local import LocalBlobStore

    return LocalBlobStore(config.media.blob_dir or config.var / "blobs")
