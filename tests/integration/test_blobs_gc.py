"""``shutterlog blobs gc``: blobs no medium references (a crash between the blob and the
event) and deleted media's blobs go after the grace period; live media's stay."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from plugins.blobs import open_store
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


def test_gc_removes_orphans_and_deleted_media_blobs_only(env: Env) -> None:
    """An old orphan and a deleted medium's blob are removed; a live medium's blob, and a
    recent orphan (an upload between its blob and its event) are kept."""
    store = open_store(env.config)
    row = env.router.database(3).run_interaction("id", Txn.fetchone,
                                                 "SELECT shard_0003.next_id()")
    assert row is not None
    owner = int(row[0])
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
