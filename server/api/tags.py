"""``/v1/tags``: a tag, its recent media, and tag search by name prefix (the ``tags``
projection in Redis: ``server/store/tags.py``)."""

from __future__ import annotations

from typing import Any

from klein import Klein

from server.api.endpoint import API, Call, Reply
from server.api.envelope import invalid
from server.api.media import COUNT_MEDIA
from server.api.mediaview import MEDIA_LIST, objects
from server.api.pagination import next_url
from server.api.params import Param
from server.context import ServiceContext
from server.domain import tags as tagging
from server.store.tags import TagStore

TAG: dict[str, Any] = {"type": "object", "required": ["name", "media_count"],
                       "properties": {"name": {"type": "string"},
                                      "media_count": {"type": "integer"}}}
TAG_NAME = Param("tag_name", where="path", required=True, max_length=101,
                 description="the tag, without #")


def tag_name(call: Call, text: str) -> str:
    name = tagging.normalize_tag(text.removeprefix("#"))
    if not tagging.valid_tag_name(name):
        raise invalid("a tag name is letters, digits and underscores (not only digits), at "
                      f"most {tagging.MAX_TAG} characters")
    return name


def routes(app: Klein, ctx: ServiceContext) -> None:
    api = API(app, ctx)
    store = TagStore(ctx.redis)

    @api.endpoint("GET", "/v1/tags/search", "Tags by name prefix", scope="public_content",
                  tag="tags", data={"type": "array", "items": TAG},
                  params=(Param("q", required=True, max_length=101,
                                description="the start of a tag name, without #"),
                          Param("count", int, minimum=1, maximum=100, default=20)),
                  description="In name order.")
    def search_tags(call: Call) -> Reply:
        prefix = tag_name(call, call.params["q"])
        names = store.search(prefix, call.params["count"])
        return Reply([{"name": n, "media_count": c}
                      for n, c in zip(names, store.counts(names), strict=True)])

    @api.endpoint("GET", "/v1/tags/{tag_name}", "A tag and how many media carry it",
                  scope="public_content", tag="tags", params=(TAG_NAME,), data=TAG)
    def get_tag(call: Call) -> Reply:
        name = tag_name(call, call.params["tag_name"])
        return Reply({"name": name, "media_count": store.count(name)})

    @api.endpoint(
        "GET", "/v1/tags/{tag_name}/media/recent", "Recent media with a tag",
        scope="public_content", tag="tags", data=MEDIA_LIST, paginated=True,
        params=(TAG_NAME, COUNT_MEDIA,
                Param("max_tag_id", pattern=r"^[0-9]{1,19}$", description="older media"),
                Param("min_tag_id", pattern=r"^[0-9]{1,19}$", description="newer media")),
        description="Newest first; pagination.next_max_tag_id pages on, min_tag_id polls "
        "for newer ones. Public accounts' ready media only.")
    def tag_recent(call: Call) -> Reply:
        name = tag_name(call, call.params["tag_name"])
        count = call.params["count"]
        hi, lo = call.params["max_tag_id"], call.params["min_tag_id"]
        ids = store.page(name, int(hi) if hi else None, int(lo) if lo else None, count + 1)
        page = ids[:count]
        pagination: dict[str, Any] = {}
        if page:
            pagination["min_tag_id"] = str(page[0])
        if len(ids) > count and page:
            pagination |= {"next_url": next_url(call, str(page[-1]), "max_tag_id"),
                           "next_max_tag_id": str(page[-1])}
        return Reply(objects(call, page), pagination=pagination)
