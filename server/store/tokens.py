"""OAuth state in Redis: access tokens, authorization codes and login sessions.

Only a SHA-256 of each token, code or session id is a key (``tok:HASH``, ``code:HASH``,
``sess:HASH``): a Redis dump reveals no credential. Every key expires; revocation deletes
keys, and per-user and per-app sets (``utok:USER``, ``atok:CLIENT``) find a user's or an
app's tokens. Codes are single-use (``GETDEL``).

A revocation also PUBLISHes the revoked tokens' hashes (space-separated) on the pub/sub
channel ``REVOKED``: every service process ends the WebSocket streams using them
(``server.realtime.Hub``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis


@dataclass(frozen=True)
class TokenInfo:
    """What an access token stands for."""

    user_id: int
    client_id: str
    scopes: frozenset[str]
    require_signed: bool

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> TokenInfo:
        return cls(
            user_id=int(fields[b"user"]),
            client_id=fields[b"client"].decode(),
            scopes=frozenset(fields[b"scope"].decode().split()),
            require_signed=fields.get(b"signed") == b"1",
        )


@dataclass(frozen=True)
class Grant:
    """What an authorization code was issued for."""

    user_id: int
    client_id: str
    redirect_uri: str
    scope: str


#: The pub/sub channel of revoked tokens' hashes.
REVOKED = "tok:revoked"


def digest(secret: str) -> str:
    """The key form of a token, code or session id."""
    return hashlib.sha256(secret.encode()).hexdigest()


def token_key(token_hash: str) -> str:
    return f"tok:{token_hash}"


class Tokens:
    """Tokens, codes and sessions over one Redis client."""

    def __init__(self, client: redis.Redis, token_ttl: int, code_ttl: int,
                 session_ttl: int) -> None:
        self.redis = client
        self.token_ttl = token_ttl
        self.code_ttl = code_ttl
        self.session_ttl = session_ttl

    def issue(self, user_id: int, client_id: str, scope: str, require_signed: bool) -> str:
        """A new access token for the user through the app."""
        token = secrets.token_urlsafe(32)
        h = digest(token)
        pipe = self.redis.pipeline()
        pipe.hset(token_key(h), mapping={"user": user_id, "client": client_id, "scope": scope,
                                         "signed": "1" if require_signed else "0"})
        if self.token_ttl:
            pipe.expire(token_key(h), self.token_ttl)
        for index in (f"utok:{user_id}", f"atok:{client_id}"):
            pipe.sadd(index, h)
            if self.token_ttl:
                pipe.expire(index, self.token_ttl)
        pipe.execute()
        return token

    def revoke(self, token: str) -> bool:
        """Revoke one token; False if it was not valid."""
        h = digest(token)
        fields = self.redis.hgetall(token_key(h))
        if not fields:
            return False
        info = TokenInfo.from_fields(fields)
        pipe = self.redis.pipeline()
        pipe.delete(token_key(h))
        pipe.srem(f"utok:{info.user_id}", h)
        pipe.srem(f"atok:{info.client_id}", h)
        pipe.publish(REVOKED, h)
        pipe.execute()
        return True

    def revoke_user(self, user_id: int) -> int:
        """Revoke every token of a user; returns how many were live."""
        return self._revoke_set(f"utok:{user_id}")

    def revoke_app(self, client_id: str) -> int:
        """Revoke every token issued through an app; returns how many were live."""
        return self._revoke_set(f"atok:{client_id}")

    def _revoke_set(self, index: str) -> int:
        hashes = [h.decode() for h in self.redis.smembers(index)]
        if not hashes:
            return 0
        deleted = int(self.redis.delete(*[token_key(h) for h in hashes]))
        self.redis.delete(index)
        self.redis.publish(REVOKED, " ".join(hashes))
        return deleted

    def lifetime(self, token_hash: str) -> float | None:
        """Seconds until the token expires (0: it is gone), None if it never does."""
        ms = int(self.redis.pttl(token_key(token_hash)))
        return None if ms == -1 else max(ms, 0) / 1000

    def new_code(self, grant: Grant) -> str:
        """A single-use authorization code for ``grant``."""
        code = secrets.token_urlsafe(24)
        self.redis.set(f"code:{digest(code)}", json.dumps(grant.__dict__), ex=self.code_ttl)
        return code

    def take_code(self, code: str) -> Grant | None:
        """The grant of a code, consuming it (a second exchange finds nothing)."""
        raw = self.redis.getdel(f"code:{digest(code)}")
        return Grant(**json.loads(raw)) if raw else None

    def new_session(self, user_id: int) -> str:
        """A login session id for the authorize page's cookie."""
        session = secrets.token_urlsafe(32)
        self.redis.set(f"sess:{digest(session)}", user_id, ex=self.session_ttl)
        return session

    def session_user(self, session: str) -> int | None:
        raw = self.redis.get(f"sess:{digest(session)}")
        return int(raw) if raw else None


def missing(client: redis.Redis, token_hashes: Sequence[str]) -> list[str]:
    """The tokens among ``token_hashes`` that are no longer valid (one round trip)."""
    pipe = client.pipeline(transaction=False)
    for h in token_hashes:
        pipe.exists(token_key(h))
    return [h for h, found in zip(token_hashes, pipe.execute(), strict=True) if not found]


def authorized_apps(client: redis.Redis, user_ids: Iterable[int]) -> dict[int, frozenset[str]]:
    """The apps each user holds a live access token of (two pipelined round trips: the
    users' token sets, then each token's app; expired tokens have no app any more)."""
    users = sorted(set(user_ids))
    pipe = client.pipeline(transaction=False)
    for user_id in users:
        pipe.smembers(f"utok:{user_id}")
    hashes = [(u, h.decode()) for u, found in zip(users, pipe.execute(), strict=True)
              for h in found]
    pipe = client.pipeline(transaction=False)
    for _, h in hashes:
        pipe.hget(token_key(h), "client")
    out: dict[int, set[str]] = {u: set() for u in users}
    for (user_id, _), app in zip(hashes, pipe.execute() if hashes else [], strict=True):
        if app is not None:
            out[user_id].add(app.decode())
    return {u: frozenset(apps) for u, apps in out.items()}
