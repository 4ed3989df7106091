"""Seeding worlds fast for tests and benchmarks: ready media and follows appended straight to
the log through the event store (its inline projections run as for any append), in batches,
instead of thousands of HTTP calls. Uploads and renditions are tested on their own."""

from __future__ import annotations

from collections.abc import Sequence

from server.db import Txn
from server.domain import tags
from server.domain.graph import UserFollowed, follow_stream
from server.domain.ids import shard_of
from server.domain.log import AppendRequest, NewEvent
from server.domain.media import MediaPosted, MediaRendered, media_stream
from server.domain.shards import schema_name
from server.interfaces import IEventStore, IShardRouter
from server.store.accounts import new_id

BATCH = 2000


def ready_medium(store: IEventStore, router: IShardRouter, owner: int, caption: str = "",
                 visibility: str = "public", place: tuple[float, float] | None = None,
                 location_id: int | None = None) -> int:
    """A ready medium of ``owner``: MediaPosted then MediaRendered in one append, rendition
    names made up from the id (no blob behind them); ``place`` its (lat, lng) and
    ``location_id`` its location, if any (named as is: no location row is made)."""
    shard = shard_of(owner)
    media_id = router.database(shard).run_interaction("id", new_id, shard)
    fake = f"{media_id:064x}"[-64:] + ".jpg"
    posted = MediaPosted(
        media_id=media_id, owner=owner, type="image", blob=fake, width=640, height=640,
        duration_ms=0, caption=caption, tags=tags.hashtags(caption),
        mentions=tags.mentions(caption), filter="Normal", lat=place[0] if place else None,
        lng=place[1] if place else None,
        location_name="", location_id=location_id, share_to=(), visibility=visibility)
    rendered = MediaRendered(media_id=media_id, owner=owner,
                             images={"thumbnail": fake, "low_resolution": fake,
                                     "standard_resolution": fake}, videos={})
    store.append(shard, media_stream(media_id), [NewEvent(posted, actor=owner),
                                                 NewEvent(rendered, actor=owner)])
    return media_id


def minted_ids(router: IShardRouter, n: int) -> list[int]:
    """``n`` fresh ids from every shard's id function in turn (followers without accounts)."""
    per_shard = n // router.count + 1
    ids: list[int] = []
    for shard in range(router.count):
        row = router.database(shard).run_interaction(
            "ids", Txn.fetchone, f"SELECT {schema_name(shard)}.next_ids(%s)", (per_shard,))
        assert row is not None
        ids += row[0]
    return ids[:n]


def follow(store: IEventStore, pairs: Sequence[tuple[int, int]]) -> None:
    """Append ``UserFollowed`` for each (follower, followee), in batches; the ``followers``
    consumer mirrors them into the followees' shards later."""
    for i in range(0, len(pairs), BATCH):
        store.append_many([
            AppendRequest(shard_of(f), follow_stream(f, t),
                          (NewEvent(UserFollowed(follower=f, followee=t), actor=f),),
                          expected_version=0)
            for f, t in pairs[i:i + BATCH]])


def account(store: IEventStore, router: IShardRouter, username: str,
            password_hash: str = "$argon2id$v=19$m=8,t=1,p=1$c2VlZHNlZWQ$seeded",
            private: bool = False) -> int:
    """A user signed up through the sign-up transaction (the hash is given, not computed:
    seeded users are not logged in with a password), private if ``private``."""
    from server.api.users import sign_up_txn
    from server.domain.accounts import Register, username_shard

    shard = username_shard(username, router.count)
    command = Register(username, password_hash, "Seeded", is_private=private)
    user = router.database(shard).run_interaction("seed_user", sign_up_txn, store, shard,
                                                  command, None)
    return int(user.id)
