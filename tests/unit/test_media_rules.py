"""The pure rules of media, comments, tags, short codes, renditions, feeds and activity."""

from __future__ import annotations

import pytest

from server.domain import activity as act
from server.domain import comments, feeds, renditions, tags
from server.domain.comments import CommentError
from server.domain.graph import (
    FollowApproved,
    FollowerAdded,
    FollowerRemoved,
    FollowerRequested,
    FollowIgnored,
    FollowRequested,
    UserFollowed,
    UserUnfollowed,
    mirror,
)
from server.domain.ids import compose_id, millis_of
from server.domain.likes import MediaLiked, MediaUnliked, decide_like
from server.domain.media import (
    MediaError,
    State,
    Viewer,
    check_details,
    from_shortcode,
    may_see,
    parse_share_to,
    shortcode,
    sniff,
)


def test_comment_rules_each_have_their_error() -> None:
    """300 characters, 4 hashtags, 1 URL, not all capitals: each refused by its own type."""
    assert comments.check_comment("  nice shot  ") == "nice shot"
    assert comments.check_comment("x" * 300) == "x" * 300
    cases = {"x" * 301: "APICommentTooLongError",
             "#a #b #c #d #e": "APICommentTooManyTagsError",
             "http://a.example and https://b.example": "APICommentTooManyURLsError",
             "see example.com and www.test.org": "APICommentTooManyURLsError",
             "WOW SO GOOD": "APICommentAllCapsError",
             "": "APIInvalidParametersError"}
    for text, error_type in cases.items():
        with pytest.raises(CommentError) as e:
            comments.check_comment(text)
        assert e.value.error_type == error_type, text
    assert comments.check_comment("#a #b #c #d ok") and comments.check_comment("OK then")
    assert comments.check_comment("I ❤ ny #NYC @BOB")  # tags and mentions are not shouting
    assert comments.check_comment("42 !!") == "42 !!"  # no letters at all


def test_comment_tags_and_deletion_rights() -> None:
    """Only the owner's comments tag a medium; the author or the owner may delete."""
    assert comments.comment_tags("so #Blue", author=1, media_owner=1) == ("blue",)
    assert comments.comment_tags("so #Blue", author=2, media_owner=1) == ()
    assert comments.may_delete(by=2, author=2, media_owner=1)
    assert comments.may_delete(by=1, author=2, media_owner=1)
    assert not comments.may_delete(by=3, author=2, media_owner=1)


def test_hashtags_and_mentions_are_parsed_strictly() -> None:
    """Tags: word characters after #, not inside words or entities, lower case, distinct,
    not pure numbers; mentions: usernames after @, not inside emails."""
    assert tags.hashtags("#Sun and #sun, #été! a#b &#12; #123 #x_1") == ("sun", "été", "x_1")
    assert tags.count_hashtags("#a #a #b") == 3
    assert tags.mentions("hi @Alice, @bob. mail a@b.com @c.d_e") == ("alice", "bob", "c.d_e")
    assert tags.valid_tag_name("sunset") and not tags.valid_tag_name("123")
    assert not tags.valid_tag_name("no space") and not tags.valid_tag_name("x" * 101)
    assert not tags.valid_tag_name("abc\n")  # "$" would match before a final newline
    # "İ" lowers to "i" and a combining dot: the stored form must still be a tag name (the
    # lookup normalizes the same way), and no longer than the tag written
    assert tags.hashtags("trip #İstanbul") == ("istanbul",)
    assert tags.normalize_tag("İSTANBUL") == "istanbul"
    longest = tags.hashtags("#" + "İ" * 100)
    assert longest == ("i" * 100,) and tags.valid_tag_name(longest[0])


def test_short_codes_round_trip_and_refuse_junk() -> None:
    """A short code is the id in base 64 (base64url digits): reversible, at most 11."""
    for media_id in (1, 63, 64, 765404184781535232, 2**64 - 1):
        code = shortcode(media_id)
        assert from_shortcode(code) == media_id and len(code) <= 11
    assert shortcode(64) == "BA"
    for bad in ("", "a" * 12, "a+b", "A", "/" * 3):
        with pytest.raises(ValueError):
            from_shortcode(bad)


