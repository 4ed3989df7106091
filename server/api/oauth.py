"""OAuth2 as the Instagram API spoke it: ``/oauth/authorize`` (authorization code and
implicit flows, with a plain login and consent page), ``/oauth/access_token`` (grant types
``authorization_code`` and ``password``), and ``/oauth/revoke``.

Errors before a redirect URI is verified are answered, never redirected (an unverified
redirect would leak codes); later ones go back to the app as ``?error=...``. The token
endpoint answers flat JSON: ``{"access_token", "user"}`` or ``{"code", "error_type":
"OAuthException", "error_message"}``. Forms are protected by a CSRF token bound to a cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any
from urllib.parse import urlencode

from klein import Klein

from server.api.endpoint import API, FLAT, HTML, Call, Reply
from server.api.envelope import APIError
from server.api.idempotency import remembered
from server.api.oauth_pages import HEADERS, HTML_TYPE, consent_page, login_page
from server.api.params import Param
from server.api.users import USER, user_json
from server.context import ServiceContext
from server.domain.accounts import username_shard
from server.domain.ids import shard_of
from server.domain.oauth import OAuthError, check_redirect_uri, parse_scopes, scope_text
from server.passwords import hash_password, verify_password
from server.store import accounts, apps
from server.store.apps import App
from server.store.tokens import Grant

SESSION, CSRF = "sl_session", "sl_csrf"
REQUEST_FIELDS = ("client_id", "redirect_uri", "response_type", "scope", "state")
AUTHORIZE_PARAMS = (
    Param("client_id", required=True, max_length=64),
    Param("redirect_uri", max_length=2000),
    Param("response_type", required=True, enum=("code", "token")),
    Param("scope", default="", max_length=200, description="space- or +-separated scopes"),
    Param("state", default="", max_length=500, description="returned to the app unchanged"),
)
TOKEN_RESPONSE: dict[str, Any] = {
    "type": "object", "required": ["access_token", "user"],
    "properties": {"access_token": {"type": "string"}, "user": USER},
}


def oauth_error(message: str) -> APIError:
    return APIError(400, "OAuthException", message)


def redirect(uri: str, params: dict[str, str], fragment: bool = False) -> Reply:
    sep = "#" if fragment else ("&" if "?" in uri else "?")
    location = f"{uri}{sep}{urlencode(params)}"
    return Reply(code=302, body=b"", content_type=HTML_TYPE,
                 headers=((b"location", location.encode()), (b"cache-control", b"no-store")))


class Authorizer:
    """The pieces of the authorize flow that need the service's secrets and stores."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self._csrf_key = hashlib.sha256(b"csrf " + ctx.config.secrets.key.encode()).digest()

    def app(self, client_id: str) -> App:
        app = apps.get(self.ctx.router, client_id)
        if app is None or app.revoked:
            raise oauth_error("Invalid client_id")
        return app

    def csrf_for(self, cookie: str) -> str:
        return hmac.new(self._csrf_key, cookie.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, call: Call) -> None:
        cookie = call.raw.cookies.get(CSRF, "")
        given = call.body.get("csrf", "")
        if not cookie or not isinstance(given, str) or not hmac.compare_digest(
                self.csrf_for(cookie), given):
            raise APIError(403, "OAuthForbiddenException",
                           "the form's CSRF token is missing or wrong; reload the page")

    def login(self, username: str, password: str) -> int | None:
        """The user id when the password is right. A missing user costs a hash too, so the
        answer's timing does not say whether the username exists."""
        shard = username_shard(username, self.ctx.router.count)
        found = self.ctx.router.database(shard).run_interaction(
            "login", accounts.login, shard, username)
        cfg = self.ctx.config.accounts
        if found is None:
            hash_password(cfg, password)
            return None
        return found[0] if verify_password(cfg, found[1], password) else None

    def user(self, user_id: int) -> accounts.User:
        user = self.ctx.router.database(shard_of(user_id)).run_interaction(
            "user", accounts.get_user, user_id)
        if user is None:
            raise oauth_error("the user no longer exists")
        return user


