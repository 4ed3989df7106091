"""The bodies of Solr's ``/update``: JSON (an array of documents, or an object of commands
whose keys may repeat) and XML (``<add>``, ``<delete>``, ``<commit/>``), as pysolr sends them
(documents as JSON; deletes and commits as XML)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any, Protocol

from scripts.fakes.solr_query import Doc, SolrRequestError, bad


class Core(Protocol):
    def add(self, doc: Doc) -> None: ...

    def delete_ids(self, ids: list[str]) -> None: ...

    def delete_query(self, query: str) -> None: ...


def apply_update(core: Core, content_type: str, body: bytes) -> bool:
    """Apply an /update body; returns whether it asked for a commit."""
    if not body.strip():
        return False
    if "json" in content_type:
        try:
            data = json.loads(body, object_pairs_hook=_Pairs)
        except ValueError as e:
            raise bad(f"Cannot parse provided JSON: {e}") from None
        if isinstance(data, _Pairs):
            return _json_commands(core, data)
        if not isinstance(data, list) or not all(isinstance(d, _Pairs) for d in data):
            raise bad("JSON update body must be an array of documents or an object of commands")
        for doc in data:
            core.add(_json_doc(doc))
        return False
    if "xml" in content_type:
        try:
            root = ET.fromstring(body)
        except ET.ParseError as e:
            raise bad(f"Cannot parse provided XML: {e}") from None
        return _xml_commands(core, root)
    raise SolrRequestError(415, f"Unsupported ContentType: {content_type}")


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its (key, value) pairs: Solr's command objects repeat keys."""


def _json_doc(value: Any) -> Any:
    """JSON pairs as dicts, all the way down (atomic updates are objects in a document)."""
    if isinstance(value, _Pairs):
        return {k: _json_doc(v) for k, v in value}
    return value


def _json_commands(core: Core, pairs: _Pairs) -> bool:
    commit = False
    for command, arg in pairs:
        if command == "add":
            core.add(_json_doc(dict(arg)["doc"]))
        elif command == "delete":
            if isinstance(arg, _Pairs):
                spec = dict(arg)
                if "query" in spec:
                    core.delete_query(str(spec["query"]))
                else:
                    core.delete_ids([str(spec["id"])])
            else:
                core.delete_ids([str(i) for i in (arg if isinstance(arg, list) else [arg])])
        elif command == "commit":
            commit = True
        else:
            raise bad(f"Unknown command '{command}'")
    return commit


def _xml_commands(core: Core, root: ET.Element) -> bool:
    if root.tag == "add":
        for el in root.iter("doc"):
            doc: Doc = {}
            for f in el.iter("field"):
                name, text = f.get("name", ""), f.text or ""
                update = f.get("update")
                value: Any = {update: text} if update else text
                if name in doc:
                    prev = doc[name]
                    doc[name] = [*prev, value] if isinstance(prev, list) else [prev, value]
                else:
                    doc[name] = value
            core.add(doc)
        return False
    if root.tag == "delete":
        core.delete_ids([el.text or "" for el in root.iter("id")])
        for el in root.iter("query"):
            core.delete_query(el.text or "")
        return False
    if root.tag in ("commit", "optimize"):
        return True
    raise bad(f"Unexpected <{root.tag}> in an XML update")
