"""The ``blocks`` consumer: a block removes the follow edges both ways.

The blocker's own edge is removed inline, in the block's transaction (same shard). The
blocked user's edge to the blocker lives in the blocked user's shard, so this consumer
removes it by appending ``UserUnfollowed(reason="blocked")`` to that follow stream. It also
watches new follow edges: a follow that raced a block (each decided before the other
committed) is removed when either event is applied, since whichever is applied second sees
the other. Removal is decided on the state read in the appending transaction, so applying an
event again finds nothing left to remove.
"""

from __future__ import annotations

import logging

from server.db import RetryTransaction, Txn
from server.domain.graph import Edge, UserBlocked, UserUnfollowed, follow_stream
from server.domain.ids import shard_of
from server.domain.log import AppendRequest, NewEvent, RecordedEvent, StreamConflict
from server.store import graph
from workers.consumers import consumer
from workers.context import WorkerContext

log = logging.getLogger(__name__)


def _blocker(ctx: WorkerContext, a: int, b: int) -> int | None:
    """Whichever of a and b blocks the other (a first), or None."""
    for blocker, blocked in ((b, a), (a, b)):
        found = ctx.router.database(shard_of(blocker)).run_interaction(
            "block_id", graph.block_id, blocker, blocked)
        if found is not None:
            return blocker
    return None


def remove_edge(ctx: WorkerContext, follower: int, followee: int, actor: int,
                created_before: int | None = None) -> bool:
    """Append the removal of the edge if it exists (and, with ``created_before``, was made
    before that event id); returns whether an event was appended."""
    stream = follow_stream(follower, followee)
    shard = shard_of(follower)

    def txn_fn(txn: Txn) -> bool:
        state, edge_id = graph.edge(txn, follower, followee)
        if state is Edge.NONE or (created_before is not None and edge_id is not None
                                  and edge_id > created_before):
            return False
        event = UserUnfollowed(follower=follower, followee=followee, reason="blocked")
        request = AppendRequest(shard, stream, (NewEvent(event, actor=actor),),
                                expected_version=ctx.store.stream_version_txn(txn, stream))
        try:
            ctx.store.append_txn(txn, [request])
        except StreamConflict as e:
            raise RetryTransaction(str(e)) from e
        return True

    return ctx.router.database(shard).run_interaction("block_edge", txn_fn)


@consumer("blocks", "UserBlocked", "FollowRequested", "UserFollowed", "FollowApproved",
          batch_size=200)
def blocks(ctx: WorkerContext, events: list[RecordedEvent]) -> None:
    removed = 0
    for e in events:
        if isinstance(e.data, UserBlocked):
            removed += remove_edge(ctx, e.data.blocked, e.data.blocker, e.data.blocker,
                                   created_before=e.id)
            continue
        follower, followee = e.data.follower, e.data.followee  # type: ignore[attr-defined]
        blocker = _blocker(ctx, follower, followee)
        if blocker is not None:
            removed += remove_edge(ctx, follower, followee, blocker)
    if removed:
        log.info("blocks: removed %d follow edges", removed)
