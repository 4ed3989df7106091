"""Every implementation provides the interface it declares."""

from zope.interface.verify import verifyObject

from plugins.geo.postgis import PostgisGeoIndex
from plugins.geo.solr import SolrGeoIndex, solr_client
from server.db import Database
from server.domain.shards import ShardMap
from server.interfaces import IEventStore, IGeoIndex, IShardRouter
from server.shards import ShardRouter
from server.store.events import PostgresEventStore


def test_router_and_store_provide_their_interfaces() -> None:
    """ShardRouter is an IShardRouter and PostgresEventStore an IEventStore (pools are lazy)."""
    router = ShardRouter(ShardMap.split(4, ["postgresql://x/a", "postgresql://x/b"]))
    assert verifyObject(IShardRouter, router)
    assert verifyObject(IEventStore, PostgresEventStore(router))
    assert router.shards_of(router.database(3)) == [2, 3]


def test_geo_backends_provide_igeoindex() -> None:
    """Both geo backends, live or bound to a namespace, are IGeoIndex (nothing connects yet)."""
    pg = PostgisGeoIndex(Database("postgresql://x/a"))
    solr = SolrGeoIndex(solr_client("http://127.0.0.1:1/solr/geo", 1000))
    for index in (pg, solr, PostgisGeoIndex(Database("postgresql://x/a"), namespace="r1"),
                  SolrGeoIndex(solr.solr, namespace="r1")):
        assert verifyObject(IGeoIndex, index)
    assert (pg.namespace, solr.namespace) == (None, None)


def test_feed_store_provides_ifeedstore() -> None:
    """The Redis feed store is an IFeedStore (no connection is made)."""
    import redis

    from server.interfaces import IFeedStore
    from server.store.feeds import FeedStore

    assert verifyObject(IFeedStore, FeedStore(redis.Redis(port=1), 800, 800))
