"""The ``blocks`` consumer: a block removes the follow edges both ways.

The blocker's own edge is removed inline, in the block's transaction (same shard), if it
exists as the block decides; a follow by the blocker committing meanwhile (another device)
is removed here, as the blocked user's edge to the blocker is: it lives in the blocked
user's shard, so this consumer removes it by appending ``UserUnfollowed(reason="blocked")``
to that follow stream. It also
watches new follow edges: a follow that raced a block (each decided before the other
committed) is removed when either event is applied, since whichever is applied second sees
the other.

Every event asks the same question of the state as it is now, never of event ids (ids are
not commit order across shards: another database's clock, or a burst of ids, puts a follow
made before a block above it): does the edge exist, and does either user block the other?
If both, the edge goes. The edge is read first and removed only if it is still the same edge
(same id), so an edge removed is one that existed while a block was in effect: a re-follow
after an unblock is never taken by an old block applied again (at least once), and applying
an event again finds nothing left to remove. Left open: a block applied only after it was
undone (the blocks consumer lagging behind an unblock) removes nothing, so a follow made
before it survives; the blocker's own edge went inline all the same.
"""

from __future__ import annotations

import logging

from server.db import RetryTransaction, Txn
from server.domain.graph import UserBlocked, UserUnfollowed, follow_stream
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


def remove_if_blocked(ctx: WorkerContext, follower: int, followee: int) -> bool:
    """Append the removal of the edge (follower, followee) if it exists and either user
    blocks the other; returns whether an event was appended."""
    db = ctx.router.database(shard_of(follower))
    edge_id = db.run_interaction("block_edge", graph.edge, follower, followee)[1]
    blocker = _blocker(ctx, follower, followee) if edge_id is not None else None
    if blocker is None:
        return False
    stream = follow_stream(follower, followee)

    def txn_fn(txn: Txn) -> bool:
        if graph.edge(txn, follower, followee)[1] != edge_id:
            return False  # removed (and maybe made again, after the block) meanwhile
        event = UserUnfollowed(follower=follower, followee=followee, reason="blocked")
        request = AppendRequest(shard_of(follower), stream, (NewEvent(event, actor=blocker),),
                                expected_version=ctx.store.stream_version_txn(txn, stream))
        try:
            ctx.store.append_txn(txn, [request])
        except StreamConflict as e:
            raise RetryTransaction(str(e)) from e
        return True

    return db.run_interaction("block_edge", txn_fn)


@consumer("blocks", "UserBlocked", "FollowRequested", "UserFollowed", "FollowApproved",
          batch_size=200)
def blocks(ctx: WorkerContext, events: list[RecordedEvent]) -> None:
    removed = 0
    for e in events:
        if isinstance(e.data, UserBlocked):
            # the blocked user's edge to the blocker, and the blocker's own to them: the
            # block took that one inline, unless a follow committed as the block decided
            removed += remove_if_blocked(ctx, e.data.blocked, e.data.blocker)
            removed += remove_if_blocked(ctx, e.data.blocker, e.data.blocked)
        else:
            removed += remove_if_blocked(
                ctx, e.data.follower, e.data.followee)  # type: ignore[attr-defined]
    if removed:
        log.info("blocks: removed %d follow edges", removed)
