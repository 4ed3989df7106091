"""``shutterlog blobs gc``: blobs no medium references (a crash between the blob and the
event) and deleted media's blobs go after the grace period; live media's stay."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from plugins.blobs import open_store
from plugins.blobs.local import LocalBlobStore
from server.blobgc import collect
from server.db import Txn
from server.domain.ids import shard_of
from server.domain.log import NewEvent
from server.domain.media import MediaDeleted, media_stream
from server.store.media import referenced
from tests.helpers import REPO, scrubbed_env
from tests.integration.conftest import Env
from tests.integration.mediakit import post_direct


def age(store: object, name: str) -> None:
    path = store.path(name)  # type: ignore[attr-defined]
    assert path is not None
    old = time.time() - 7200
    os.utime(path, (old, old))


def an_owner(env: Env) -> int:
    """A user id (of shard 3) to own media appended straight to the log."""
    row = env.router.database(3).run_interaction("id", Txn.fetchone,
                                                 "SELECT shard_0003.next_id()")
    assert row is not None
    return int(row[0])


def test_gc_removes_orphans_and_deleted_media_blobs_only(env: Env) -> None:
    """An old orphan and a deleted medium's blob are removed; a live medium's blob, and a
    recent orphan (an upload between its blob and its event) are kept."""
    store = open_store(env.config)
    owner = an_owner(env)
    live, gone = post_direct(env, owner), post_direct(env, owner)
    names = {}
    for label, media_id in (("live", live), ("gone", gone)):
        names[label] = store.put(f"{label}".encode(), "jpg")
        # the medium references its rendition under the name post_direct made up; make it
        # reference a real blob instead, as MediaRendered would
        env.router.database(shard_of(media_id)).run_interaction(
            "ref", Txn.execute, f"INSERT INTO shard_{shard_of(media_id):04d}.media_blobs "
            "(blob, media_id) VALUES (%s, %s)", (names[label], media_id))
    names["orphan"] = store.put(b"orphan", "png")
    names["fresh"] = store.put(b"fresh orphan", "png")
    env.store.append(shard_of(gone), media_stream(gone),
                     [NewEvent(MediaDeleted(media_id=gone, owner=owner))])
    for label in ("live", "gone", "orphan"):
        age(store, names[label])
    out = subprocess.run([sys.executable, "-m", "scripts.cli", "blobs", "gc"], cwd=REPO,
                         env=scrubbed_env(env.vars), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    live_refs = referenced(env.router, list(names.values()))
    assert "removed 2" in out.stderr, (out.stderr, live_refs, names)
    assert store.path(names["live"]) and store.path(names["fresh"])
    assert store.path(names["orphan"]) is None and store.path(names["gone"]) is None


class ReuploadDuringGc(LocalBlobStore):
    """The store, but right after garbage collection has listed the old blobs (before it
    asks which are referenced) an upload stores the same bytes again, as an upload's
    ``commit`` does; its MediaPosted would come next."""

    def __init__(self, root: Path, data: bytes) -> None:
        super().__init__(root)
        self.data = data

    def listing(self, older_than_s: float) -> Iterator[str]:
        yield from super().listing(older_than_s)
        self.put(self.data, "jpg")


def test_gc_spares_a_blob_an_upload_re_stores_while_it_runs(env: Env) -> None:
    """A deleted medium's old blob is listed; an upload of the same bytes re-stores it; the
    run keeps it (else the upload's MediaPosted would name a blob that is gone)."""
    store = open_store(env.config)
    owner = an_owner(env)
    gone = post_direct(env, owner)
    data = b"the same picture, uploaded again"
    name = store.put(data, "jpg")
    env.router.database(shard_of(gone)).run_interaction(
        "ref", Txn.execute, f"INSERT INTO shard_{shard_of(gone):04d}.media_blobs "
        "(blob, media_id) VALUES (%s, %s)", (name, gone))
    env.store.append(shard_of(gone), media_stream(gone),
                     [NewEvent(MediaDeleted(media_id=gone, owner=owner))])
    age(store, name)
    racing = ReuploadDuringGc(store.root, data)  # type: ignore[attr-defined]
    assert collect(racing, env.router, grace_s=3600).removed == 0
    assert store.path(name) is not None
    age(store, name)  # the control: without the upload, the blob goes
    assert collect(store, env.router, grace_s=3600).removed == 1
    assert store.path(name) is None


def test_a_dry_run_removes_nothing_not_even_leftovers(env: Env) -> None:
    """``blobs gc --dry-run`` lists and removes nothing: the old temporary file of a crashed
    write stays too (a real run removes it)."""
    store = open_store(env.config)
    leftover = store.tmp / "crashed-write.part"  # type: ignore[attr-defined]
    leftover.write_bytes(b"half an upload")
    old = time.time() - 7200
    os.utime(leftover, (old, old))
    for flags, kept in ((["--dry-run"], True), ([], False)):
        out = subprocess.run([sys.executable, "-m", "scripts.cli", "blobs", "gc", *flags],
                             cwd=REPO, env=scrubbed_env(env.vars), capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert leftover.exists() is kept, flags
