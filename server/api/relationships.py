"""Relationships: follows, followed-by, requested-by, and ``/v1/users/{id}/relationship``.

An action is decided (``server/domain/graph.py``) in ONE transaction on the shard of the
stream it appends to, with the stream's version read there (a concurrent writer makes the
append conflict and the interaction run again): follow, unfollow, block and unblock on the
caller's shard; approve and ignore on the requester's, where the request's stream lives.
``followed-by`` and ``requested-by`` read the followers side, which the ``followers``
consumer writes after the fact: they are eventually consistent and say so in the
``X-Consistency`` header.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from klein import Klein

from server.api.endpoint import API, Call, Reply
from server.api.envelope import APIError, invalid, not_found
from server.api.pagination import COUNT, CURSOR, id_cursor, paginate
from server.api.params import Param
from server.api.users import USER_ID, USER_SHORT, not_allowed, short_json, target_id
from server.context import ServiceContext
from server.db import RetryTransaction, Txn
from server.domain import graph as rules
from server.domain.events import Event
from server.domain.graph import Action, Edge, Pair, RelationshipError
from server.domain.ids import shard_of
from server.domain.log import AppendRequest, NewEvent, StreamConflict
from server.store import accounts, graph

RELATIONSHIP: dict[str, Any] = {
    "type": "object",
    "required": ["outgoing_status", "incoming_status", "target_user_is_private"],
    "properties": {
        "outgoing_status": {"type": "string", "enum": ["follows", "requested", "none"]},
        "incoming_status": {"type": "string",
                            "enum": ["followed_by", "requested_by", "blocked_by_you", "none"]},
        "target_user_is_private": {"type": "boolean"},
    },
}
EVENTUAL = ((b"x-consistency", b"eventual"),)


def read_pair(call: Call, them: int) -> Pair:
    """Both sides of (caller, them), each read on its own shard; 404 when they do not exist
    or block the caller."""
    me = call.user_id

    def theirs(txn: Txn) -> tuple[accounts.User | None, Edge, bool]:
        return (accounts.get_user(txn, them), graph.edge(txn, them, me)[0],
                graph.block_id(txn, them, me) is not None)

    def mine(txn: Txn) -> tuple[Edge, bool]:
        return graph.edge(txn, me, them)[0], graph.block_id(txn, me, them) is not None

    router = call.ctx.router
    user, incoming, they_block = router.database(shard_of(them)).run_interaction("pair", theirs)
    if user is None or (they_block and me != them):
        raise not_found("this user does not exist")
    outgoing, i_block = router.database(shard_of(me)).run_interaction("pair", mine)
    return Pair(me, them, outgoing, incoming, i_block, they_block, user.is_private)


def relationship_json(pair: Pair) -> dict[str, Any]:
    return {
        "outgoing_status": rules.outgoing_status(pair.outgoing),
        "incoming_status": rules.incoming_status(pair.incoming, pair.i_block),
        "target_user_is_private": pair.them_private,
    }


def act(call: Call, pair: Pair, action: Action) -> Pair:
    """Decide and append ``action``; returns the pair as the action left it (for a retry with
    the same Idempotency-Key: as the first request left it, derived from its events)."""
    incoming = action in rules.INCOMING_ACTIONS
    follower, followee = (pair.them, pair.me) if incoming else (pair.me, pair.them)
    shard = shard_of(follower)
    key = call.idempotency_key(f"u{pair.me}")
    store = call.ctx.store

    def txn_fn(txn: Txn) -> list[Event]:
        if key is not None:
            replay = store.replayed_txn(txn, shard, key)
            if replay is not None:
                recorded = [store.get_txn(txn, i) for i in replay.event_ids]
                return [e.data for e in recorded if e is not None]
        # The streams' versions first, then the state decided on: a writer committing in
        # between makes the append conflict and the decision run again (append_latest_txn)
        follows = rules.follow_stream(follower, followee)
        blocks = rules.block_stream(pair.me, pair.them)
        versions = {s: store.stream_version_txn(txn, s) for s in (follows, blocks)}
        edge = graph.edge(txn, follower, followee)[0]
        fresh = (replace(pair, incoming=edge) if incoming
                 else replace(pair, outgoing=edge,
                              i_block=graph.block_id(txn, pair.me, pair.them) is not None))
        decide = rules.decide_incoming if incoming else rules.decide_outgoing
        events = decide(fresh, action)
        by_stream: dict[str, list[Event]] = {}
        for e in events:
            by_stream.setdefault(blocks if e.TYPE in rules.BLOCK_TYPES else follows, []).append(e)
        requests = [
            AppendRequest(shard, stream, tuple(NewEvent(e, actor=pair.me) for e in evs),
                          expected_version=versions[stream],
                          idempotency_key=key if i == 0 else None)
            for i, (stream, evs) in enumerate(by_stream.items())
        ]
        if requests:
            try:
                store.append_txn(txn, requests)
            except StreamConflict as e:
                raise RetryTransaction(str(e)) from e
        return events

    try:
        events = call.ctx.router.database(shard).run_interaction("relationship", txn_fn)
    except RelationshipError as e:
        if e.kind == "not_allowed":
            raise APIError(400, "APINotAllowedError", str(e)) from None
        raise invalid(str(e)) from None
    blocks = [e.TYPE == "UserBlocked" for e in events if e.TYPE in rules.BLOCK_TYPES]
    follows = [e for e in events if e.TYPE in rules.EDGE_AFTER]
    if incoming:
        return replace(pair, incoming=rules.apply(pair.incoming, follows))
    return replace(pair, outgoing=rules.apply(pair.outgoing, follows),
                   i_block=blocks[-1] if blocks else pair.i_block)


def edge_page(call: Call, side: tuple[str, str], owner: int, state: Edge) -> Reply:
    """A page of the owner's edges on one side, as short users."""
    before = id_cursor(call)
    rows = call.ctx.router.database(shard_of(owner)).run_interaction(
        "edge_page", graph.page, side, owner, state, before, call.params["count"] + 1)
    page, pagination = paginate(call, rows, lambda row: str(row[0]))
    users = accounts.users_by_id(call.ctx.router, [other for _, other in page])
    data = [short_json(users[other]) for _, other in page if other in users]
    return Reply(data, pagination=pagination,
                 headers=EVENTUAL if side is graph.FOLLOWERS else ())


