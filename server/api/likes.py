"""``/v1/media/{id}/likes``: who likes a medium, like, unlike.

A like is decided and appended in ONE transaction on the medium's shard: one prepared
statement reads the medium, its owner's privacy, a block and the current like with its
stream's version; the append writes ``MediaLiked`` on ``like:{media}:{user}`` (a stream per
pair, so likers of a hot medium never conflict) and the inline projection inserts the like
row and moves the counter last. Liking twice is not an error (nothing is appended), as in the
v1 API. A private account's media need an approved follower: that edge lives on the liker's
shard and is read first, only for private accounts.
"""

from __future__ import annotations

from klein import Klein

from server.api.endpoint import API, Call, Reply
from server.api.envelope import not_found
from server.api.mediaview import MEDIA_ID, media_id_of, one
from server.api.pagination import COUNT, CURSOR, id_cursor, paginate
from server.api.relationships import USERS_PAGE
from server.api.users import not_allowed, short_json
from server.context import ServiceContext
from server.db import RetryTransaction, Txn
from server.domain.graph import Edge
from server.domain.ids import shard_of
from server.domain.likes import decide_like, like_stream
from server.domain.log import AppendRequest, NewEvent, StreamConflict
from server.domain.media import State
from server.store import accounts, graph, likes


class _FollowerOnly(Exception):
    """The medium's owner is private: whether the caller follows them must be read first."""


def like_txn(txn: Txn, call: Call, media_id: int, like: bool, key: str | None,
             follows: bool | None) -> None:
    user = call.user_id
    shard = shard_of(media_id)
    store = call.ctx.store
    if key is not None and store.replayed_txn(txn, shard, key) is not None:
        return
    stream = like_stream(media_id, user)
    st = likes.like_state_txn(txn, media_id, user, stream)
    own = st is not None and st.owner == user
    if st is None or st.blocked or st.state is State.DELETED or (
            st.state is not State.READY and not own):
        raise not_found("invalid media id")
    if st.owner_private and not own:
        if follows is None:
            raise _FollowerOnly
        if not follows:
            raise not_allowed()
    events = decide_like(st.liked, like, media_id, st.owner, user)
    if not events:
        return
    try:
        store.append_txn(txn, [AppendRequest(shard, stream,
                                             tuple(NewEvent(e, actor=user) for e in events),
                                             expected_version=st.version,
                                             idempotency_key=key)])
    except StreamConflict as e:  # the same user liking twice at once: decide again
        raise RetryTransaction(str(e)) from e


def change(call: Call, like: bool) -> Reply:
    media_id = media_id_of(call)
    key = call.idempotency_key(f"u{call.user_id}")
    db = call.ctx.router.database(shard_of(media_id))
    try:
        db.run_interaction("like", like_txn, call, media_id, like, key, None)
    except _FollowerOnly:
        owner = db.run_interaction("owner", _owner_txn, media_id)
        edge = call.ctx.router.database(shard_of(call.user_id)).run_interaction(
            "edge", graph.edge, call.user_id, owner)[0]
        db.run_interaction("like", like_txn, call, media_id, like, key,
                           edge is Edge.ACTIVE)
    return Reply(None)


def _owner_txn(txn: Txn, media_id: int) -> int:
    found = likes.like_state_txn(txn, media_id, 0, "")
    if found is None:
        raise not_found("invalid media id")
    return found.owner


def routes(app: Klein, ctx: ServiceContext) -> None:
    api = API(app, ctx)

    @api.endpoint("GET", "/v1/media/{media_id}/likes", "The users who like a medium",
                  scope="public_content", tag="likes", params=(MEDIA_ID, COUNT, CURSOR),
                  data=USERS_PAGE, paginated=True, description="Newest likers first.")
    def likers(call: Call) -> Reply:
        media_id = media_id_of(call)
        one(call, media_id)
        rows = ctx.router.database(shard_of(media_id)).run_interaction(
            "likers", likes.likers_page, media_id, id_cursor(call), call.params["count"] + 1)
        page, pagination = paginate(call, rows, lambda row: str(row[0]))
        users = accounts.users_by_id(ctx.router, [u for _, u in page])
        return Reply([short_json(users[u]) for _, u in page if u in users],
                     pagination=pagination)

    @api.endpoint("POST", "/v1/media/{media_id}/likes", "Like a medium", scope="likes",
                  tag="likes", params=(MEDIA_ID,), data={"type": "null"},
                  description="Liking a medium twice changes nothing. Unknown, deleted or "
                  "hidden media: 404 APINotFoundError; a private account's media when not "
                  "an approved follower: APINotAllowedError.")
    def like(call: Call) -> Reply:
        return change(call, True)

    @api.endpoint("DELETE", "/v1/media/{media_id}/likes", "Unlike a medium", scope="likes",
                  tag="likes", params=(MEDIA_ID,), data={"type": "null"})
    def unlike(call: Call) -> Reply:
        return change(call, False)
