"""A local server that behaves as FCM HTTP v1 and Google's OAuth2 token endpoint, over TLS.

``POST /token`` takes the JWT bearer grant (``grant_type=urn:ietf:params:oauth:grant-type:
jwt-bearer&assertion=JWT``): it checks the assertion's RS256 signature against the service
account's public key, its ``kid``, ``iss``, ``aud`` (Google's token URL, whichever endpoint
receives it, as Google requires), ``scope``, ``iat`` and ``exp``, and issues an access token
that expires after ``token_lifetime`` seconds.

``POST /v1/projects/{project}/messages:send`` checks the bearer token (unknown, revoked or
expired: 401 ``UNAUTHENTICATED``), the project, and the message's shape (one target, string
data values, Android priority and ttl, APNs headers), answering FCM's error format: the RPC
status, and the FCM error code in ``details`` (``google.firebase.fcm.v1.FcmError``) or the
bad fields (``google.rpc.BadRequest``). Tests script answers per registration token
(``respond``), with ``Retry-After`` when asked.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import secrets
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jwt

from scripts.fakes.script import Script
from scripts.fakes.tls import TlsFiles
from server.domain.fcm import BAD_REQUEST_TYPE, FCM_ERROR_TYPE, SCOPE

GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: The audience Google requires in the assertion, whichever endpoint receives it.
AUDIENCE = "https://oauth2.googleapis.com/token"
#: FCM error code -> (HTTP status, RPC status), as FCM answers them.
CODES = {
    "UNREGISTERED": (404, "NOT_FOUND"),
    "INVALID_ARGUMENT": (400, "INVALID_ARGUMENT"),
    "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED"),
    "QUOTA_EXCEEDED": (429, "RESOURCE_EXHAUSTED"),
    "UNAVAILABLE": (503, "UNAVAILABLE"),
    "INTERNAL": (500, "INTERNAL"),
    "THIRD_PARTY_AUTH_ERROR": (401, "UNAUTHENTICATED"),
}
MESSAGE_FIELDS = {"name", "data", "notification", "android", "webpush", "apns", "fcm_options",
                  "token", "topic", "condition"}
_TTL = re.compile(r"^\d+(\.\d{1,9})?s$")


@dataclass(frozen=True)
class _Scripted:
    code: str
    retry_after: str | None
    fields: tuple[str, ...]


@dataclass(frozen=True)
class Sent:
    """One send request as the server saw it."""

    token: str
    message: dict[str, Any]
    bearer: str
    status: int


def error_body(status: int, rpc: str, message: str, code: str | None = None,
               fields: tuple[str, ...] = ()) -> dict[str, Any]:
    """An error answer in FCM's format."""
    details: list[dict[str, Any]] = []
    if code:
        details.append({"@type": FCM_ERROR_TYPE, "errorCode": code})
    if fields:
        details.append({"@type": BAD_REQUEST_TYPE, "fieldViolations": [
            {"field": f, "description": message} for f in fields]})
    error: dict[str, Any] = {"code": status, "message": message, "status": rpc}
    if details:
        error["details"] = details
    return {"error": error}


