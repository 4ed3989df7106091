"""Blob garbage collection: blobs older than a grace period that no medium (or only deleted
media) references are removed. The grace period covers an upload between storing its blob
and appending its event; an upload re-using stored bytes refreshes their time first, and
the store checks that time again as it removes a blob (the upload may come after the
listing), so a blob an upload has just re-used is never removed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice

from server.interfaces import IBlobStore, IShardRouter
from server.store.media import referenced

BATCH = 1000


@dataclass(frozen=True)
class Collected:
    checked: int
    removed: int


def collect(blobs: IBlobStore, router: IShardRouter, grace_s: float, dry_run: bool = False,
            progress: Callable[[int, int], None] | None = None) -> Collected:
    """Remove the unreferenced blobs older than ``grace_s`` and the temporary files of
    crashed writes (``dry_run``: remove nothing); returns the tally of blobs."""
    if not dry_run:
        blobs.remove_leftovers()
    names = blobs.listing(grace_s)
    checked = removed = 0
    while batch := list(islice(names, BATCH)):
        live = referenced(router, batch)
        for name in batch:
            if name not in live and (dry_run or blobs.delete(name, grace_s)):
                removed += 1
        checked += len(batch)
        if progress is not None:
            progress(checked, removed)
    return Collected(checked, removed)
