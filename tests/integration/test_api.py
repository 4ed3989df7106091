"""The API framework over HTTP: bodies, size limits, rate limits, internal errors, and the
OpenAPI contract checked by schemathesis against the running service."""

from __future__ import annotations

import re
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

from scripts.stack import free_port
from server.store.tokens import digest, token_key
from tests.integration.apiclient import PASSWORD, Api, start_service
from tests.integration.conftest import Env

SERVICE_ENV = {"SHUTTERLOG_API_MAX_BODY_BYTES": "4096"}


def meta(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json()["meta"]["error_type"]


def test_malformed_bodies_are_400_and_write_nothing(api: Api) -> None:
    """Invalid JSON, a JSON array, bad UTF-8, a repeated field, an unknown body type, a lone
    surrogate and JSON nested too deeply to decode are refused precisely; the username they
    named stays free."""
    name = api.name()
    form = f"username={name}&password={PASSWORD}&full_name=x"
    cases = [
        ({"content-type": "application/json"}, b'{"username": ', 400, "not valid JSON"),
        ({"content-type": "application/json"}, b"[1, 2]", 400, "must be an object"),
        ({"content-type": "application/x-www-form-urlencoded"}, b"username=\xff\xfe", 400,
         "not valid UTF-8"),
        ({"content-type": "application/x-www-form-urlencoded"},
         (form + f"&username={name}").encode(), 400, "more than once"),
        ({"content-type": "text/plain"}, form.encode(), 415, "unsupported body type"),
        # JSON can name a lone surrogate, which no text can hold
        ({"content-type": "application/json"},
         f'{{"username": "{name}", "password": "{PASSWORD}", "full_name": "\\ud800"}}'.encode(),
         400, "full_name must be valid Unicode text"),
        ({"content-type": "application/json"}, b"[" * 4000, 400, "nested too deeply"),
    ]
    for headers, body, code, needle in cases:
        r = api.http.post("/v1/users", content=body, headers=headers)
        assert r.status_code == code, r.text
        assert needle in r.json()["meta"]["error_message"]
    r = api.http.post("/v1/users", content=form.encode(),
                      headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text


def test_a_path_that_is_not_utf8_is_answered_in_the_envelope(api: Api) -> None:
    """``%FF`` in the path: 400 in the JSON envelope, not the router's HTML page."""
    _, token = api.user()
    r = api.get("/v1/users/%FF", token)
    assert meta(r) == (400, "APIInvalidParametersError")
    assert "not UTF-8" in r.json()["meta"]["error_message"]


def test_urls_whose_host_cannot_be_a_name_are_400(api: Api) -> None:
    """A host with a label over 63 characters or an empty one (which the resolver's IDNA
    step rejects before any lookup): 400, in a link and a subscription's callback."""
    _, token = api.user()
    for host in ("a" * 64 + ".com", "a..com"):
        r = api.post("/v1/users/self/linked_accounts", token, service="webhook",
                     url=f"http://{host}/", secret="x" * 20)
        assert meta(r) == (400, "APIInvalidParametersError"), (host, r.text)
        assert "does not resolve" in r.json()["meta"]["error_message"]
    client_id, secret = api.app
    r = api.http.post("/v1/subscriptions", data={
        "client_id": client_id, "client_secret": secret, "object": "tag", "object_id": "x",
        "aspect": "media", "callback_url": "http://" + "a" * 64 + ".com/cb"})
    assert meta(r) == (400, "APIInvalidParametersError"), r.text


def test_oversized_bodies_get_413_unread(api: Api) -> None:
    """A body over api.max_body_bytes, declared or chunked, is answered 413 in the envelope,
    and the connection serves the next request."""
    big = b"username=" + b"x" * 10_000
    r = api.http.post("/v1/users", content=big,
                      headers={"content-type": "application/x-www-form-urlencoded"})
    assert meta(r) == (413, "APIRequestTooLargeError")
    assert r.json()["meta"]["request_id"] == r.headers["x-request-id"]

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"a" * 1000

    r = api.http.post("/v1/users", content=chunks(),
                      headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
    assert api.http.get("/v1/openapi.json").status_code == 200


def test_ratelimit_headers_on_every_answer(api: Api) -> None:
    """Successes and errors alike carry X-Ratelimit-Limit and -Remaining (each request took
    a token; the bucket refills at its limit per hour, so it stays just under full)."""
    _, token = api.user()
    first = api.get("/v1/users/self", token)
    error = api.get("/v1/users/12345", token)
    assert error.status_code == 404
    for r in (first, error):
        assert int(r.headers["x-ratelimit-limit"]) == 1000000
        assert 999_000 < int(r.headers["x-ratelimit-remaining"]) < 1_000_000


def test_rate_limits_per_token_and_per_address(module_env: Env) -> None:
    """A token's bucket and an address's bucket each run out: 429 OAuthRateLimitException
    with Retry-After; another token still works until the address runs out. (This service
    keeps its tokens and buckets in a Redis database of its own: on the module's, it left
    127.0.0.1's bucket empty for the module's service and the tests after it.)"""
    own_redis = module_env.stack.redis_url.rsplit("/", 1)[0] + "/1"
    svc = start_service(module_env, SHUTTERLOG_API_RATE_PER_TOKEN="3",
                        SHUTTERLOG_API_RATE_PER_IP="12", SHUTTERLOG_REDIS_URL=own_redis)
    try:
        api = Api(module_env, svc)
        _, token = api.user()  # sign-up and grant: 2 of the address's 12
        remaining = [api.get("/v1/users/self", token).headers["x-ratelimit-remaining"]
                     for _ in range(3)]
        assert remaining == ["2", "1", "0"]
        r = api.get("/v1/users/self", token)
        assert meta(r) == (429, "OAuthRateLimitException")
        assert r.headers["x-ratelimit-limit"] == "3" and int(r.headers["retry-after"]) >= 1
        _, other = api.user()  # 7 of the address's 12 (refused requests take nothing)
        codes = [api.get("/v1/users/self", other).status_code for _ in range(6)]
        assert codes == [200, 200, 200, 429, 429, 429]  # its own bucket: 3; 10 of 12
        codes = [api.http.get("/v1/users/search").status_code for _ in range(3)]
        assert codes == [400, 400, 429]  # no token: only the address's bucket
    finally:
        svc.stop()


def test_an_outage_is_503_and_a_bug_500_each_with_a_request_id(module_env: Env) -> None:
    """With Redis gone, API calls answer 503 APIServiceUnavailableError with Retry-After (a
    warning in the log, no traceback); an unexpected error (a key of the wrong type) is 500
    APIError with its traceback in the log. Neither shows the client a traceback."""
    svc = start_service(module_env, SHUTTERLOG_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    try:
        r = svc.client.get("/v1/users/self", params={"access_token": "t"})
        assert meta(r) == (503, "APIServiceUnavailableError") and r.headers["retry-after"]
        assert r.json()["meta"]["request_id"] == r.headers["x-request-id"]
        assert "Traceback" not in r.text and "redis" not in r.text.lower()
    finally:
        svc.stop()
    assert "a backing service is unavailable" in svc.output.text()
    assert "Traceback" not in svc.output.text()
    broken = "broken-" + secrets.token_hex(8)
    module_env.redis.rpush(token_key(digest(broken)), "not a token")
    svc = start_service(module_env)
    try:
        r = svc.client.get("/v1/users/self", params={"access_token": broken})
        assert meta(r) == (500, "APIError")
        assert r.json()["meta"]["request_id"] == r.headers["x-request-id"]
        assert "Traceback" not in r.text and "WRONGTYPE" not in r.text
    finally:
        svc.stop()
    assert "Traceback" in svc.output.text()  # it is in the service's log instead


def test_openapi_document_is_served(api: Api) -> None:
    """/v1/openapi.json is an OpenAPI 3 document with every route and the OAuth2 scopes."""
    doc = api.http.get("/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert "/v1/users/{user_id}/relationship" in doc["paths"]
    assert set(doc["paths"]["/v1/users/{user_id}/relationship"]) == {"get", "post"}
    scopes = doc["components"]["securitySchemes"]["oauth2"]["flows"]["authorizationCode"]
    assert set(scopes["scopes"]) == {"basic", "public_content", "follower_list", "comments",
                                     "relationships", "likes"}


def test_schemathesis_finds_no_5xx_and_no_schema_violation(api: Api, tmp_path: Path) -> None:
    """schemathesis, generating requests from /v1/openapi.json with a valid token, gets no
    server error and no response that breaks the document's schemas."""
    user, token = api.user()
    api.relate(token, api.signup()["id"], "follow")
    st = Path(sys.executable).parent / "st"
    out = subprocess.run(
        [str(st), "run", f"{api.service.base}/v1/openapi.json",
         "--checks", "not_a_server_error,response_schema_conformance",
         "--max-examples", "25", "--phases", "examples,coverage,fuzzing",
         "-H", f"Authorization: Bearer {token}", "--seed", "1",
         "--exclude-path", "/oauth/revoke", "--request-timeout", "20",
         # linking an account calls the outside service (tests/integration/shareout/)
         "--exclude-name", "POST /v1/users/self/linked_accounts"],
        capture_output=True, text=True, timeout=280, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    selected = re.search(r"Selected: (\d+)/", out.stdout)
    tested = re.search(r"Tested: (\d+)", out.stdout)
    assert selected and tested and tested.group(1) == selected.group(1), out.stdout[-3000:]
    assert re.search(r"(\d+) generated, \1 passed", out.stdout), out.stdout[-3000:]
    assert api.get("/v1/users/self", token).status_code == 200  # the token survived


def test_slow_client_cannot_hold_a_body_in_memory(api: Api) -> None:
    """A declared Content-Length over the limit is refused without waiting for the body to
    come in full (the server drains and discards it)."""
    host, port = api.service.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                  b"Content-Type: application/x-www-form-urlencoded\r\n\r\n" + b"a" * 100_000)
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413")


def test_lua_buckets_agree_with_the_python_arithmetic(module_env: Env) -> None:
    """The Redis script and server/domain/ratelimit.py give the same verdicts for the same
    sequence (within the few milliseconds the script's own clock moves)."""
    from server.domain.ratelimit import take_all
    from server.store.ratelimit import Limits, RateLimiter

    limiter = RateLimiter(module_env.redis, Limits(per_ip=5, per_token=100, window_s=3600))
    got = [limiter.check(None, "198.51.100.7")[1] for _ in range(7)]
    bucket = None
    expected = []
    for _ in range(7):
        after, verdict = take_all([(bucket, 5, 3600)], 0)
        bucket = after[0] if verdict.allowed else bucket
        expected.append(verdict)
    assert [(v.allowed, v.limit, v.remaining) for v in got] == \
        [(v.allowed, v.limit, v.remaining) for v in expected]
    assert [v.retry_after_s for v in got][-1] in (719, 720) and expected[-1].retry_after_s == 720
