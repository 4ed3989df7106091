"""``GET /v1/openapi.json``: the OpenAPI 3 document, generated from the endpoint declarations
(``server/api/endpoint.py``) of the running app, so it cannot drift from the routes; a test
checks that every Klein route is in it and nothing else is.
"""

from __future__ import annotations

import json
from typing import Any

from klein import Klein
from twisted.web.iweb import IRequest

from server.api import endpoint as ep_module
from server.api.endpoint import ENVELOPE, FLAT, HTML, Endpoint
from server.api.envelope import JSON
from server.api.pagination import SCHEMA as PAGINATION
from server.context import ServiceContext
from server.domain.oauth import SCOPES

#: Routes served outside the endpoint pipeline, described by hand.
OPERATIONAL: dict[str, dict[str, Any]] = {
    "/healthz": {"get": {
        "summary": "Health: 200 when PostgreSQL, Redis and gearmand answer, else 503",
        "tags": ["operations"], "security": [],
        "responses": {"200": {"description": "healthy", "content": {"application/json": {
            "schema": {"type": "object"}}}},
                      "503": {"description": "a dependency is down", "content": {
                          "application/json": {"schema": {"type": "object"}}}}},
    }},
    "/metrics": {"get": {
        "summary": "Prometheus metrics", "tags": ["operations"], "security": [],
        "responses": {"200": {"description": "text exposition format",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}},
    }},
    "/blobs/{name}": {"get": {
        "summary": "A blob: an upload or a rendition, by content address", "tags": ["media"],
        "security": [],
        "parameters": [{"name": "name", "in": "path", "required": True, "schema": {
            "type": "string", "pattern": r"^[0-9a-f]{64}\.(jpg|png|webp|mp4)$"}}],
        "responses": {"200": {"description": "the bytes, cacheable for a year", "content": {
            t: {"schema": {"type": "string", "format": "binary"}}
            for t in ("image/jpeg", "image/png", "image/webp", "video/mp4")}},
                      "404": {"description": "no such blob", "content": {
                          "application/json": {"schema": {"type": "object"}}}}},
    }},
    "/v1/openapi.json": {"get": {
        "summary": "This document", "tags": ["operations"], "security": [],
        "responses": {"200": {"description": "OpenAPI 3", "content": {"application/json": {
            "schema": {"type": "object"}}}}},
    }},
}

ERROR = {
    "type": "object", "required": ["meta"],
    "properties": {"meta": {
        "type": "object", "required": ["code", "error_type", "error_message"],
        "properties": {"code": {"type": "integer"}, "error_type": {"type": "string"},
                       "error_message": {"type": "string"}, "request_id": {"type": "string"}},
    }},
}
FLAT_ERROR = {
    "type": "object", "required": ["code", "error_type", "error_message"],
    "properties": {"code": {"type": "integer"}, "error_type": {"type": "string"},
                   "error_message": {"type": "string"}},
}
RATE_HEADERS = {
    "X-Ratelimit-Limit": {"schema": {"type": "integer"},
                          "description": "the bucket's capacity per window"},
    "X-Ratelimit-Remaining": {"schema": {"type": "integer"},
                              "description": "requests left in the bucket"},
}


def _operation(ep: Endpoint) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": ep.summary, "tags": [ep.tag],
                          "operationId": f"{ep.method.lower()}_{ep.handler.__name__}"}
    if ep.description:
        op["description"] = ep.description
    op["security"] = ([{"oauth2": [ep.scope]}, {"accessToken": []}, {"bearer": []}]
                      if ep.scope else [])
    op["parameters"] = [
        {"name": p.name, "in": p.where, "required": p.required or p.where == "path",
         "schema": p.schema(), **({"description": p.description} if p.description else {})}
        for p in ep.params if p.where != "body"
    ]
    if ep.method == "POST":
        op["parameters"].append({
            "name": "Idempotency-Key", "in": "header", "required": False,
            "schema": {"type": "string", "pattern": r"^[\x21-\x7e]{1,64}$"},
            "description": "a retry with the same key returns the first answer",
        })
    body = [p for p in ep.params if p.where == "body"]
    if body:
        schema = {"type": "object",
                  "properties": {p.name: p.schema() for p in body},
                  "required": [p.name for p in body if p.required]}
        op["requestBody"] = {"required": any(p.required for p in body),
                             "content": {t: {"schema": schema} for t in ep.body_types}}
    op["responses"] = _responses(ep)
    return op


def _responses(ep: Endpoint) -> dict[str, Any]:
    error_schema = ERROR if ep.style == ENVELOPE else FLAT_ERROR
    out: dict[str, Any] = {"default": {"description": "an error", "headers": RATE_HEADERS,
                                       "content": {"application/json": {
                                           "schema": error_schema}}}}
    if ep.style == HTML:
        out["200"] = {"description": "an HTML page", "headers": RATE_HEADERS,
                      "content": {"text/html": {"schema": {"type": "string"}}}}
        for code in ("302", "303"):
            out[code] = {"description": "a redirect (to the app, or back to the page)"}
        out["401"] = {"description": "the page again, with an error",
                      "content": {"text/html": {"schema": {"type": "string"}}}}
        return out
    if ep.style == FLAT:
        schema = ep.data or {}
    else:
        props: dict[str, Any] = {
            "meta": {"type": "object", "required": ["code"],
                     "properties": {"code": {"type": "integer"}}},
            "data": ep.data or {},
        }
        if ep.paginated:
            props["pagination"] = PAGINATION
        schema = {"type": "object", "required": ["meta", "data"], "properties": props}
    out["200"] = {"description": "success", "headers": RATE_HEADERS,
                  "content": {"application/json": {"schema": schema}}}
    return out


def document(app: Klein, ctx: ServiceContext) -> dict[str, Any]:
    """The OpenAPI 3 document of every route of ``app``."""
    paths: dict[str, dict[str, Any]] = {k: dict(v) for k, v in OPERATIONAL.items()}
    for ep in ep_module.declared(app):
        paths.setdefault(ep.path, {})[ep.method.lower()] = _operation(ep)
    base = ctx.config.http.public_url.rstrip("/")
    return {
        "openapi": "3.0.3",
        "info": {"title": "shutterlog API", "version": "1",
                 "description": "The Instagram v1 API's shape: the envelope, OAuth2 tokens, "
                 "scopes, rate limits (X-Ratelimit-*), cursor pagination."},
        "servers": [{"url": base}],
        "paths": dict(sorted(paths.items())),
        "components": {"securitySchemes": {
            "oauth2": {"type": "oauth2", "flows": {
                "authorizationCode": {"authorizationUrl": f"{base}/oauth/authorize",
                                      "tokenUrl": f"{base}/oauth/access_token",
                                      "scopes": {s: s for s in SCOPES}},
                "implicit": {"authorizationUrl": f"{base}/oauth/authorize",
                             "scopes": {s: s for s in SCOPES}},
                "password": {"tokenUrl": f"{base}/oauth/access_token",
                             "scopes": {s: s for s in SCOPES}}}},
            "accessToken": {"type": "apiKey", "in": "query", "name": "access_token"},
            "bearer": {"type": "http", "scheme": "bearer"},
        }},
    }


def routes(app: Klein, ctx: ServiceContext) -> None:
    cached: list[bytes] = []

    @app.route("/v1/openapi.json", methods=["GET"])
    def openapi(request: IRequest) -> bytes:
        if not cached:
            cached.append(json.dumps(document(app, ctx), indent=1).encode())
        request.setHeader(b"content-type", JSON)
        return cached[0]
