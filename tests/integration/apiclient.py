"""Helpers for HTTP-level tests of the API: a service for a test module, users, apps, tokens.

Each test makes users with names of its own (``Api.name()``), so tests sharing one service and
one database never see each other's data.
"""

from __future__ import annotations

import itertools
import secrets
import threading
from collections.abc import Iterator
from typing import Any

import httpx

from scripts.stack import free_port
from server.domain.oauth import SCOPES, signature
from server.secretbox import SecretBox
from server.store import apps
from server.store.apps import PURPOSE
from tests.helpers import Service
from tests.integration.conftest import Env

#: Cheap argon2 for tests (the hash format and the defaults are unit-tested).
FAST = {
    "SHUTTERLOG_ACCOUNTS_ARGON2_TIME_COST": "1",
    "SHUTTERLOG_ACCOUNTS_ARGON2_MEMORY_KIB": "256",
    "SHUTTERLOG_ACCOUNTS_ARGON2_PARALLELISM": "1",
    "SHUTTERLOG_API_RATE_PER_IP": "1000000",
    "SHUTTERLOG_API_RATE_PER_TOKEN": "1000000",
}
PASSWORD = "correct horse battery"
ALL_SCOPES = " ".join(SCOPES)
_names = itertools.count()


def create_app(env: Env, redirect_uri: str = "https://app.example/cb",
               require_signed: bool = False, name: str = "Test app") -> tuple[str, str]:
    """An app's (client id, client secret), made as ``shutterlog apps create`` makes it."""
    box = SecretBox(env.config.secrets.key, PURPOSE)
    return apps.create(env.store, env.router, box, name, redirect_uri, require_signed)


def start_service(env: Env, **overrides: str) -> Service:
    service = Service(env.vars | FAST | overrides, free_port())
    service.wait_listening()
    return service


class Api:
    """A test's view of the service: make users, apps and tokens; call endpoints."""

    def __init__(self, env: Env, service: Service) -> None:
        self.env = env
        self.service = service
        self._app: tuple[str, str] | None = None
        self._local = threading.local()
        self._made: list[httpx.Client] = []
        self._lock = threading.Lock()

    @property
    def http(self) -> httpx.Client:
        """The service's client; on a thread other than the main one (the tests that storm
        the API from a thread pool), a client of that thread's own: one pool shared by 32
        threads failed now and then with a read on a socket another thread had closed
        (EBADF), and real concurrent clients share no connections anyway."""
        if threading.current_thread() is threading.main_thread():
            return self.service.client
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            main = self.service.client
            client = self._local.client = httpx.Client(base_url=main.base_url,
                                                       timeout=main.timeout)
            with self._lock:
                self._made.append(client)
        return client

    def close(self) -> None:
        """Close the clients made for other threads."""
        for client in self._made:
            client.close()

    @staticmethod
    def name(prefix: str = "u") -> str:
        """A username no other test uses."""
        return f"{prefix}{next(_names)}_{secrets.token_hex(3)}"

    def create_app(self, redirect_uri: str = "https://app.example/cb",
                   require_signed: bool = False, name: str = "Test app") -> tuple[str, str]:
        return create_app(self.env, redirect_uri, require_signed, name)

    @property
    def app(self) -> tuple[str, str]:
        if self._app is None:
            self._app = self.create_app()
        return self._app

    def signup(self, username: str | None = None, **fields: Any) -> dict[str, Any]:
        body = {"username": username or self.name(), "password": PASSWORD,
                "full_name": "Test User"} | fields
        r = self.http.post("/v1/users", data=body)
        assert r.status_code == 200, r.text
        return dict(r.json()["data"])

    def token(self, username: str, scope: str = ALL_SCOPES,
              app: tuple[str, str] | None = None) -> str:
        client_id, secret = app or self.app
        r = self.http.post("/oauth/access_token", data={
            "client_id": client_id, "client_secret": secret, "grant_type": "password",
            "username": username, "password": PASSWORD, "scope": scope})
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    def user(self, scope: str = ALL_SCOPES, **fields: Any) -> tuple[dict[str, Any], str]:
        """A new user and a token for it."""
        user = self.signup(**fields)
        return user, self.token(user["username"], scope)

    def get(self, path: str, token: str | None, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.get(path, params=params, headers=headers)

    def post(self, path: str, token: str | None, headers: dict[str, str] | None = None,
             **data: Any) -> httpx.Response:
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.post(path, data=data, headers=auth | (headers or {}))

    def relate(self, token: str, user_id: str, action: str) -> dict[str, Any]:
        r = self.post(f"/v1/users/{user_id}/relationship", token, action=action)
        assert r.status_code == 200, r.text
        return dict(r.json()["data"])

    def pages(self, path: str, token: str, count: int = 2) -> Iterator[list[dict[str, Any]]]:
        """Every page of a paginated list, following next_url."""
        r = self.get(path, token, count=count)
        while True:
            assert r.status_code == 200, r.text
            yield r.json()["data"]
            nxt = r.json()["pagination"].get("next_url")
            if not nxt:
                return
            r = self.http.get(nxt, headers={"Authorization": f"Bearer {token}"})


def sign(path: str, params: dict[str, str], secret: str) -> str:
    """The sig of a request to ``path`` (under /v1) with ``params``."""
    return signature(path.removeprefix("/v1"), params, secret)
