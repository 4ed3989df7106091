"""The Solr backend's requests, exactly as the local Solr server receives them, and the
Solr-specific behaviour behind the contract: commitWithin, soft commits, optimistic
concurrency, basic auth, and a server that refuses what real Solr would refuse."""

from __future__ import annotations

import base64
import json
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pysolr
import pytest

from plugins.geo import open_index
from plugins.geo.solr import CATALOG_ID, SolrGeoIndex, solr_client
from scripts.fakes.solr import FakeSolr, Recorded
from server.config import load
from server.domain.geo import GeoPoint, GeoQuery
from server.interfaces import GeoUnavailable
from server.outages import outage
from tests.helpers import wait_for

P1 = GeoPoint(1, 10, 48.85, 2.35, 1000, location_id=7)
P2 = GeoPoint(2, 11, 48.851, 2.351, 2000, hidden=True)


@pytest.fixture
def fake() -> Iterator[FakeSolr]:
    server = FakeSolr()
    server.start()
    yield server
    server.stop()


def new_requests(fake: FakeSolr, since: int) -> list[Recorded]:
    return fake.requests[since:]


def single(params: dict[str, list[str]]) -> dict[str, Any]:
    """Parameters with one value each as that value; repeated ones stay lists."""
    return {k: v[0] if len(v) == 1 else v for k, v in params.items()}


def catalog_read(r: Recorded) -> bool:
    return r.method == "GET" and r.handler == "get" and single(r.params) == {
        "q": "*:*", "ids": CATALOG_ID, "wt": "json"}


def test_upsert_sends_json_documents_with_commit_within(fake: FakeSolr) -> None:
    """An upsert reads the live namespace by real-time get, then posts the documents as a JSON
    array with commitWithin; they are searchable only once that commit has happened."""
    index = SolrGeoIndex(solr_client(fake.url, 5000), commit_within_ms=1500)
    index.upsert([P1, P2])
    get, post = fake.requests
    assert catalog_read(get)
    assert (post.method, post.handler, single(post.params)) == ("POST", "update",
                                                                 {"commitWithin": "1500"})
    assert post.content_type == "application/json; charset=utf-8"
    assert json.loads(post.body) == [
        {"id": "main:1", "ns": "main", "media_id": 1, "owner_id": 10, "created_ms": 1000,
         "hidden": False, "point": "48.85,2.35", "location_id": 7},
        {"id": "main:2", "ns": "main", "media_id": 2, "owner_id": 11, "created_ms": 2000,
         "hidden": True, "point": "48.851,2.351"},
    ]
    assert index.count() == 0  # not committed yet: Solr's searcher does not see them
    wait_for(lambda: index.count() == 2, timeout=10, message="the commitWithin commit")


def test_search_requests(fake: FakeSolr) -> None:
    """Searches send geofilt with sfield/pt/d as request parameters, geodist() to sort and
    return distances (km, read back as meters), uncached per-search filters, and the
    visibility filter as a bool of public points and the viewer's allowed owners."""
    index = SolrGeoIndex(solr_client(fake.url, 5000))
    index.upsert([P1, P2])
    index.refresh()
    start = len(fake.requests)
    hits = index.search(GeoQuery(48.85, 2.35, 250, order="distance", limit=5), viewer_id=11,
                        visible_owners={12, 10})
    get, select = new_requests(fake, start)
    assert catalog_read(get)
    assert (select.method, select.handler) == ("GET", "select")
    assert single(select.params) == {
        "q": "*:*",
        "fq": ["ns:main", "{!geofilt cache=false}",
               "{!bool cache=false should=$vis_public should=$vis_owners}"],
        "vis_public": "hidden:false", "vis_owners": "{!terms f=owner_id}10,11,12",
        "sfield": "point", "pt": "48.85,2.35", "d": "0.25",
        "sort": "geodist() asc,media_id asc", "fl": "media_id,created_ms,dist:geodist()",
        "rows": "5", "wt": "json",
    }
    assert [h.media_id for h in hits] == [1, 2]
    assert hits[1].distance_m == pytest.approx(133.11, abs=0.02)
    start = len(fake.requests)
    hits = index.search(GeoQuery(48.85, 2.35, 5000, min_ms=1500, limit=20))
    select = new_requests(fake, start)[1]
    assert single(select.params) == {
        "q": "*:*",
        "fq": ["ns:main", "{!geofilt cache=false}", "{!cache=false}created_ms:[1500 TO *]",
               "hidden:false"],
        "sfield": "point", "pt": "48.85,2.35", "d": "5.0",
        "sort": "created_ms desc,media_id desc", "fl": "media_id,created_ms,dist:geodist()",
        "rows": "20", "wt": "json",
    }
    assert hits == []  # P2 is recent enough but hidden from an anonymous search


