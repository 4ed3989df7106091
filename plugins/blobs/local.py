"""Blobs as local files: ``ROOT/ab/cd/<sha256>.<ext>``, written atomically and durably.

A writer streams bytes into ``ROOT/tmp/`` while hashing them; ``commit`` fsyncs the file,
renames it to its content address (rename is atomic on one file system) and fsyncs the
directory, so after a crash a blob is either whole at its address or absent. Storing bytes
that already exist drops the new copy and refreshes the old one's time, so garbage collection
(which spares recent blobs) never removes a blob an upload has just re-used.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from zope.interface import implementer

from plugins.blobs import NAME
from server.interfaces import BlobWriter, IBlobStore

#: Temporary files older than this are leftovers of a crashed write.
TMP_MAX_AGE_S = 3600.0


@implementer(BlobWriter)
class LocalBlobWriter:
    def __init__(self, store: LocalBlobStore) -> None:
        self.store = store
        self._file = store.tmp / f"{uuid.uuid4().hex}.part"
        self._fh: BinaryIO | None = open(self._file, "xb")  # noqa: SIM115 (closed by commit)
        self._hash = hashlib.sha256()
        self.size = 0

    @property
    def file(self) -> Path:
        """The temporary file, with everything written so far in it."""
        if self._fh is not None:
            self._fh.flush()
        return self._file

    def write(self, data: bytes) -> None:
        assert self._fh is not None, "the blob was committed or discarded"
        self._fh.write(data)
        self._hash.update(data)
        self.size += len(data)

    def stream(self) -> BinaryIO:
        return open(self.file, "rb")  # noqa: SIM115 (the caller closes it)

    def commit(self, ext: str) -> str:
        assert self._fh is not None, "the blob was committed or discarded"
        name = f"{self._hash.hexdigest()}.{ext}"
        if not NAME.match(name):
            self.discard()
            raise ValueError(f"not a blob extension: {ext!r}")
        fh, self._fh = self._fh, None
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        self.store.place(self._file, name)
        return name

    def discard(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self._file.unlink(missing_ok=True)


@implementer(IBlobStore)
class LocalBlobStore:
    """Blobs under ``root``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def _address(self, name: str) -> Path:
        return self.root / name[:2] / name[2:4] / name

    def writer(self) -> LocalBlobWriter:
        return LocalBlobWriter(self)

    def put(self, data: bytes, ext: str) -> str:
        w = self.writer()
        try:
            w.write(data)
        except BaseException:
            w.discard()
            raise
        return w.commit(ext)

    def place(self, file: Path, name: str) -> None:
        """Move a complete, synced temporary file to the address of ``name``."""
        target = self._address(name)
        if target.exists():
            try:
                os.utime(target)  # re-stored now: garbage collection spares it
            except FileNotFoundError:
                pass  # collected meanwhile: this copy takes its place
            else:
                file.unlink(missing_ok=True)
                return
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(file, target)
        _fsync_dir(target.parent)

    def path(self, name: str) -> Path | None:
        if not NAME.match(name):
            return None
        target = self._address(name)
        return target if target.is_file() else None

    def delete(self, name: str, older_than_s: float) -> bool:
        """The blob is first moved aside (atomically), then its time is read: a re-store
        before the move shows in that time and the blob goes back; one after it finds no
        blob and stores its own copy (``place``)."""
        if not NAME.match(name):
            return False
        target = self._address(name)
        aside = self.tmp / f"{uuid.uuid4().hex}.gc"
        try:
            os.rename(target, aside)
        except FileNotFoundError:
            return False
        if time.time() - aside.stat().st_mtime > older_than_s:
            aside.unlink()
            return True
        os.replace(aside, target)  # re-stored since it was listed: the same bytes go back
        return False

    def remove_leftovers(self) -> int:
        now = time.time()
        removed = 0
        for leftover in [*self.tmp.glob("*.part"), *self.tmp.glob("*.gc")]:
            try:
                if now - leftover.stat().st_mtime > TMP_MAX_AGE_S:
                    leftover.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed

    def listing(self, older_than_s: float) -> Iterator[str]:
        now = time.time()
        for first in sorted(p for p in self.root.iterdir() if len(p.name) == 2):
            for second in sorted(first.iterdir()):
                for blob in sorted(second.iterdir()):
                    try:
                        old = now - blob.stat().st_mtime > older_than_s
                    except FileNotFoundError:
                        continue
                    if old and NAME.match(blob.name):
                        yield blob.name


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
