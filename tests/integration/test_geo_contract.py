"""The geo index contract (``geo_contract.py``) against every backend: PostGIS on the suite's
PostgreSQL, Solr on the local Solr server, and a real Solr when ``SOLR_URL`` is set."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from plugins.geo.postgis import PostgisGeoIndex
from plugins.geo.solr import SolrGeoIndex, solr_client
from scripts.fakes.solr import FakeSolr
from server.interfaces import IGeoIndex
from tests.integration import geo_contract
from tests.integration.conftest import Env

SOLR_URL = os.environ.get("SOLR_URL", "")


@pytest.fixture(params=["postgis", "solr"])
def index(request: pytest.FixtureRequest) -> Iterator[IGeoIndex]:
    if request.param == "postgis":
        env: Env = request.getfixturevalue("env")
        pg = PostgisGeoIndex.from_config(env.config, env.router)
        assert pg.db in env.router.databases()  # shares the service's pool
        yield pg
        pg.close()
    else:
        fake = FakeSolr()
        solr = SolrGeoIndex(solr_client(fake.start(), 5000))
        yield solr
        solr.close()
        fake.stop()


@pytest.mark.parametrize("check", geo_contract.CHECKS, ids=lambda c: c.__name__)
def test_contract(index: IGeoIndex, check: geo_contract.Check) -> None:
    """Each backend keeps each clause of the geo index contract (see the check's docstring)."""
    check(index)


def _real_solr() -> IGeoIndex:
    """The core at SOLR_URL, emptied (it must be a throwaway core made from our configset)."""
    client = solr_client(SOLR_URL, 10_000)
    client.delete(q="*:*", commit=True)
    return SolrGeoIndex(client)


@pytest.mark.skipif(
    not SOLR_URL,
    reason="SOLR_URL is not set: no real Solr to run the contract against (the local Solr "
    "server runs it in test_contract[solr-*]); set SOLR_URL to a throwaway core made from "
    "etc/solr/shutterlog-geo",
)
def test_contract_against_a_real_solr() -> None:
    """A real Solr core built from the shipped configset keeps the whole contract."""
    geo_contract.run_all(_real_solr)
