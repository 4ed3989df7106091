"""Who may subscribe to which real-time channel: the same rules as the REST reads.

A viewer's own ``feed`` and ``activity`` need only a token. Anyone else's need the
``public_content`` scope, and then: ``media:{id}`` a medium the viewer may see
(``server.domain.media.may_see``: ready, not hidden by a block, a private account's only to
approved followers); ``user:{id}`` a user who does not block the viewer and, if private,
whom the viewer follows. Tag, location and geo channels carry public accounts' media only.
A subscription a private account's follow allows names that account (``Access.owner``):
the stream ends it when the follow ends. These run in the threadpool (PostgreSQL reads).
"""

from __future__ import annotations

from dataclasses import dataclass

from server.context import ServiceContext
from server.db import Txn
from server.domain import media as rules
from server.domain.graph import Edge
from server.domain.ids import shard_of
from server.domain.realtime import Channel
from server.shards import mapped_shard
from server.store import accounts, graph
from server.store.media import hydrate

SCOPE = "public_content"


@dataclass(frozen=True, slots=True)
class Access:
    """Whether a viewer may subscribe to a channel: why not (``refusal``), or, when only
    following a private account allows it, that account (``owner``)."""

    refusal: str | None = None
    owner: int | None = None


def access(ctx: ServiceContext, viewer: int, scopes: frozenset[str], channel: Channel
           ) -> Access:
    """Whether ``viewer`` may subscribe to ``channel``."""
    if channel.kind in ("feed", "activity"):
        return Access()
    if SCOPE not in scopes:
        return Access(f"the {channel.kind} channels need the {SCOPE} scope")
    target = channel.target
    if channel.kind in ("media", "user") and (
            target is None or mapped_shard(ctx.router, target) is None):
        return Access(f"no such {channel.kind}")
    if channel.kind == "media":
        assert target is not None
        m = hydrate(ctx.router, [target], viewer).get(target)
        if m is None:
            return Access("no such media")
        follows = m.owner_private and _follows(ctx, viewer, m.owner_id)
        seen = rules.Viewer(viewer, m.owner_id, m.owner_private, follows, m.viewer_blocked)
        if not rules.may_see(seen, m.state):
            return Access("you may not see this media")
        return _allowed(viewer, m.owner_id if m.owner_private else None)
    if channel.kind == "user" and target != viewer:
        assert target is not None

        def read(txn: Txn) -> tuple[accounts.User | None, int | None]:
            return accounts.get_user(txn, target), graph.block_id(txn, target, viewer)

        user, block = ctx.router.database(shard_of(target)).run_interaction("stream_user", read)
        if user is None or block is not None:
            return Access("no such user")
        if user.is_private and not _follows(ctx, viewer, target):
            return Access("this account is private")
        return _allowed(viewer, target if user.is_private else None)
    return Access()


def _allowed(viewer: int, private_owner: int | None) -> Access:
    return Access(owner=private_owner if private_owner != viewer else None)


def _follows(ctx: ServiceContext, viewer: int, owner: int) -> bool:
    if viewer == owner:
        return True
    state, _ = ctx.router.database(shard_of(viewer)).run_interaction(
        "stream_follows", graph.edge, viewer, owner)
    return state is Edge.ACTIVE


def blocked(ctx: ServiceContext, viewer: int) -> frozenset[int]:
    """The users ``viewer`` blocks: their events never reach the viewer."""
    return frozenset(ctx.router.database(shard_of(viewer)).run_interaction(
        "stream_blocked", graph.blocked_users, viewer))