def test_remove_deletes_by_id_in_xml_with_a_soft_commit(fake: FakeSolr) -> None:
    """pysolr deletes in XML; removals end with a soft commit, so they hold on return."""
    index = SolrGeoIndex(solr_client(fake.url, 5000))
    index.upsert([P1, P2])
    index.refresh()
    start = len(fake.requests)
    index.remove([1, 2, 3])
    post = new_requests(fake, start)[1]
    assert (post.method, post.handler, single(post.params)) == ("POST", "update",
                                                                 {"softCommit": "true"})
    assert post.content_type == "text/xml; charset=utf-8"
    root = ET.fromstring(post.body)
    assert root.tag == "delete" and [e.text for e in root] == ["main:1", "main:2", "main:3"]
    assert index.count() == 0


def test_going_private_is_an_atomic_update_of_each_point(fake: FakeSolr) -> None:
    """Hiding an owner's points: a soft commit (so points still waiting for commitWithin are
    found), a cursor over the owner's visible points, an atomic ``set`` of ``hidden``
    guarded by ``_version_: 1``, and a final soft commit."""
    index = SolrGeoIndex(solr_client(fake.url, 5000))
    index.upsert([P1, GeoPoint(3, 10, 1.0, 1.0, 5), P2])
    start = len(fake.requests)
    index.set_owner_hidden(10, True)
    reqs = new_requests(fake, start)
    assert catalog_read(reqs[0])
    cursor = {"q": "*:*", "fq": ["ns:main", "owner_id:10", "hidden:false"], "fl": "id",
              "sort": "id asc", "rows": "5000", "wt": "json"}
    mark = single(reqs[3].params)["cursorMark"]  # the first page's nextCursorMark
    assert mark != "*"
    assert [(r.handler, single(r.params)) for r in reqs[1:]] == [
        ("update", {"softCommit": "true"}),
        ("select", cursor | {"cursorMark": "*"}),
        ("select", cursor | {"cursorMark": mark}),  # pysolr follows the cursor to its end
        ("update", {"commitWithin": "1000"}),
        ("update", {"softCommit": "true"}),
    ]
    assert json.loads(reqs[4].body) == [
        {"id": "main:1", "hidden": {"set": True}, "_version_": 1},
        {"id": "main:3", "hidden": {"set": True}, "_version_": 1},
    ]
    assert index.search(GeoQuery(48.85, 2.35, 1000)) == []
    assert [h.media_id for h in index.search(GeoQuery(48.85, 2.35, 1000), viewer_id=10)] == [1]


