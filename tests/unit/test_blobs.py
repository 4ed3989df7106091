"""The local blob store: content addresses, atomic writes, no traversal, GC listings."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from zope.interface.verify import verifyObject

from plugins.blobs.local import LocalBlobStore
from server.interfaces import BlobWriter, IBlobStore


def test_same_bytes_are_stored_once_at_their_address(tmp_path: Path) -> None:
    """A blob's name is its sha256 and extension; storing the same bytes again keeps one
    file and refreshes its time; the temporary files are gone."""
    store = LocalBlobStore(tmp_path)
    assert verifyObject(IBlobStore, store)
    name = store.put(b"hello", "jpg")
    assert name == hashlib.sha256(b"hello").hexdigest() + ".jpg"
    path = store.path(name)
    assert path is not None and path.read_bytes() == b"hello"
    assert path.relative_to(tmp_path).parts[:2] == (name[:2], name[2:4])
    old = time.time() - 7200
    os.utime(path, (old, old))
    assert store.put(b"hello", "jpg") == name
    assert path.stat().st_mtime > old + 3600
    assert not list((tmp_path / "tmp").iterdir())


def test_writer_commit_and_discard(tmp_path: Path) -> None:
    """A writer streams into a temporary file; discard leaves nothing, commit moves it."""
    store = LocalBlobStore(tmp_path)
    w = store.writer()
    assert verifyObject(BlobWriter, w)
    w.write(b"ab")
    w.write(b"cd")
    assert w.size == 4 and w.file.read_bytes() == b"abcd"
    with w.stream() as f:
        assert f.read() == b"abcd"
    w.discard()
    assert not list((tmp_path / "tmp").iterdir())
    w = store.writer()
    w.write(b"abcd")
    name = w.commit("png")
    assert store.path(name) is not None and not list((tmp_path / "tmp").iterdir())


def test_names_that_are_not_blob_names_find_nothing(tmp_path: Path) -> None:
    """Traversal and foreign names are refused before the file system is touched."""
    store = LocalBlobStore(tmp_path)
    (tmp_path / "secret.txt").write_text("x")
    for bad in ("../secret.txt", "secret.txt", "0" * 64 + ".exe", "0" * 63 + ".jpg",
                "/etc/passwd", "A" * 64 + ".jpg"):
        assert store.path(bad) is None and not store.delete(bad)


def test_listing_spares_recent_blobs_and_clears_leftovers(tmp_path: Path) -> None:
    """GC candidates are blobs older than the grace; stale temporary files are removed."""
    store = LocalBlobStore(tmp_path)
    old_name, new_name = store.put(b"old", "jpg"), store.put(b"new", "mp4")
    old = time.time() - 7200
    old_path = store.path(old_name)
    assert old_path is not None
    os.utime(old_path, (old, old))
    leftover = tmp_path / "tmp" / "crashed.part"
    leftover.write_bytes(b"x")
    os.utime(leftover, (old, old))
    assert list(store.listing(3600)) == [old_name]
    assert not leftover.exists() and new_name not in list(store.listing(3600))
