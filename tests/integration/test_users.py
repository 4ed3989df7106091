"""Sign-up, users and search over HTTP, against the running service."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

import pytest

from server.domain.accounts import username_shard
from server.domain.ids import shard_of
from tests.helpers import Service
from tests.integration.apiclient import PASSWORD, Api, start_service
from tests.integration.conftest import Env


@pytest.fixture(scope="module")
def service(module_env: Env) -> Iterator[Service]:
    svc = start_service(module_env)
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture
def api(module_env: Env, service: Service) -> Api:
    return Api(module_env, service)


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
