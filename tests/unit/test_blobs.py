"""The local blob store: content addresses, atomic writes, no traversal, GC listings."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

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
        assert store.path(bad) is None and not store.delete(bad, 0)


def _age(path: Path | None) -> None:
    assert path is not None
    old = time.time() - 7200
    os.utime(path, (old, old))


def test_listing_spares_recent_blobs_and_leftovers_go_apart(tmp_path: Path) -> None:
    """GC candidates are blobs older than the grace; listing removes nothing, and
    ``remove_leftovers`` removes stale temporary files only."""
    store = LocalBlobStore(tmp_path)
    old_name, new_name = store.put(b"old", "jpg"), store.put(b"new", "mp4")
    _age(store.path(old_name))
    leftover, recent = tmp_path / "tmp" / "crashed.part", tmp_path / "tmp" / "writing.part"
    leftover.write_bytes(b"x")
    recent.write_bytes(b"y")
    _age(leftover)
    assert list(store.listing(3600)) == [old_name]
    assert leftover.exists() and new_name not in list(store.listing(3600))
    assert store.remove_leftovers() == 1
    assert not leftover.exists() and recent.exists()


def test_delete_spares_a_blob_re_stored_since_it_was_listed(tmp_path: Path) -> None:
    """The same bytes stored again after the listing refresh the blob's time: ``delete``
    reads it again and keeps the blob; an old one goes."""
    store = LocalBlobStore(tmp_path)
    name = store.put(b"picture", "jpg")
    _age(store.path(name))
    assert list(store.listing(3600)) == [name]
    store.put(b"picture", "jpg")  # an upload re-using the bytes
    assert not store.delete(name, 3600) and store.path(name) is not None
    _age(store.path(name))
    assert store.delete(name, 3600) and store.path(name) is None
    assert not store.delete(name, 3600)
    assert not list((tmp_path / "tmp").iterdir())


def test_a_re_store_racing_the_removal_stores_its_copy(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An upload finds the blob, then garbage collection removes it before the upload
    refreshes its time: the upload's own copy takes its place."""
    store = LocalBlobStore(tmp_path)
    name = store.put(b"picture", "jpg")
    _age(store.path(name))
    real_utime = os.utime

    def collected_first(path: Path, *args: object) -> None:
        assert store.delete(name, 3600)  # GC, between the upload's look and its refresh
        real_utime(path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr("plugins.blobs.local.os.utime", collected_first)
    assert store.put(b"picture", "jpg") == name
    found = store.path(name)
    assert found is not None and found.read_bytes() == b"picture"
