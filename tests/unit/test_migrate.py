"""Which migration files a release ships: numbered, in order, gaps allowed, no duplicates."""

from pathlib import Path

import pytest

from server.store import migrate
from server.store.migrate import MigrationError, available


def _ship(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, names: list[str]) -> None:
    (tmp_path / "sql" / "global").mkdir(parents=True)
    for name in names:
        (tmp_path / "sql" / "global" / name).write_text("SELECT 1;\n")
    monkeypatch.setattr(migrate.resources, "files", lambda package: tmp_path)


def test_numbers_may_have_gaps(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Numbers are handed out per feature, so 0001 then 0010 is a valid release, in order."""
    _ship(monkeypatch, tmp_path, ["0010_geo.sql", "0001_events.sql", "README"])
    assert [(m.version, m.name) for m in available("global")] == [(1, "events"), (10, "geo")]


def test_two_files_with_one_number_are_refused(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    """Two migrations sharing a number would make the applied record ambiguous."""
    _ship(monkeypatch, tmp_path, ["0001_events.sql", "0002_likes.sql", "0002_follows.sql"])
    with pytest.raises(MigrationError, match="0002_follows and 0002_likes share a number"):
        available("global")


def test_the_shipped_migrations_are_valid() -> None:
    """The real release: global migrations include the events table and the geo index."""
    names = [m.name for m in available("global")]
    assert names[0] == "events" and "geo" in names
