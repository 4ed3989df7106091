"""``/v1/users``: sign-up, a user, and user search.

Sign-up hashes the password (argon2id), then in ONE transaction on the username's shard
answers a retry from its Idempotency-Key, checks the username claim, decides
(``server/domain/accounts.py``) and appends ``UserRegistered``; the inline projection writes
the claim and the user row, and of two racing sign-ups exactly one commits.
"""

from __future__ import annotations

from typing import Any

from klein import Klein

from server.api.endpoint import API, Call, Reply
from server.api.envelope import APIError, invalid, not_found
from server.api.pagination import COUNT, CURSOR, paginate
from server.api.params import Param
from server.context import ServiceContext
from server.db import RetryTransaction, Txn
from server.domain import accounts as rules
from server.domain.accounts import AccountError, Register, UserRegistered, user_stream
from server.domain.ids import decode_id
from server.domain.log import AppendRequest, NewEvent, StreamConflict
from server.interfaces import IEventStore
from server.passwords import hash_password
from server.shards import mapped_shard
from server.store import accounts, graph
from server.store.accounts import User

USER_ID = Param("user_id", where="path", required=True, pattern=r"^(self|[0-9]{1,19})$",
                description="a user id, or self for the token's user")

#: OpenAPI schemas of the user objects (the Instagram API's fields, ids as strings).
USER_SHORT: dict[str, Any] = {
    "type": "object",
    "required": ["id", "username", "full_name", "profile_picture"],
    "properties": {
        "id": {"type": "string"},
        "username": {"type": "string"},
        "full_name": {"type": "string"},
        "profile_picture": {"type": "string"},
    },
}
USER: dict[str, Any] = {
    "type": "object",
    "required": [*USER_SHORT["required"], "bio", "website", "is_business", "counts"],
    "properties": {
        **USER_SHORT["properties"],
        "bio": {"type": "string"},
        "website": {"type": "string"},
        "is_business": {"type": "boolean"},
        "is_private": {"type": "boolean"},
        "counts": {
            "type": "object",
            "required": ["media", "follows", "followed_by"],
            "properties": {k: {"type": "integer", "minimum": 0}
                           for k in ("media", "follows", "followed_by")},
        },
    },
}


def short_json(u: User) -> dict[str, Any]:
    return {"id": str(u.id), "username": u.username, "full_name": u.full_name,
            "profile_picture": ""}


def user_json(u: User) -> dict[str, Any]:
    return {
        **short_json(u), "bio": u.bio, "website": u.website, "is_business": False,
        "is_private": u.is_private,
        "counts": {"media": u.media, "follows": u.follows, "followed_by": u.followed_by},
    }


def target_id(call: Call, name: str = "user_id") -> int:
    """The user a path names: ``self`` is the token's user; an id that cannot exist is 404."""
    text = call.params[name]
    if text == "self":
        return call.user_id
    user_id = int(text)
    if mapped_shard(call.ctx.router, user_id) is None:
        raise not_found("this user does not exist")
    return user_id


def visible_user(call: Call, user_id: int) -> User:
    """The user, unless missing or blocking the caller (both look like a missing user)."""
    def txn_fn(txn: Txn) -> tuple[User | None, int | None]:
        user = accounts.get_user(txn, user_id)
        blocked = graph.block_id(txn, user_id, call.user_id) if user_id != call.user_id else None
        return user, blocked

    user, blocked = call.ctx.router.database(decode_id(user_id).shard).run_interaction(
        "visible_user", txn_fn)
    if user is None or blocked is not None:
        raise not_found("this user does not exist")
    return user


def sign_up_txn(txn: Txn, store: IEventStore, shard: int, cmd: Register, key: str | None
                 ) -> User:
    if key is not None:
        replay = store.replayed_txn(txn, shard, key)
        if replay is not None:
            first = store.get_txn(txn, replay.event_ids[0])
            assert first is not None and isinstance(first.data, UserRegistered)
            user = accounts.get_user(txn, first.data.user_id)
            assert user is not None
            return user
    user_id = accounts.new_id(txn, shard)
    events = rules.decide_register(accounts.username_owner(txn, shard, cmd.username), cmd,
                                   user_id)
    store.append_txn(txn, [AppendRequest(
        shard, rules.user_stream(user_id), tuple(NewEvent(e, actor=user_id) for e in events),
        expected_version=0, idempotency_key=key,
    )])
    user = accounts.get_user(txn, user_id)
    assert user is not None
    return user


