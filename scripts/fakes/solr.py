"""A local HTTP server that answers as a Solr 9 core does, for the geo index's tests.

It serves ``/solr/CORE/update``, ``/select`` and ``/get`` (real-time get), with or without a
trailing slash, over a core held in memory with the field types of the configset we ship
(``etc/solr/shutterlog-geo/conf/managed-schema.xml``):

- ``/update`` takes JSON (an array of documents, or ``{"add": ..., "delete": ...,
  "commit": {}}`` commands) and XML (``<add>``, ``<delete><id>/<query>``, ``<commit/>``:
  pysolr sends deletes and commits as XML; see ``solr_update``), atomic updates
  (``{"field": {"set": value}}``) and optimistic concurrency (``_version_``: 1 must exist,
  negative must not, above 1 must match; a conflict is a 409), and ``commit``,
  ``softCommit`` and ``commitWithin``;
- searches see the documents as of the last commit, as Solr's searcher does; ``/get`` sees
  every write at once, as Solr's update log does; a ``commitWithin`` commits on a timer;
- ``/select`` evaluates the query subset in ``solr_query`` with ``fq``, ``sort``, ``fl``,
  ``rows``, ``start`` and ``cursorMark``, and answers ``wt=json`` in Solr's response shape.

Every request is recorded (``requests``) so tests can check exactly what a client sent.
Run one by hand with ``python -m scripts.fakes.solr --port 8983``.
"""

from __future__ import annotations

import argparse
import base64
import functools
import itertools
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from scripts.fakes.solr_query import (
    Doc,
    GeoParams,
    Params,
    Schema,
    SolrRequestError,
    bad,
    compile_query,
)
from scripts.fakes.solr_update import apply_update

