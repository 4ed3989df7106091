"""The geo index (``server.interfaces.IGeoIndex``): PostGIS by default, Solr to scale out.

``open_index(config, router)`` returns the backend ``geo.backend`` names, bound to the live
namespace. Both backends are synchronous and import neither Twisted nor gevent: the service
calls them through ``ctx.blocking``, workers directly (psycopg2 is green under psycogreen,
pysolr's ``requests`` under gevent's monkey-patching).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

from server.config import Config
from server.interfaces import IGeoIndex, IShardRouter

T = TypeVar("T")


def open_index(config: Config, router: IShardRouter | None = None) -> IGeoIndex:
    """The configured geo index. PostGIS shares ``router``'s pool for its database when given
    (``geo.postgis_dsn`` is always one of the shard map's), else opens a pool of its own."""
    if config.geo.backend == "solr":
        from plugins.geo.solr import SolrGeoIndex

        return SolrGeoIndex.from_config(config)
    from plugins.geo.postgis import PostgisGeoIndex

    return PostgisGeoIndex.from_config(config, router)


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of up to ``size`` (bulk loads and batched updates)."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk
