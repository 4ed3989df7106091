"""``GET /blobs/{name}``: blobs (uploads and renditions) at stable URLs.

A name is ``<sha256>.<ext>``; nothing else is looked up (no path can leave the store). The
bytes behind a name never change, so answers carry a year-long immutable cache lifetime;
twisted.web's ``File`` serves them with ranges and HEAD. Like the CDN URLs of the v1 API,
blob URLs need no token: they are unguessable, and a deleted medium's blobs are collected.
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.web.iweb import IRequest

from plugins.blobs import CONTENT_TYPES
from server.api.envelope import not_found
from server.context import ServiceContext


def routes(app: Klein, ctx: ServiceContext) -> None:
    @app.route("/blobs/<name>", methods=["GET"])
    def blob(request: IRequest, name: str) -> Any:
        from twisted.web.static import File  # here: importing it warns of deprecations

        path = ctx.blobs.path(name)
        if path is None:
            raise not_found("no such blob")
        resource = File(str(path), defaultType="application/octet-stream")
        resource.contentTypes = {f".{ext}": t for ext, t in CONTENT_TYPES.items()}
        request.setHeader(b"cache-control", b"public, max-age=31536000, immutable")
        request.setHeader(b"x-content-type-options", b"nosniff")
        return resource
