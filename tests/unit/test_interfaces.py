"""Every implementation provides the interface it declares."""

from zope.interface.verify import verifyObject

from server.domain.shards import ShardMap
from server.interfaces import IEventStore, IShardRouter
from server.shards import ShardRouter
from server.store.events import PostgresEventStore


def test_router_and_store_provide_their_interfaces() -> None:
    """ShardRouter is an IShardRouter and PostgresEventStore an IEventStore (pools are lazy)."""
    router = ShardRouter(ShardMap.split(4, ["postgresql://x/a", "postgresql://x/b"]))
    assert verifyObject(IShardRouter, router)
    assert verifyObject(IEventStore, PostgresEventStore(router))
    assert router.shards_of(router.database(3)) == [2, 3]