def test_a_point_removed_while_its_owner_goes_private_is_not_resurrected(fake: FakeSolr
                                                                          ) -> None:
    """If a point disappears between the cursor read and its atomic update, the update is
    refused (409, it must exist) and the change is retried on fresh data: no fragment of
    the removed point is left behind."""
    index = SolrGeoIndex(solr_client(fake.url, 5000))
    index.upsert([P1, GeoPoint(3, 10, 1.0, 1.0, 5)])
    real_add = index.solr.add
    raced: list[bool] = []

    def add_after_a_removal(docs: list[dict[str, Any]], **kwargs: Any) -> Any:
        if kwargs.get("fieldUpdates") and not raced:
            raced.append(True)
            fake.core.delete_ids(["main:1"])  # another writer removes media 1 meanwhile
        return real_add(docs, **kwargs)

    index.solr.add = add_after_a_removal
    index.set_owner_hidden(10, True)
    assert raced and sorted(fake.core.latest) == ["main:3"]
    assert fake.core.latest["main:3"]["hidden"] is True
    conflicts = [r for r in fake.requests if r.handler == "update" and b'"set"' in r.body]
    assert len(conflicts) == 2  # the refused attempt and the retry


def test_swap_and_drop_requests(fake: FakeSolr) -> None:
    """A swap soft-commits, then rewrites the catalog under optimistic concurrency; a drop
    deletes the namespace's points by query before forgetting it."""
    index = SolrGeoIndex(solr_client(fake.url, 5000))
    index.create("r2")
    create = fake.requests[-1]
    assert json.loads(create.body) == [{"id": CATALOG_ID, "live": "main",
                                        "namespaces": ["main", "r2"], "_version_": -1}]
    version = fake.core.latest[CATALOG_ID]["_version_"]
    start = len(fake.requests)
    assert index.swap("r2") == "main"
    commit, get, write = new_requests(fake, start)
    assert (commit.handler, single(commit.params), commit.body) == (
        "update", {"softCommit": "true"}, b"<commit />")
    assert catalog_read(get)
    assert json.loads(write.body) == [{"id": CATALOG_ID, "live": "r2",
                                       "namespaces": ["main", "r2"], "_version_": version}]
    start = len(fake.requests)
    index.drop("main")
    get, delete, get2, write = new_requests(fake, start)
    assert (delete.handler, single(delete.params)) == ("update", {"softCommit": "true"})
    assert ET.fromstring(delete.body).find("query").text == "ns:main"  # type: ignore[union-attr]
    assert json.loads(write.body)[0]["namespaces"] == ["r2"]


def test_a_catalog_write_that_lost_a_race_is_retried(fake: FakeSolr) -> None:
    """Two swaps racing: the one whose _version_ is stale gets a 409 and tries again on the
    catalog as it now is."""
    index = SolrGeoIndex(solr_client(fake.url, 5000))
    index.create("a")
    index.create("b")
    real = index._catalog
    stale = [real()]

    def first_read_is_stale() -> tuple[str, list[str], int]:
        return stale.pop() if stale else real()

    index.create("c")  # moves the catalog's _version_ past what `stale` holds
    index._catalog = first_read_is_stale  # type: ignore[method-assign]
    assert index.swap("b") == "main"
    assert real()[:2] == ("b", ["a", "b", "c", "main"])
    assert sum(1 for r in fake.requests if r.handler == "update" and b"_catalog" in r.body) == 5


def test_commit_within_zero_soft_commits_every_write(fake: FakeSolr) -> None:
    """geo.solr_commit_within_ms = 0 makes each upsert searchable when it returns."""
    index = SolrGeoIndex(solr_client(fake.url, 5000), commit_within_ms=0)
    index.upsert([P1])
    assert single(fake.requests[-1].params) == {"softCommit": "true"}
    assert index.count() == 1


def test_configuration_and_credentials(fake: FakeSolr, tmp_path: Any) -> None:
    """geo.backend = solr opens a Solr index at geo.solr_url; credentials in the URL are sent
    as basic auth and kept out of the URL pysolr logs."""
    host = fake.url.split("//", 1)[1]
    config = load(env={"SHUTTERLOG_VAR": str(tmp_path), "SHUTTERLOG_GEO_BACKEND": "solr",
                       "SHUTTERLOG_GEO_SOLR_URL": f"http://geo:pa55@{host}",
                       "SHUTTERLOG_GEO_TIMEOUT_MS": "2500"}, search_default=False)
    index = open_index(config)
    assert isinstance(index, SolrGeoIndex)
    assert index.solr.url == fake.url and index.solr.timeout == 2.5
    assert index.count() == 0
    assert fake.requests[-1].authorization == "Basic " + base64.b64encode(b"geo:pa55").decode()
    index.close()


