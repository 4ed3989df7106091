"""Geo search through the real relay, gearmand and worker processes: an upload with a place
is found once rendered and indexed; a deletion and a switch to private leave the index
itself (not only the API's checks); switching back shows the medium again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from plugins.geo import open_index
from server.domain.geo import GeoQuery
from server.interfaces import IGeoIndex
from tests.helpers import Process, wait_for
from tests.integration.apiclient import Api
from tests.integration.conftest import Env
from tests.integration.mediakit import picture, upload
from tests.integration.recording import running

HERE = (-33.8568, 151.2153)


@pytest.fixture(scope="module")
def pool(module_env: Env) -> Iterator[list[Process]]:
    with running(module_env.vars, concurrency=4) as procs:
        yield procs


@pytest.fixture(scope="module")
def index(module_env: Env) -> Iterator[IGeoIndex]:
    geo = open_index(module_env.config, module_env.router)
    yield geo
    geo.close()


def test_the_worker_pool_keeps_the_index(api: Api, pool: list[Process], index: IGeoIndex
                                         ) -> None:
    """Indexed when ready, hidden when the owner goes private, shown again when public,
    removed when deleted: each within a deadline, through the running consumer."""
    (_, to), (_, ts) = api.user(), api.user()
    r = upload(api, to, picture(), lat=str(HERE[0]), lng=str(HERE[1]),
               location_name="Opera House")
    assert r.status_code == 200, r.text
    media_id = int(r.json()["data"]["id"])
    anonymous = GeoQuery(*HERE, radius_m=100)

    def found() -> list[int]:
        return [h.media_id for h in index.search(anonymous)]

    def searched(token: str) -> list[int]:
        got = api.get("/v1/media/search", token, lat=HERE[0], lng=HERE[1], distance=100)
        assert got.status_code == 200, got.text
        return [int(m["id"]) for m in got.json()["data"]]

    wait_for(lambda: found() == [media_id], 30, "the medium in the index")
    assert searched(ts) == [media_id]
    wait_for(lambda: api.get(f"/v1/locations/{media_id}", ts).status_code == 200, 30,
             "the location recorded")

    assert api.post("/v1/users/self", to, is_private="true").status_code == 200
    wait_for(lambda: found() == [], 30, "the point hidden")
    assert searched(ts) == [] and searched(to) == [media_id]
    assert api.post("/v1/users/self", to, is_private="false").status_code == 200
    wait_for(lambda: found() == [media_id], 30, "the point shown again")

    r = api.http.delete(f"/v1/media/{media_id}", headers={"Authorization": f"Bearer {to}"})
    assert r.status_code == 200, r.text
    wait_for(lambda: index.count() == 0, 30, "the point removed")
    assert searched(to) == []
