"""Packaging: the wheel carries the twistd dropin, and twistd finds it (normal and editable)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from tests.helpers import REPO

TWISTD_HELP = "from twisted.scripts.twistd import run; import sys; sys.argv[1:] = ['--help']; run()"


def test_wheel_install_lists_the_plugin(tmp_path: Path) -> None:
    """A built wheel ships twisted/plugins/shutterlog_plugin.py (no __init__.py beside it) and
    the SQL files; installed on its own, twistd --help lists shutterlog."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), str(REPO)],
        check=True, capture_output=True,
    )
    [wheel] = (tmp_path / "dist").glob("shutterlog-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "twisted/plugins/shutterlog_plugin.py" in names
    assert not [n for n in names if n.startswith("twisted/") and n.endswith("__init__.py")]
    assert "server/store/sql/global/0001_events.sql" in names
    assert not [n for n in names if n.startswith("tests/")]
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
         str(target), str(wheel)],
        check=True, capture_output=True,
    )
    # A clean interpreter: the wheel's files first, then the dependencies' site-packages
    # directory added as a plain path, so the editable install's .pth there is NOT processed.
    deps = sysconfig.get_paths()["purelib"]
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c",
         f"import sys; sys.path[:0] = [{str(target)!r}, {deps!r}]; " + TWISTD_HELP],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert "shutterlog" in out.stdout, out.stdout + out.stderr
    assert str(REPO) not in out.stdout + out.stderr


def test_editable_install_lists_the_plugin(tmp_path: Path) -> None:
    """From outside the checkout, the editable install's twistd --help lists shutterlog."""
    out = subprocess.run([sys.executable, "-c", TWISTD_HELP], cwd=tmp_path,
                         capture_output=True, text=True)
    assert "shutterlog API service" in out.stdout, out.stdout + out.stderr
