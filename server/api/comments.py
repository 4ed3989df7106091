"""``/v1/media/{id}/comments``: a medium's comments, commenting, deleting a comment.

A comment is checked against the v1 API's rules (``server/domain/comments.py``), then
appended in ONE transaction on the medium's shard: its id from that shard's ``next_id()``,
``CommentAdded`` on ``comment:{id}``, the row and the medium's counter written inline.
Hashtags in the owner's comments tag the medium; ``@mentions`` reach the mentioned users'
activity. A comment may be deleted by its author or the medium's owner.
"""

from __future__ import annotations

from typing import Any

from klein import Klein

from server.api.endpoint import API, Call, Reply
from server.api.envelope import APIError, not_found
from server.api.mediaview import COMMENT, MEDIA_ID, media_id_of, one
from server.api.pagination import COUNT, CURSOR, id_cursor, paginate
from server.api.params import Param
from server.api.users import short_json
from server.context import ServiceContext
from server.db import Txn
from server.domain import comments as rules
from server.domain import tags as tagging
from server.domain.comments import CommentAdded, CommentDeleted, CommentError
from server.domain.ids import shard_of
from server.domain.log import AppendRequest, NewEvent
from server.domain.media import State
from server.shards import mapped_shard
from server.store import accounts, comments
from server.store import media as media_store
from server.store.comments import Comment
from server.store.events import append_latest_txn


def comment_json(c: Comment, author: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(c.id), "text": c.text, "created_time": str(c.created_ms // 1000),
            "from": author}


def routes(app: Klein, ctx: ServiceContext) -> None:
    api = API(app, ctx)

    @api.endpoint("GET", "/v1/media/{media_id}/comments", "A medium's comments",
                  scope="public_content", tag="comments", params=(MEDIA_ID, COUNT, CURSOR),
                  data={"type": "array", "items": COMMENT}, paginated=True,
                  description="Oldest first, as the v1 API listed them.")
    def list_comments(call: Call) -> Reply:
        media_id = media_id_of(call)
        one(call, media_id)
        rows = ctx.router.database(shard_of(media_id)).run_interaction(
            "comments", comments.page, media_id, id_cursor(call), call.params["count"] + 1)
        page, pagination = paginate(call, rows, lambda c: str(c.id))
        users = accounts.users_by_id(ctx.router, [c.author for c in page])
        return Reply([comment_json(c, short_json(users[c.author])) for c in page
                      if c.author in users], pagination=pagination)

    @api.endpoint(
        "POST", "/v1/media/{media_id}/comments", "Comment on a medium", scope="comments",
        tag="comments", data=COMMENT,
        params=(MEDIA_ID, Param("text", where="body", required=True, max_length=2000)),
        description="At most 300 characters (APICommentTooLongError), 4 hashtags "
        "(APICommentTooManyTagsError), 1 URL (APICommentTooManyURLsError), not all capital "
        "letters (APICommentAllCapsError).")
    def add_comment(call: Call) -> Reply:
        try:
            text = rules.check_comment(call.params["text"])
        except CommentError as e:
            raise APIError(400, e.error_type, str(e)) from None
        media_id = media_id_of(call)
        m = one(call, media_id)
        if m.state is not State.READY:
            raise not_found("invalid media id")
        shard = shard_of(media_id)
        key = call.idempotency_key(f"u{call.user_id}")

        def txn_fn(txn: Txn) -> int:
            if key is not None:
                replay = ctx.store.replayed_txn(txn, shard, key)
                if replay is not None:
                    first = ctx.store.get_txn(txn, replay.event_ids[0])
                    assert first is not None and isinstance(first.data, CommentAdded)
                    return first.data.comment_id
            if media_store.state_of_txn(txn, media_id) is not State.READY:
                raise not_found("invalid media id")
            comment_id = accounts.new_id(txn, shard)
            event = CommentAdded(
                comment_id=comment_id, media_id=media_id, media_owner=m.owner_id,
                author=call.user_id, text=text,
                tags=rules.comment_tags(text, call.user_id, m.owner_id),
                mentions=tagging.mentions(text))
            ctx.store.append_txn(txn, [AppendRequest(
                shard, rules.comment_stream(comment_id),
                (NewEvent(event, actor=call.user_id),), expected_version=0,
                idempotency_key=key)])
            return comment_id

        comment_id = ctx.router.database(shard).run_interaction("comment", txn_fn)
        found = ctx.router.database(shard).run_interaction("comment", comments.get_txn,
                                                           comment_id)
        assert found is not None
        me = accounts.users_by_id(ctx.router, [call.user_id])[call.user_id]
        return Reply(comment_json(found, short_json(me)))

    @api.endpoint(
        "DELETE", "/v1/media/{media_id}/comments/{comment_id}", "Delete a comment",
        scope="comments", tag="comments", data={"type": "null"},
        params=(MEDIA_ID, Param("comment_id", where="path", required=True,
                                pattern=r"^[0-9]{1,19}$")),
        description="By its author or the medium's owner; others get APINotAllowedError.")
    def delete_comment(call: Call) -> Reply:
        media_id = media_id_of(call)
        m = one(call, media_id)
        comment_id = int(call.params["comment_id"])
        shard = shard_of(media_id)

        def txn_fn(txn: Txn) -> None:
            def decide() -> list[CommentDeleted]:
                c = comments.get_txn(txn, comment_id) \
                    if mapped_shard(ctx.router, comment_id) == shard else None
                if c is None or c.media_id != media_id or c.deleted:
                    raise not_found("invalid comment id")
                if not rules.may_delete(call.user_id, c.author, m.owner_id):
                    raise APIError(400, "APINotAllowedError",
                                   "only the comment's author or the medium's owner may delete "
                                   "it")
                return [CommentDeleted(comment_id=comment_id, media_id=media_id,
                                       media_owner=m.owner_id, author=c.author,
                                       by=call.user_id)]

            # deleted at the same time by the author and the owner: one wins, the other
            # decides again on the deleted comment (404)
            append_latest_txn(txn, ctx.store, shard, rules.comment_stream(comment_id), decide,
                              call.user_id)

        ctx.router.database(shard).run_interaction("delete_comment", txn_fn)
        return Reply(None)