def privacy_txn(txn: Txn, store: IEventStore, user_id: int, is_private: bool, key: str | None
                ) -> User:
    """Switch the account's privacy (nothing to append when it already is so); a retry with
    the same Idempotency-Key appends nothing again. The users row is the inline projection."""
    shard = decode_id(user_id).shard
    if key is None or store.replayed_txn(txn, shard, key) is None:
        user = accounts.get_user(txn, user_id)
        if user is None:
            raise not_found("this user does not exist")
        events = rules.decide_privacy(user_id, user.is_private, is_private)
        if events:
            stream = user_stream(user_id)
            try:
                store.append_txn(txn, [AppendRequest(
                    shard, stream, tuple(NewEvent(e, actor=user_id) for e in events),
                    expected_version=store.stream_version_txn(txn, stream),
                    idempotency_key=key)])
            except StreamConflict as e:
                raise RetryTransaction(str(e)) from e
    user = accounts.get_user(txn, user_id)
    assert user is not None
    return user


def routes(app: Klein, ctx: ServiceContext) -> None:
    api = API(app, ctx)

    @api.endpoint(
        "POST", "/v1/users", "Sign up: create an account", scope=None, data=USER,
        params=(
            Param("username", where="body", required=True, max_length=30,
                  description="1-30 letters, digits, periods and underscores; unique "
                  "case-insensitively"),
            Param("password", where="body", required=True, min_length=8, max_length=1024),
            Param("full_name", where="body", required=True, max_length=100),
            Param("bio", where="body", default="", max_length=300),
            Param("website", where="body", default="", max_length=300),
            Param("email", where="body", default="", max_length=254),
            Param("is_private", bool, where="body", default=False,
                  description="follows become requests the user approves"),
        ),
        description="No access token needed. Send an Idempotency-Key to make a retry return "
        "the first answer.",
    )
    def sign_up(call: Call) -> Reply:
        p = call.params
        try:
            rules.check_username(p["username"])
            rules.check_password(p["password"])
            rules.check_profile(p["full_name"], p["bio"], p["website"], p["email"])
        except AccountError as e:
            raise invalid(str(e)) from None
        cmd = Register(p["username"], hash_password(ctx.config.accounts, p["password"]),
                       p["full_name"], p["bio"], p["website"], p["email"], p["is_private"])
        shard = rules.username_shard(cmd.username, ctx.router.count)
        key = call.idempotency_key(f"signup:{rules.normalize(cmd.username)}")
        try:
            user = ctx.router.database(shard).run_interaction(
                "sign_up", sign_up_txn, ctx.store, shard, cmd, key)
        except AccountError as e:
            raise invalid(str(e)) from None
        return Reply(user_json(user))

    @api.endpoint(
        "GET", "/v1/users/search", "Search users by username prefix", scope="public_content",
        params=(Param("q", required=True, max_length=30, description="username prefix"),
                COUNT, CURSOR),
        data={"type": "array", "items": USER_SHORT}, paginated=True,
    )
    def search(call: Call) -> Reply:
        after = call.params["cursor"] or ""
        rows = accounts.search(ctx.router, call.params["q"], after, call.params["count"] + 1,
                               call.user_id)
        page, pagination = paginate(call, rows, lambda row: row[0])
        return Reply([short_json(u) for _, u in page], pagination=pagination)

    @api.endpoint(
        "POST", "/v1/users/self", "Make the caller's account private or public", scope="basic",
        data=USER,
        params=(Param("is_private", bool, where="body", required=True,
                      description="true: follows become requests the user approves, media "
                      "are seen by approved followers only and leave strangers' searches"),),
        description="Appends AccountPrivacyChanged (nothing when the account already is so). "
        "Pending follow requests stay pending when the account goes public. The geo index "
        "hides or shows the account's media when the geo_index consumer applies the event; "
        "reads check the users row at once.",
    )
    def set_privacy(call: Call) -> Reply:
        key = call.idempotency_key(f"u{call.user_id}")
        user = ctx.router.database(decode_id(call.user_id).shard).run_interaction(
            "set_privacy", privacy_txn, ctx.store, call.user_id, call.params["is_private"], key)
        return Reply(user_json(user))

    @api.endpoint(
        "GET", "/v1/users/{user_id}", "A user, with counts", params=(USER_ID,), data=USER,
        description="Scope basic for self; public_content for other users.",
    )
    def get_user(call: Call) -> Reply:
        user_id = target_id(call)
        if user_id != call.user_id:
            call.require_scope("public_content")
        return Reply(user_json(visible_user(call, user_id)))


def not_allowed() -> APIError:
    """400 APINotAllowedError, as the Instagram API refused private resources."""
    return APIError(400, "APINotAllowedError", "you cannot view this resource")