def test_file_types_come_from_the_bytes() -> None:
    """Magic numbers decide the type; a name or a near miss does not."""
    assert sniff(b"\xff\xd8\xff\xe0" + b"\x00" * 12) == "jpeg"
    assert sniff(b"\x89PNG\r\n\x1a\n" + b"\x00" * 8) == "png"
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "webp"
    assert sniff(b"\x00\x00\x00\x20ftypisom" + b"\x00" * 4) == "mp4"
    assert sniff(b"GIF89a" + b"\x00" * 10) is None
    assert sniff(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None


def test_upload_details_are_checked() -> None:
    """Captions, coordinates, places and share targets: good values pass, bad ones name
    themselves."""
    d = check_details({"caption": "hi #x", "lat": "10.5", "lng": "-20", "location_id": "7",
                       "share_to": "Mastodon, twitter,mastodon"})
    assert (d.lat, d.lng, d.location_id, d.share_to) == (10.5, -20.0, 7,
                                                         ("mastodon", "twitter"))
    assert check_details({}).filter == "Normal"
    for fields in ({"lat": "1"}, {"lat": "NaN", "lng": "1"}, {"lat": "1", "lng": "181"},
                   {"location_name": "x"}, {"caption": "#t " * 31},
                   {"caption": "bad\x01"}, {"filter": "<script>"}, {"location_id": "-1"}):
        with pytest.raises(MediaError):
            check_details(fields)
    with pytest.raises(MediaError, match="myspace"):
        parse_share_to("twitter,myspace")


def test_visibility_of_media() -> None:
    """Owners see their media unless deleted; others only ready media of public accounts, or
    of private ones that approved them, and never through a block."""
    def viewer(**kw: object) -> Viewer:
        base = {"viewer": 2, "owner": 1, "owner_private": False, "follows_owner": False,
                "blocked": False}
        return Viewer(**(base | kw))  # type: ignore[arg-type]

    assert may_see(viewer(viewer=1), State.PROCESSING)
    assert not may_see(viewer(viewer=1), State.DELETED)
    assert not may_see(viewer(), State.PROCESSING)
    assert may_see(viewer(), State.READY)
    assert not may_see(viewer(owner_private=True), State.READY)
    assert may_see(viewer(owner_private=True, follows_owner=True), State.READY)
    assert not may_see(viewer(blocked=True), State.READY)


def test_like_decisions() -> None:
    """A like or unlike that changes nothing appends nothing."""
    assert decide_like(False, True, 5, 1, 2) == [MediaLiked(media_id=5, media_owner=1,
                                                            user_id=2)]
    assert decide_like(True, False, 5, 1, 2) == [MediaUnliked(media_id=5, media_owner=1,
                                                              user_id=2)]
    assert decide_like(True, True, 5, 1, 2) == [] == decide_like(False, False, 5, 1, 2)


def test_rendition_geometry() -> None:
    """Center squares, EXIF-rotated sizes, never upscaled, even sides for video."""
    assert renditions.center_square(900, 600) == (150, 0, 750, 600)
    assert renditions.center_square(600, 900) == (0, 150, 600, 750)
    assert renditions.oriented_size(900, 600, 6) == (600, 900)
    assert renditions.oriented_size(900, 600, 3) == (900, 600)
    assert renditions.square_side(900, 600, 640) == 600
    assert renditions.square_side(2000, 1500, 150) == 150
    assert renditions.even(481) == 480 and renditions.even(1) == 2


def test_feed_merge_bounds_and_modes() -> None:
    """Merging is a newest-first union within exclusive bounds; scores are milliseconds;
    the fan-out mode follows the follower count."""
    a, b, c, d = (compose_id(1000 + i, 3, 0) for i in range(4))
    assert feeds.merge([[d, b], [c, b, a]], None, None, 3) == [d, c, b]
    assert feeds.merge([[d, c, b, a]], max_id=d, min_id=a, limit=10) == [c, b]
    assert feeds.score(c) == millis_of(c) == 1002
    assert feeds.mode(10, 100, 50) is feeds.Mode.INLINE
    assert feeds.mode(60, 100, 50) is feeds.Mode.CHUNKED
    assert feeds.mode(101, 100, 50) is feeds.Mode.PULL
    assert feeds.mode(1, 0, 50) is feeds.Mode.PULL
    assert feeds.chunks([1, 5, 9]) == [feeds.Chunk(1, 5), feeds.Chunk(5, 9),
                                       feeds.Chunk(9, None)]


def test_followers_side_mirrors() -> None:
    """Each follow-stream event has its followers-side mirror, carrying its source."""
    pair = {"follower": 1, "followee": 2}
    side = {"followee": 2, "follower": 1, "source": 9}
    assert mirror(UserFollowed(**pair), 9) == FollowerAdded(**side)
    assert mirror(FollowApproved(**pair), 9) == FollowerAdded(**side)
    assert mirror(FollowRequested(**pair), 9) == FollowerRequested(**side)
    assert mirror(FollowIgnored(**pair), 9) == FollowerRemoved(**side, reason="ignored")
    assert mirror(UserUnfollowed(**pair, reason="blocked"), 9) == FollowerRemoved(
        **side, reason="blocked")


def test_activity_aggregation_and_texts() -> None:
    """Likes of one medium in a page become one group; texts read as Instagram's did."""
    items = [act.Item(act.like_key(7, 3), act.LIKE, 3, 50, 7),
             act.Item(act.comment_key(8), act.COMMENT, 4, 40, 7, 8, "nice"),
             act.Item(act.like_key(7, 5), act.LIKE, 5, 30, 7),
             act.Item(act.like_key(9, 5), act.LIKE, 5, 20, 9),
             act.Item(act.follow_key(6), act.FOLLOW, 6, 10)]
    groups, used = act.aggregate(items, 3)
    assert [(g.kind, g.actors) for g in groups] == [("like", [3, 5]), ("comment", [4]),
                                                   ("like", [5])]
    assert used == 4
    names = {3: "alice", 4: "bob", 5: "carol", 6: "dan"}.__getitem__
    assert act.describe(groups[0], names) == "alice and carol liked your photo"
    assert act.describe(groups[1], names) == "bob commented: nice"
    many = act.Group(act.LIKE, [3, 4, 5, 6] * 4, 1, 7, None, "")
    assert act.describe(many, names) == "alice and 15 others liked your photo"
    follow = act.Group(act.FOLLOW, [6], 1, None, None, "")
    assert act.describe(follow, names) == "dan started following you"