CONFIGSET = Path(__file__).resolve().parents[2] / "etc" / "solr" / "shutterlog-geo" / "conf"
_OPS = {"set"}


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it."""

    method: str
    handler: str  # update, select, get
    params: dict[str, list[str]]
    content_type: str
    body: bytes
    authorization: str | None  # the Authorization header, if any


class Core:
    """The documents of one core: ``latest`` (every write), ``visible`` (as of the last commit)."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.latest: dict[str, Doc] = {}
        self.visible: dict[str, Doc] = {}
        self.commits = 0
        self._versions = itertools.count(int(time.time() * 1000) << 20)
        self._lock = threading.RLock()
        self._timer: threading.Timer | None = None

    # --- writes ----------------------------------------------------------------------------

    def add(self, doc: Doc) -> None:
        key_name = self.schema.unique_key
        if key_name not in doc:
            raise bad(f"Document is missing mandatory uniqueKey field: {key_name}")
        key = str(doc[key_name])
        with self._lock:
            current = self.latest.get(key)
            self._check_version(key, doc.get("_version_"), current)
            fields = {k: v for k, v in doc.items() if k != "_version_"}
            atomic = any(isinstance(v, dict) for v in fields.values())
            new: Doc = dict(current) if atomic and current else {}
            for name, value in fields.items():
                if isinstance(value, dict):
                    if set(value) - _OPS:
                        raise bad(f"this local Solr supports only the atomic update 'set', "
                                  f"not {sorted(value)}")
                    value = value["set"]
                if value is None:
                    new.pop(name, None)
                else:
                    new[name] = self.schema.coerce(name, value, key)
            new["_version_"] = next(self._versions)
            self.latest[key] = new

    def _check_version(self, key: str, expected: Any, current: Doc | None) -> None:
        if expected is None or int(expected) == 0:
            return
        expected = int(expected)
        actual = current["_version_"] if current else -1
        ok = (current is not None) if expected == 1 else \
            (current is None) if expected < 0 else (actual == expected)
        if not ok:
            raise SolrRequestError(
                409, f"version conflict for {key} expected={expected} actual={actual}"
            )

    def delete_ids(self, ids: list[str]) -> None:
        with self._lock:
            for key in ids:
                self.latest.pop(key, None)

    def delete_query(self, query: str) -> None:
        match = compile_query(query, self.schema, {})
        with self._lock:
            for key in [k for k, d in self.latest.items() if match(d)]:
                del self.latest[key]

    def commit(self) -> None:
        with self._lock:
            self.visible = dict(self.latest)
            self.commits += 1
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def commit_within(self, ms: int) -> None:
        with self._lock:
            if self._timer is None:
                self._timer = threading.Timer(ms / 1000, self.commit)
                self._timer.daemon = True
                self._timer.start()

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()

    # --- reads -----------------------------------------------------------------------------

    def select(self, params: Params) -> dict[str, Any]:
        if params.get("wt", ["json"])[0] != "json":
            raise bad("this local Solr answers wt=json only")
        q = params.get("q", [""])[0]
        if not q:
            raise bad("no query (q) given")
        filters = [compile_query(text, self.schema, params) for text in [q, *params.get("fq", [])]]
        with self._lock:
            docs = [d for d in self.visible.values() if all(f(d) for f in filters)]
        geo = GeoParams.read(self.schema, {}, params, need_d=False) \
            if "sfield" in params and "pt" in params else None
        sort = _Sort(params.get("sort", [""])[0], self.schema, geo)
        docs.sort(key=lambda d: sort.key(sort.values(d)))
        rows = int(params.get("rows", ["10"])[0])
        start = int(params.get("start", ["0"])[0])
        body: dict[str, Any] = {"responseHeader": {"status": 0, "QTime": 0}}
        cursor = params.get("cursorMark", [None])[0]
        if cursor is not None:
            if start != 0 or (self.schema.unique_key, False) not in sort.fields and \
                    (self.schema.unique_key, True) not in sort.fields:
                raise bad("Cursor functionality requires a sort containing a uniqueKey field "
                          "tie breaker and start=0")
            if cursor != "*":
                after = sort.after(cursor)
                docs = [d for d in docs if sort.key(sort.values(d)) > after]
            page = docs[:rows]
            body["nextCursorMark"] = sort.mark(page[-1]) if page else cursor
        else:
            page = docs[start:start + rows]
        out = [_project(d, params.get("fl", ["*"])[0], geo) for d in page]
        body["response"] = {"numFound": len(docs), "start": start, "numFoundExact": True,
                            "docs": out}
        return body

    def get(self, params: Params) -> dict[str, Any]:
        fl = params.get("fl", ["*"])[0]
        with self._lock:
            if "ids" in params:
                ids = [i for v in params["ids"] for i in v.split(",") if i]
                docs = [_project(self.latest[i], fl, None) for i in ids if i in self.latest]
                return {"response": {"numFound": len(docs), "start": 0, "numFoundExact": True,
                                     "docs": docs}}
            doc = self.latest.get(params.get("id", [""])[0])
            return {"doc": None if doc is None else _project(doc, fl, None)}


class _Sort:
    """A ``sort`` parameter: the values a document sorts by, and their order."""

    def __init__(self, spec: str, schema: Schema, geo: GeoParams | None) -> None:
        self.fields: list[tuple[str, bool]] = []  # (expression, descending)
        for clause in (c.strip() for c in spec.split(",") if c.strip()):
            expr, _, direction = clause.partition(" ")
            if direction.strip() not in ("asc", "desc"):
                raise bad(f"Can't determine a Sort Order (asc or desc) in sort spec '{clause}'")
            if expr == "geodist()" and geo is None:
                raise bad("geodist() needs the sfield and pt parameters")
            if expr != "geodist()":
                schema.field(expr)
            self.fields.append((expr, direction.strip() == "desc"))
        self.geo = geo
        self.key = functools.cmp_to_key(self._compare)

    def values(self, doc: Doc) -> list[Any]:
        return [self.geo.km(doc) if expr == "geodist()" and self.geo else doc.get(expr)
                for expr, _ in self.fields]

    def _compare(self, a: list[Any], b: list[Any]) -> int:
        for (_, desc), va, vb in zip(self.fields, a, b, strict=True):
            if va != vb:
                if va is None or vb is None:  # missing values sort last, either direction
                    return 1 if va is None else -1
                return (-1 if va < vb else 1) * (-1 if desc else 1)
        return 0

    def mark(self, doc: Doc) -> str:
        """The cursor mark after ``doc``."""
        return base64.urlsafe_b64encode(json.dumps(self.values(doc)).encode()).decode()

    def after(self, mark: str) -> Any:
        """The sort key of the document a cursor ``mark`` was made from."""
        try:
            return self.key(json.loads(base64.urlsafe_b64decode(mark)))
        except ValueError:
            raise bad(f"Unable to parse 'cursorMark' after totem: value={mark}") from None