def listable(call: Call) -> int:
    """The user whose edges are asked for, if the caller may see them."""
    them = target_id(call)
    if them == call.user_id:
        return them
    pair = read_pair(call, them)
    if not rules.may_view(pair.them_private, pair.outgoing, False):
        raise not_allowed()
    return them


USERS_PAGE: dict[str, Any] = {"type": "array", "items": USER_SHORT}


def routes(app: Klein, ctx: ServiceContext) -> None:
    api = API(app, ctx)
    page_params = (USER_ID, COUNT, CURSOR)

    @api.endpoint("GET", "/v1/users/{user_id}/follows", "The users this user follows",
                  scope="follower_list", params=page_params, data=USERS_PAGE, paginated=True,
                  tag="relationships")
    def follows(call: Call) -> Reply:
        return edge_page(call, graph.FOLLOWS, listable(call), Edge.ACTIVE)

    @api.endpoint("GET", "/v1/users/{user_id}/followed-by", "The users following this user",
                  scope="follower_list", params=page_params, data=USERS_PAGE, paginated=True,
                  tag="relationships",
                  description="Read from the followers side, which a consumer of the log "
                  "writes: eventually consistent (X-Consistency: eventual).")
    def followed_by(call: Call) -> Reply:
        return edge_page(call, graph.FOLLOWERS, listable(call), Edge.ACTIVE)

    @api.endpoint("GET", "/v1/users/self/requested-by",
                  "The users who asked to follow the token's user", scope="follower_list",
                  params=(COUNT, CURSOR), data=USERS_PAGE, paginated=True,
                  tag="relationships",
                  description="Eventually consistent (X-Consistency: eventual).")
    def requested_by(call: Call) -> Reply:
        return edge_page(call, graph.FOLLOWERS, call.user_id, Edge.REQUESTED)

    @api.endpoint("GET", "/v1/users/{user_id}/relationship",
                  "The token's user's relationship with a user", scope="follower_list",
                  params=(USER_ID,), data=RELATIONSHIP, tag="relationships")
    def relationship(call: Call) -> Reply:
        return Reply(relationship_json(read_pair(call, target_id(call))))

    @api.endpoint("POST", "/v1/users/{user_id}/relationship",
                  "Follow, unfollow, approve, ignore, block or unblock a user",
                  scope="relationships", data=RELATIONSHIP, tag="relationships",
                  params=(USER_ID, Param("action", where="body", required=True,
                                         enum=tuple(a.value for a in Action))),
                  description="A follow of a private account is a request until approved. "
                  "Send an Idempotency-Key to make a retry return the first answer.")
    def change(call: Call) -> Reply:
        them = target_id(call)
        if them == call.user_id:
            raise invalid("you cannot change a relationship with yourself")
        pair = read_pair(call, them)
        return Reply(relationship_json(act(call, pair, Action(call.params["action"]))))
