"""``GET /healthz``: 200 when PostgreSQL, Redis and gearmand answer; 503 naming what does not."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from klein import Klein
from twisted.internet.defer import Deferred, DeferredList
from twisted.web.iweb import IRequest

from server.api.envelope import JSON
from server.context import ServiceContext
from server.probes import gearman_version

#: Seconds a dependency may take to answer before it counts as down.
TIMEOUT = 3.0


def checks(ctx: ServiceContext) -> dict[str, Callable[[], Any]]:
    """Blocking probes by dependency name; each raises when its dependency is not usable."""

    def postgres() -> None:
        for db in ctx.router.databases():
            db.run_interaction("healthz", lambda txn: txn.fetchone("SELECT 1"))

    def gearmand() -> None:
        for server in ctx.config.gearman.servers:
            host, _, port = server.rpartition(":")
            if gearman_version(host, int(port), timeout=TIMEOUT) is None:
                raise ConnectionError(f"{server} does not answer")

    return {"postgres": postgres, "redis": ctx.redis.ping, "gearmand": gearmand}


def routes(app: Klein, ctx: ServiceContext) -> None:
    @app.route("/healthz", methods=["GET"])
    async def healthz(request: IRequest) -> bytes:
        probes = checks(ctx)
        runs: list[Deferred[Any]] = [
            ctx.blocking(probe).addTimeout(TIMEOUT, ctx.reactor) for probe in probes.values()
        ]
        results = await DeferredList(runs, consumeErrors=True)
        status: dict[str, str] = {}
        for name, (ok, value) in zip(probes, results, strict=True):
            reason = "" if ok else value.getErrorMessage() or value.type.__name__
            status[name] = "ok" if ok else f"error: {reason}"
        failing = [name for name, s in status.items() if s != "ok"]
        request.setResponseCode(503 if failing else 200)
        request.setHeader(b"content-type", JSON)
        request.setHeader(b"cache-control", b"no-store")
        body = {"status": "unavailable" if failing else "ok", "checks": status, "failing": failing}
        return json.dumps(body).encode()
