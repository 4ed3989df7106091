"""The process split and the pure core, as the imports show them."""

import ast
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

IO_MODULES = {"twisted", "gevent", "psycopg2", "psycogreen", "redis", "klein", "autobahn"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_domain_imports_no_io() -> None:
    """server/domain imports none of twisted, gevent, psycopg2, redis (even indirectly)."""
    modules = sorted(
        "server.domain." + p.stem for p in (REPO / "server" / "domain").glob("*.py")
        if p.stem != "__init__"
    )
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + f"bad = sorted({{m.split('.')[0] for m in sys.modules}} & {IO_MODULES!r})\n"
        + "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"pure modules pulled in: {out.stdout}"


def test_server_never_imports_gevent_and_workers_never_twisted_internet() -> None:
    """The service side is Twisted, the worker side gevent: neither imports the other's loop."""
    for path in (REPO / "server").rglob("*.py"):
        green = {n for n in imports_of(path) if n.split(".")[0] in {"gevent", "psycogreen"}}
        assert not green, f"{path} imports {green}"
    for path in (REPO / "workers").rglob("*.py"):
        bad = {n for n in imports_of(path) if n.startswith("twisted.internet") or n == "klein"}
        assert not bad, f"{path} imports {bad}"