@dataclass
class FakeFcm:
    """FCM for one project, trusting one service account (its email, key id, public key)."""

    tls: TlsFiles
    project: str
    client_email: str
    key_id: str
    public_key: bytes
    token_lifetime: int = 3600
    clock: Callable[[], float] = time.time
    port: int = 0
    sent: list[Sent] = field(default_factory=list)
    grants: list[str] = field(default_factory=list)  #: access tokens issued, in order
    assertions: list[str] = field(default_factory=list)  #: JWT assertions received
    _tokens: dict[str, float] = field(default_factory=dict)  # access token -> expiry
    _script: Script[_Scripted] = field(default_factory=Script)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def respond(self, token: str, code: str, retry_after: str | None = None,
                times: int | None = 1, fields: tuple[str, ...] = ()) -> None:
        """Answer sends to registration ``token`` with FCM error ``code`` (``times`` times,
        None: always), with a ``Retry-After`` header when given; ``fields`` adds a
        BadRequest detail naming them (an invalid argument about the message)."""
        self._script.add(token, _Scripted(code, retry_after, fields), times)

    def revoke_tokens(self) -> None:
        """Forget every access token issued so far (their next use is answered 401)."""
        with self._lock:
            self._tokens.clear()

    def for_token(self, token: str) -> list[Sent]:
        return [s for s in list(self.sent) if s.token == token]

    # --- the token endpoint -----------------------------------------------------------------

    def grant(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if form.get("grant_type") != [GRANT] or len(form.get("assertion", [])) != 1:
            return 400, {"error": "unsupported_grant_type"}
        assertion = form["assertion"][0]
        self.assertions.append(assertion)
        now = self.clock()
        try:
            if jwt.get_unverified_header(assertion).get("kid") != self.key_id:
                raise jwt.InvalidTokenError("kid")
            claims = jwt.decode(assertion, self.public_key, algorithms=["RS256"],
                                audience=AUDIENCE, issuer=self.client_email,
                                options={"verify_exp": False, "verify_iat": False,
                                         "require": ["iss", "aud", "iat", "exp", "scope"]})
        except jwt.InvalidTokenError:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        if SCOPE not in str(claims["scope"]).split():
            return 400, {"error": "invalid_scope"}
        iat, exp = claims["iat"], claims["exp"]
        if not (iat - 60 <= now < exp) or exp - iat > 3600:
            return 400, {"error": "invalid_grant",
                         "error_description": "Invalid JWT: Token must be a short-lived token "
                         "(60 minutes) and in a reasonable timeframe."}
        access = "ya29.fake-" + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[access] = now + self.token_lifetime
            self.grants.append(access)
        return 200, {"access_token": access, "expires_in": self.token_lifetime,
                     "token_type": "Bearer"}

    # --- sends -------------------------------------------------------------------------------

    def send(self, path: str, authorization: str,
             body: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        """(status, JSON answer, extra headers) for one send request."""
        bearer = authorization.removeprefix("Bearer ")
        with self._lock:
            expiry = self._tokens.get(bearer)
        if not authorization.startswith("Bearer ") or expiry is None or self.clock() >= expiry:
            return 401, error_body(401, "UNAUTHENTICATED", "Request had invalid authentication "
                                   "credentials. Expected OAuth 2 access token."), {}
        if path != f"/v1/projects/{self.project}/messages:send":
            return 404, error_body(404, "NOT_FOUND", "Requested entity was not found."), {}
        try:
            message = json.loads(body)["message"]
            if not isinstance(message, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return 400, error_body(400, "INVALID_ARGUMENT", "Invalid JSON payload received.",
                                   fields=("message",)), {}
        token = message.get("token", "")
        status, answer, headers = self._answer(message, token)
        self.sent.append(Sent(token, message, bearer, status))
        return status, answer, headers

    def _answer(self, message: dict[str, Any],
                token: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        bad = _bad_fields(message)
        if bad:
            return 400, error_body(400, "INVALID_ARGUMENT", f"Invalid value at '{bad[0]}'",
                                   "INVALID_ARGUMENT", bad), {}
        if not isinstance(token, str) or len(token) < 20 or not token.isprintable():
            return 400, error_body(400, "INVALID_ARGUMENT", "The registration token is not a "
                                   "valid FCM registration token", "INVALID_ARGUMENT"), {}
        scripted = self._script.take(token)
        if scripted:
            status, rpc = CODES[scripted.code]
            headers = {"Retry-After": scripted.retry_after} if scripted.retry_after else {}
            code = None if scripted.fields else scripted.code
            return status, error_body(status, rpc, scripted.code.lower(), code,
                                      scripted.fields), headers
        name = f"projects/{self.project}/messages/0:{secrets.token_hex(8)}"
        return 200, {"name": name}, {}

    # --- running ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def running(self) -> Iterator[FakeFcm]:
        """Serve in a background thread; ``self.port`` is set on entry."""
        fake = self

        class Handler(_Handler):
            server_fake = fake

        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.tls.cert, self.tls.key)
        ctx.set_alpn_protocols(["http/1.1"])
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        server.daemon_threads = True
        self.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="fake-fcm",
                                  daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(10)


def _bad_fields(message: dict[str, Any]) -> tuple[str, ...]:
    """The fields of ``message`` FCM would reject (as BadRequest field violations)."""
    unknown = sorted(set(message) - MESSAGE_FIELDS)
    if unknown:
        return tuple(f"message.{name}" for name in unknown)
    if sum(1 for k in ("token", "topic", "condition") if k in message) != 1:
        return ("message.token",)
    for i, value in enumerate((message.get("data") or {}).values()):
        if not isinstance(value, str):
            return (f"message.data[{i}].value",)
    android = message.get("android") or {}
    if android.get("priority", "NORMAL") not in ("NORMAL", "HIGH"):
        return ("message.android.priority",)
    if "ttl" in android and not _TTL.match(str(android["ttl"])):
        return ("message.android.ttl",)
    apns_headers = (message.get("apns") or {}).get("headers") or {}
    for name, value in apns_headers.items():
        if not isinstance(value, str):
            return (f"message.apns.headers[{name}]",)
    return ()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_fake: FakeFcm

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        fake = self.server_fake
        headers: dict[str, str] = {}
        if self.path == "/token":
            form = urllib.parse.parse_qs(body.decode("ascii", "replace"))
            status, answer = fake.grant(form)
        else:
            status, answer, headers = fake.send(self.path, self.headers.get("authorization", ""),
                                                body)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json; charset=UTF-8")
        self.send_header("content-length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read ``sent`` and ``grants`` instead."""