def _project(doc: Doc, fl: str, geo: GeoParams | None) -> Doc:
    out: Doc = {}
    for item in (s for s in fl.replace(" ", ",").split(",") if s):
        alias, _, expr = item.rpartition(":")
        if item == "*":
            out.update(doc)
        elif expr == "geodist()":
            if geo is None:
                raise bad("geodist() needs the sfield and pt parameters")
            out[alias or "geodist()"] = geo.km(doc)
        elif not alias and item in doc:
            out[item] = doc[item]
        elif alias or "(" in item:
            raise bad(f"this local Solr supports only fields, * and alias:geodist() in fl, "
                      f"not {item!r}")
    return out

# --- the server ------------------------------------------------------------------------------


class FakeSolr:
    """The server: ``start()`` returns the core's URL (``http://127.0.0.1:PORT/solr/CORE``)."""

    def __init__(self, core: str = "shutterlog_geo", port: int = 0,
                 schema: Path = CONFIGSET / "managed-schema.xml") -> None:
        self.core_name = core
        self.core = Core(Schema.load(schema))
        self.requests: list[Recorded] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/solr/{self.core_name}"

    def start(self) -> str:
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.core.close()

    def handle(self, method: str, path: str, query: str, headers: Any, body: bytes
               ) -> tuple[int, dict[str, Any]]:
        content_type = headers.get("Content-Type", "")
        parts = [p for p in path.split("/") if p]
        if len(parts) != 3 or parts[:2] != ["solr", self.core_name]:
            return 404, _error(404, f"no core or handler at {path}")
        handler = parts[2]
        params = parse_qs(query, keep_blank_values=True)
        if "x-www-form-urlencoded" in content_type:
            for k, v in parse_qs(body.decode(), keep_blank_values=True).items():
                params.setdefault(k, []).extend(v)
        self.requests.append(Recorded(method, handler, params, content_type, body,
                                      headers.get("Authorization")))
        try:
            if handler == "update" and method == "POST":
                if apply_update(self.core, content_type, body) or _flag(params, "commit") \
                        or _flag(params, "softCommit"):
                    self.core.commit()
                elif "commitWithin" in params and int(params["commitWithin"][0]) >= 0:
                    self.core.commit_within(int(params["commitWithin"][0]))
                return 200, {"responseHeader": {"status": 0, "QTime": 0}}
            if handler == "select":
                return 200, self.core.select(params)
            if handler == "get":
                return 200, self.core.get(params)
            return 404, _error(404, f"no handler {handler} for {method}")
        except SolrRequestError as e:
            return e.code, _error(e.code, e.msg)


def _flag(params: Params, name: str) -> bool:
    return params.get(name, ["false"])[0] == "true"


def _error(code: int, msg: str) -> dict[str, Any]:
    return {"responseHeader": {"status": code, "QTime": 0},
            "error": {"metadata": ["error-class", "org.apache.solr.common.SolrException"],
                      "msg": msg, "code": code}}


def _handler(server: FakeSolr) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes

        def _serve(self, method: str) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            code, data = server.handle(method, url.path, url.query, self.headers, body)
            out = json.dumps(data).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json;charset=utf-8")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # requests are recorded, not printed

    return Handler


def main() -> None:
    p = argparse.ArgumentParser(description="A local server answering as a Solr core does "
                                "(/update, /select, /get), in memory, for trials and tests.")
    p.add_argument("--port", type=int, default=8983, help="port on 127.0.0.1 (default 8983)")
    p.add_argument("--core", default="shutterlog_geo", help="core name (default shutterlog_geo)")
    args = p.parse_args()
    server = FakeSolr(args.core, args.port)
    print(f"local Solr core at {server.start()} (Ctrl-C stops it)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
