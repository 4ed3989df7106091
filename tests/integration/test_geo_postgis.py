"""The PostGIS backend beyond the contract: its plans use the indexes, repeats write
nothing, searches are bounded in time, and it runs from threads and under gevent."""

from __future__ import annotations

import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import psycopg2.errors
import pytest
from psycopg2 import sql

from plugins.geo import open_index
from plugins.geo.postgis import PostgisGeoIndex
from server.config import load
from server.db import Txn
from server.domain.geo import GeoPoint, GeoQuery, haversine_m
from server.store import geo as store
from tests.helpers import REPO, scrubbed_env
from tests.integration.conftest import Env


def city(n: int, seed: int = 3) -> list[GeoPoint]:
    rng = random.Random(seed)
    return [GeoPoint(i, rng.randint(1, 500), 52.52 + rng.gauss(0, 0.05),
                     13.40 + rng.gauss(0, 0.08), rng.randint(0, 10**9)) for i in range(1, n + 1)]


def plan(index: PostgisGeoIndex, q: GeoQuery, window: int | None = None) -> str:
    """The plan of a statement a search for ``q`` runs, with the search's settings."""
    def explain(txn: Txn) -> str:
        store.search_settings_txn(txn, q, 5000)
        params = store.search_params(q, []) | {"window": window}
        statement = sql.SQL("EXPLAIN ") + store.search_sql(store.table(None), q, window)
        return "\n".join(r[0] for r in txn.fetchall(statement, params))

    return index.db.run_interaction("explain", explain)


def test_searches_use_the_indexes(env: Env) -> None:
    """Radius filters are GiST index conditions; nearest-first is a KNN index scan (an
    ``Order By`` on the index) that stops at the limit instead of sorting every hit;
    newest-first in a dense area walks the time index; no search is JIT-compiled."""
    index = open_index(env.config, env.router)
    assert isinstance(index, PostgisGeoIndex)
    assert index.bulk_load(city(20_000)) == 20_000
    nearest = GeoQuery(52.52, 13.40, 5000, limit=20, order="distance")
    knn = plan(index, nearest)
    assert "Index Scan using geo_points_main_geog" in knn and "Order By: (geog <->" in knn, knn
    newest = plan(index, GeoQuery(52.52, 13.40, 50))
    assert "geo_points_main_geog" in newest and "Index Cond: (geog &&" in newest, newest
    walk = plan(index, GeoQuery(52.52, 13.40, 5000), window=500)
    assert "Index Scan using geo_points_main_time" in walk, walk
    assert "JIT" not in knn + newest + walk
    hits = index.search(nearest)
    assert len(hits) == 20 and hits == sorted(hits, key=lambda h: (h.distance_m, h.media_id))


def test_newest_first_is_exact_whichever_way_it_is_found(env: Env) -> None:
    """Newest-first searches in a dense city (found by walking the time index) and around it
    (found by the GiST index), with and without time ranges, equal a brute-force scan."""
    index = open_index(env.config, env.router)
    points = city(20_000) + [GeoPoint(30_000 + i, 1, 52.2 + i * 1e-4, 13.0, i * 1000)
                             for i in range(300)]
    index.bulk_load(points)
    rng = random.Random(5)
    for i in range(60):
        lat, lng = (52.52, 13.40) if i % 3 else (52.2 + rng.random() * 0.03, 13.0)
        lat, lng = lat + rng.gauss(0, 0.02), lng + rng.gauss(0, 0.02)
        radius = rng.choice([300.0, 1000.0, 5000.0])
        lo = rng.choice([None, rng.randint(0, 10**9)])
        q = GeoQuery(lat, lng, radius, min_ms=lo, limit=rng.choice([1, 20, 100]))
        inside = [p for p in points if haversine_m(lat, lng, p.lat, p.lng) <= radius
                  and (lo is None or p.created_ms >= lo)]
        inside.sort(key=lambda p: (-p.created_ms, -p.media_id))
        assert [h.media_id for h in index.search(q)] == [p.media_id for p in inside[:q.limit]]


def test_repeating_an_upsert_writes_no_new_row_version(env: Env) -> None:
    """Re-applying the same point (a consumer re-running a batch) leaves the row untouched;
    a changed point is rewritten."""
    index = open_index(env.config, env.router)
    assert isinstance(index, PostgisGeoIndex)

    def xmin(txn: Txn) -> str:
        row = txn.fetchone("SELECT xmin::text FROM geo_points_main WHERE media_id = 1")
        assert row is not None
        return str(row[0])

    index.upsert([GeoPoint(1, 2, 3.0, 4.0, 5)])
    before = index.db.run_interaction("xmin", xmin)
    index.upsert([GeoPoint(1, 2, 3.0, 4.0, 5)])
    assert index.db.run_interaction("xmin", xmin) == before
    index.upsert([GeoPoint(1, 2, 3.0, 4.0, 6)])
    assert index.db.run_interaction("xmin", xmin) != before


def test_a_search_is_cut_off_at_the_timeout(env: Env) -> None:
    """A search that cannot finish within geo.timeout_ms is cancelled (here it waits on a
    lock another session holds), and the pooled connection stays usable."""
    index = PostgisGeoIndex(env.router.databases()[0], timeout_ms=200)
    blocker = index.db.connect()
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE geo_points_main IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(psycopg2.errors.QueryCanceled):
            index.search(GeoQuery(1.0, 1.0))
    finally:
        blocker.rollback()
        blocker.close()
    assert index.search(GeoQuery(1.0, 1.0)) == []


def test_concurrent_searches_from_threads(env: Env) -> None:
    """The service calls the index from its threadpool: concurrent searches and writes from
    many threads all succeed and agree with a single-threaded search."""
    index = open_index(env.config, env.router)
    index.upsert(city(2000))
    q = GeoQuery(52.52, 13.40, 2000, limit=50, order="distance")
    expected = index.search(q)
    with ThreadPoolExecutor(8) as pool:
        writes = [pool.submit(index.upsert, [GeoPoint(10_000 + i, 1, -40.0, -40.0, i)])
                  for i in range(20)]
        results = list(pool.map(lambda _: index.search(q), range(40)))
        for w in writes:
            w.result()
    assert all(r == expected for r in results)
    assert index.count() == 2020


def test_searches_under_gevent(env: Env) -> None:
    """Workers run the index under gevent with psycogreen: concurrent greenlets search and
    write through the same object."""
    code = """
from workers.green import patch
patch()
import gevent
from plugins.geo import open_index
from server.config import load
from server.domain.geo import GeoPoint, GeoQuery, haversine_m
from server.store import geo as store
index = open_index(load(search_default=False))
index.upsert([GeoPoint(i, 1, 10.0, 10.0 + i * 1e-4, i) for i in range(1, 101)])
jobs = [gevent.spawn(index.search, GeoQuery(10.0, 10.0, 5000, limit=100)) for _ in range(20)]
gevent.joinall(jobs, raise_error=True)
print(sorted({len(j.value) for j in jobs}), index.count())
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=scrubbed_env(env.vars),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[100]", "100"]


def test_an_index_without_a_router_opens_its_own_pool(env: Env) -> None:
    """Without the caller's router the backend opens (and closes) a pool of its own."""
    index = open_index(load(env=env.vars, search_default=False))
    assert isinstance(index, PostgisGeoIndex)
    assert index.db not in env.router.databases() and index.db.dsn == env.config.geo.postgis_dsn
    assert index.count() == 0
    index.close()
    with pytest.raises(RuntimeError, match="closed"):
        index.count()