def test_the_local_server_refuses_what_solr_refuses(fake: FakeSolr) -> None:
    """Unknown fields (the shipped schema has no schemaless mode), bad field values and query
    syntax the local server does not implement are errors, never silently accepted."""
    client = solr_client(fake.url, 5000)
    with pytest.raises(pysolr.SolrError, match="unknown field 'caption'"):
        client.add([{"id": "x", "caption": "hello"}])
    with pytest.raises(pysolr.SolrError, match="Error while creating field 'point'"):
        client.add([{"id": "x", "point": "91,0"}])
    with pytest.raises(pysolr.SolrError, match="supports only"):
        client.search("owner_id:1 OR owner_id:2")
    with pytest.raises(pysolr.SolrError, match="HTTP 409"):
        client.add([{"id": "never-added", "hidden": {"set": True}, "_version_": 1}])
    assert fake.core.latest == {}


def test_a_solr_that_cannot_answer_is_an_outage_and_a_refusal_is_not(
        fake: FakeSolr, monkeypatch: pytest.MonkeyPatch) -> None:
    """Solr stopped (connection refused), not answering within the timeout, or answering 503
    raises GeoUnavailable, which the worker pool waits out as an outage (no event parked); a
    document Solr refuses (400) stays a SolrError, a failure of the event."""
    with pytest.raises(pysolr.SolrError, match=r"\(HTTP 400\)") as refused:
        solr_client(fake.url, 5000).add([{"id": "x", "caption": "hello"}])
    assert not isinstance(refused.value, GeoUnavailable) and not outage(refused.value)
    stopped = FakeSolr()
    url = stopped.start()
    stopped.stop()
    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens, never answers
        silent_url = f"http://127.0.0.1:{silent.getsockname()[1]}/solr/shutterlog_geo"
        cases = [(SolrGeoIndex(solr_client(url, 5000)), "Failed to connect"),
                 (SolrGeoIndex(solr_client(silent_url, 100)), "timed out")]
        for index, why in cases:
            with pytest.raises(GeoUnavailable, match=why) as down:
                index.upsert([P1])
            assert outage(down.value)
    monkeypatch.setattr(fake, "handle", lambda *request: (503, {"error": {
        "msg": "no servers hosting shard", "code": 503}}))
    index = SolrGeoIndex(solr_client(fake.url, 5000))
    for call in (lambda: index.upsert([P1]), lambda: index.set_owner_hidden(10, True),
                 index.count):
        with pytest.raises(GeoUnavailable, match=r"\(HTTP 503\)") as busy:
            call()
        assert outage(busy.value)


def test_a_long_list_of_allowed_owners_is_posted(fake: FakeSolr) -> None:
    """A viewer allowed to see many private accounts makes a long query: pysolr posts it as a
    form, and the terms filter has no clause limit."""
    index = SolrGeoIndex(solr_client(fake.url, 5000))
    index.upsert([P1, P2, GeoPoint(3, 777, 48.85, 2.35, 3, hidden=True)])
    index.refresh()
    allowed = set(range(1000, 1600)) | {777}
    hits = index.search(GeoQuery(48.85, 2.35, 1000), viewer_id=5, visible_owners=allowed)
    select = fake.requests[-1]
    assert (select.method, select.content_type) == (
        "POST", "application/x-www-form-urlencoded; charset=utf-8")
    assert single(select.params)["vis_owners"].startswith("{!terms f=owner_id}5,777,1000,")
    assert [h.media_id for h in hits] == [1, 3]  # newest first; P2 stays hidden