def routes(app: Klein, ctx: ServiceContext) -> None:
    api = API(app, ctx)
    authz = Authorizer(ctx)

    def verified(call: Call) -> tuple[App, str, frozenset[str] | OAuthError]:
        """The app and redirect URI (raising: not redirectable), and the scopes or the error
        to redirect with."""
        client = authz.app(call.params["client_id"])
        try:
            uri = check_redirect_uri(client.redirect_uri, call.params["redirect_uri"])
        except OAuthError as e:
            raise oauth_error(str(e)) from None
        try:
            return client, uri, parse_scopes(call.params["scope"])
        except OAuthError as e:
            return client, uri, e

    def page(call: Call, client: App, scopes: frozenset[str], error: str = "") -> Reply:
        cookie = call.raw.cookies.get(CSRF) or secrets.token_urlsafe(24)
        fields = {k: str(call.params[k] or "") for k in REQUEST_FIELDS}
        fields["csrf"] = authz.csrf_for(cookie)
        session = call.raw.cookies.get(SESSION)
        user_id = ctx.tokens.session_user(session) if session else None
        if user_id is None:
            body = login_page(client.name, fields, error)
        else:
            body = consent_page(client.name, authz.user(user_id).username, scopes, fields)
        return Reply(code=401 if error else 200, body=body, content_type=HTML_TYPE,
                     headers=HEADERS, cookies=((CSRF, cookie, 86400),))

    @api.endpoint("GET", "/oauth/authorize", "The login and consent page", scope=None,
                  params=AUTHORIZE_PARAMS, style=HTML, tag="oauth")
    def authorize(call: Call) -> Reply:
        client, uri, scopes = verified(call)
        if isinstance(scopes, OAuthError):
            return redirect(uri, {"error": scopes.error, "error_description": str(scopes),
                                  "state": call.params["state"]})
        return page(call, client, scopes)

    @api.endpoint("POST", "/oauth/authorize", "Log in, or answer the consent page",
                  scope=None, style=HTML, tag="oauth", body_types=(
                      "application/x-www-form-urlencoded",),
                  params=(*(Param(p.name, p.kind, "body", p.required, p.default,
                                  max_length=p.max_length, enum=p.enum)
                            for p in AUTHORIZE_PARAMS),
                          Param("step", where="body", required=True,
                                enum=("login", "allow", "deny")),
                          Param("csrf", where="body", required=True, max_length=100),
                          Param("username", where="body", default="", max_length=30),
                          Param("password", where="body", default="", max_length=1024)))
    def answer(call: Call) -> Reply:
        client, uri, scopes = verified(call)
        authz.check_csrf(call)
        p = call.params
        state = p["state"]
        if isinstance(scopes, OAuthError):
            return redirect(uri, {"error": scopes.error, "error_description": str(scopes),
                                  "state": state})
        if p["step"] == "login":
            user_id = authz.login(p["username"], p["password"])
            if user_id is None:
                return page(call, client, scopes, "Wrong username or password.")
            again = f"/oauth/authorize?{urlencode({k: p[k] or '' for k in REQUEST_FIELDS})}"
            return Reply(code=303, body=b"", content_type=HTML_TYPE,
                         headers=((b"location", again.encode()),),
                         cookies=((SESSION, ctx.tokens.new_session(user_id),
                                   ctx.config.oauth.session_ttl),))
        session = call.raw.cookies.get(SESSION)
        user_id = ctx.tokens.session_user(session) if session else None
        if user_id is None:
            return page(call, client, scopes, "Your login has expired; log in again.")
        if p["step"] == "deny":
            return redirect(uri, {"error": "access_denied", "error_reason": "user_denied",
                                  "error_description": "The user denied your request",
                                  "state": state})
        scope = scope_text(scopes)
        if p["response_type"] == "token":
            token = ctx.tokens.issue(user_id, client.client_id, scope, client.require_signed)
            return redirect(uri, {"access_token": token, "state": state}, fragment=True)
        # The code remembers the redirect URI as the request gave it ("" for none: the
        # registered one was used), which the exchange must repeat (RFC 6749, 4.1.3)
        code = ctx.tokens.new_code(Grant(user_id, client.client_id, p["redirect_uri"] or "",
                                         scope))
        return redirect(uri, {"code": code, "state": state})

    @api.endpoint(
        "POST", "/oauth/access_token", "Exchange a code or a password for an access token",
        scope=None, style=FLAT, data=TOKEN_RESPONSE, tag="oauth",
        body_types=("application/x-www-form-urlencoded",),
        params=(
            Param("client_id", where="body", required=True, max_length=64),
            Param("client_secret", where="body", required=True, max_length=200),
            Param("grant_type", where="body", required=True,
                  enum=("authorization_code", "password")),
            Param("redirect_uri", where="body", default="", max_length=2000),
            Param("code", where="body", default="", max_length=200),
            Param("username", where="body", default="", max_length=30),
            Param("password", where="body", default="", max_length=1024),
            Param("scope", where="body", default="", max_length=200),
        ),
    )
    def access_token(call: Call) -> Reply:
        # The app proves itself before a retry may get a stored answer, and that answer is
        # bound to the grant's parameters (``remembered``): a key alone gets no token.
        client = authz.app(call.params["client_id"])
        if not hmac.compare_digest(client.secret(ctx.box).encode(),
                                   call.params["client_secret"].encode()):
            raise oauth_error("Invalid client_secret")
        return remembered(call, f"oauth:{client.client_id}", lambda: grant(call, client))

    def grant(call: Call, client: App) -> Reply:
        p = call.params
        if p["grant_type"] == "authorization_code":
            grant = ctx.tokens.take_code(p["code"]) if p["code"] else None
            if grant is None or grant.client_id != client.client_id:
                raise oauth_error("Matching code was not found or was already used.")
            # the URI the authorization request gave, or none (or the registered one) if
            # it gave none
            allowed = {grant.redirect_uri} if grant.redirect_uri else {"", client.redirect_uri}
            if p["redirect_uri"] not in allowed:
                raise oauth_error("Redirect URI doesn't match original redirect URI")
            user_id, scope = grant.user_id, grant.scope
        else:
            try:
                scope = scope_text(parse_scopes(p["scope"]))
            except OAuthError as e:
                raise oauth_error(str(e)) from None
            found = authz.login(p["username"], p["password"]) if p["username"] else None
            if found is None:
                raise oauth_error("Wrong username or password.")
            user_id = found
        token = ctx.tokens.issue(user_id, client.client_id, scope, client.require_signed)
        body = json.dumps({"access_token": token, "user": user_json(authz.user(user_id))})
        return Reply(body=body.encode())

    @api.endpoint("POST", "/oauth/revoke", "Revoke the access token, or all the user's tokens",
                  tag="oauth", data={"type": "object", "properties": {
                      "revoked": {"type": "integer", "minimum": 0}}},
                  params=(Param("all", bool, where="body", default=False,
                                description="revoke every token of the user"),))
    def revoke(call: Call) -> Reply:
        return remembered(call, f"u{call.user_id}", lambda: revoke_now(call))

    def revoke_now(call: Call) -> Reply:
        if call.params["all"]:
            return Reply({"revoked": ctx.tokens.revoke_user(call.user_id)})
        token = call.query.get("access_token") or call.body.get("access_token") or (
            (call.raw.authorization or "")[len("bearer "):].strip())
        return Reply({"revoked": int(ctx.tokens.revoke(str(token)))})
