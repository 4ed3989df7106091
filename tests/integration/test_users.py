"""Sign-up, users and search over HTTP, against the running service."""

from __future__ import annotations

import concurrent.futures

import pytest

from server.domain.accounts import username_shard
from server.domain.ids import shard_of
from tests.integration.apiclient import PASSWORD, Api


def test_sign_up_returns_the_user_in_the_envelope(api: Api) -> None:
    """POST /v1/users answers the new user with Instagram's fields and zero counts; the user
    lives in the shard its username hashes to."""
    name = api.name("Alice.")
    r = api.http.post("/v1/users", data={"username": name, "password": PASSWORD,
                                         "full_name": "Alice A", "bio": "hi",
                                         "website": "https://a.example"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["meta"] == {"code": 200}
    user = body["data"]
    assert user["username"] == name and user["full_name"] == "Alice A"
    assert user["bio"] == "hi" and user["website"] == "https://a.example"
    assert user["counts"] == {"media": 0, "follows": 0, "followed_by": 0}
    assert shard_of(int(user["id"])) == username_shard(name, api.env.router.count)
    assert "password" not in r.text and "argon2" not in r.text


def test_sign_up_accepts_json(api: Api) -> None:
    """A JSON body works like a form; a wrong JSON type is a 400 naming the field."""
    name = api.name()
    r = api.http.post("/v1/users", json={"username": name, "password": PASSWORD,
                                         "full_name": "J", "is_private": True})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["is_private"] is True
    r = api.http.post("/v1/users", json={"username": api.name(), "password": PASSWORD,
                                         "full_name": 42})
    assert r.status_code == 400
    assert r.json()["meta"]["error_type"] == "APIInvalidParametersError"
    assert "full_name" in r.json()["meta"]["error_message"]


@pytest.mark.parametrize("field,value,needle", [
    ("username", "bad name!", "username must be 1-30"),
    ("username", "x" * 31, "username must be at most 30"),
    ("password", "short", "password must be at least 8"),
    ("website", "javascript:alert(1)", "website must be an http"),
    ("email", "not-an-email", "email is not an email address"),
    ("is_private", "maybe", "is_private must be a boolean"),
])
def test_sign_up_refuses_bad_fields(api: Api, field: str, value: str, needle: str) -> None:
    """Each rule breaks with a 400 naming the field, and nothing is written."""
    body = {"username": api.name(), "password": PASSWORD, "full_name": "F", field: value}
    r = api.http.post("/v1/users", data=body)
    assert r.status_code == 400, r.text
    assert needle in r.json()["meta"]["error_message"]
    if field != "username":  # nothing was claimed: the same username is still free
        body[field] = PASSWORD if field == "password" else ""
        assert api.http.post("/v1/users", data=body).status_code == 200


def test_duplicate_username_case_insensitive(api: Api) -> None:
    """A username taken in any case is refused."""
    name = api.name("Bob")
    api.signup(name)
    r = api.http.post("/v1/users", data={"username": name.upper(), "password": PASSWORD,
                                         "full_name": "B"})
    assert r.status_code == 400 and "is taken" in r.json()["meta"]["error_message"]


def test_sign_up_race_has_exactly_one_winner(api: Api) -> None:
    """Eight concurrent sign-ups of one username (in different cases): one 200, seven 400."""
    name = api.name("race")
    variants = [name.upper() if i % 2 else name for i in range(8)]

    def sign_up(username: str) -> int:
        return api.http.post("/v1/users", data={"username": username, "password": PASSWORD,
                                                "full_name": "R"}).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(sign_up, variants))
    assert codes == [200] + [400] * 7


def test_sign_up_retry_with_idempotency_key(api: Api) -> None:
    """A retried sign-up with the same Idempotency-Key returns the first user and appends
    nothing; without the key, or with it and another password, it is a duplicate."""
    name = api.name()
    body = {"username": name, "password": PASSWORD, "full_name": "I"}
    key = {"Idempotency-Key": "signup-123"}
    first = api.http.post("/v1/users", data=body, headers=key)
    second = api.http.post("/v1/users", data=body, headers=key)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    stream = f"user:{first.json()['data']['id']}"
    shard = shard_of(int(first.json()["data"]["id"]))
    assert len(api.env.store.read_stream(shard, stream)) == 1
    assert api.http.post("/v1/users", data=body).status_code == 400
    # the same key with another password is another request: the name is taken
    other = api.http.post("/v1/users", data=body | {"password": PASSWORD + "x"}, headers=key)
    assert other.status_code == 400 and "taken" in other.json()["meta"]["error_message"]


def test_get_users(api: Api) -> None:
    """self and an id give the user; another user needs public_content; unknown, impossible
    and malformed ids are 404, 404 and 400."""
    me, token = api.user()
    other, _ = api.user()
    _, basic = api.user(scope="basic")
    assert api.get("/v1/users/self", token).json()["data"] == me
    assert api.get(f"/v1/users/{me['id']}", token).json()["data"]["id"] == me["id"]
    assert api.get(f"/v1/users/{other['id']}", token).json()["data"]["username"] == \
        other["username"]
    r = api.get(f"/v1/users/{other['id']}", basic)
    assert r.json()["meta"]["error_type"] == "OAuthPermissionsException"
    assert "scope=public_content" in r.json()["meta"]["error_message"]
    missing = int(me["id"]) + 1
    assert api.get(f"/v1/users/{missing}", token).status_code == 404
    assert api.get("/v1/users/1", token).status_code == 404
    assert api.get(f"/v1/users/{2**63 - 1}", token).status_code == 404
    r = api.get("/v1/users/me", token)
    assert r.status_code == 400 and "user_id" in r.json()["meta"]["error_message"]


def test_search_by_prefix_across_shards_with_cursor(api: Api) -> None:
    """Search finds usernames by prefix in any case across all shards, in order, page by
    page, stable while new users arrive."""
    prefix = api.name("srch")
    names = sorted(f"{prefix}{i:02d}" for i in range(7))
    for name in names:
        api.signup(name)
    _, token = api.user()
    shards = {username_shard(n, 16) for n in names}
    assert len(shards) > 1
    seen = []
    r = api.get("/v1/users/search", token, q=prefix.upper(), count=3)
    first = True
    while True:
        assert r.status_code == 200, r.text
        seen += [u["username"] for u in r.json()["data"]]
        if first:
            api.signup(f"{prefix}00a")  # sorts before the cursor: not in later pages
            first = False
        nxt = r.json()["pagination"].get("next_url")
        if not nxt:
            break
        r = api.http.get(nxt, headers={"Authorization": f"Bearer {token}"})
    assert seen == names
    assert api.get("/v1/users/search", token, q="zzz_nobody").json()["data"] == []
    assert api.get("/v1/users/search", token).status_code == 400
