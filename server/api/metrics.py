"""``GET /metrics``: the process's metrics in the Prometheus text format."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from klein import Klein
from twisted.web.iweb import IRequest

from server.context import ServiceContext


def routes(app: Klein, ctx: ServiceContext) -> None:
    @app.route("/metrics", methods=["GET"])
    def metrics(request: IRequest) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(REGISTRY)
