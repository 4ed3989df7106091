"""OAuth2 end to end over HTTP: the authorize page, login, consent, codes, tokens, signed
requests, revocation and expiry; and the ``shutterlog apps`` commands."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.helpers import REPO, scrubbed_env, wait_for
from tests.integration.apiclient import PASSWORD, Api, sign, start_service
from tests.integration.conftest import Env

REDIRECT = "https://app.example/cb"




def form_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html))


def authorize(api: Api, client: httpx.Client, client_id: str, response_type: str = "code",
              scope: str = "basic likes", state: str = "xyz",
              redirect_uri: str | None = REDIRECT) -> dict[str, str]:
    """Walk the authorize page as a browser: login page, log in, consent page; returns the
    consent form's fields (``redirect_uri`` None: the request gives none)."""
    params = {"client_id": client_id, "response_type": response_type, "scope": scope,
              "state": state} | ({"redirect_uri": redirect_uri} if redirect_uri else {})
    r = client.get("/oauth/authorize", params=params)
    assert r.status_code == 200 and "Log in" in r.text, r.text
    assert r.headers["x-frame-options"] == "DENY"
    return form_fields(r.text)


def login(api: Api, client: httpx.Client, fields: dict[str, str], username: str) -> str:
    r = client.post("/oauth/authorize", data=fields | {"step": "login", "username": username,
                                                       "password": PASSWORD})
    assert r.status_code == 303, r.text
    r = client.get(r.headers["location"])
    assert r.status_code == 200 and "would like to" in r.text and username in r.text
    return r.text


def test_authorization_code_flow_end_to_end(api: Api) -> None:
    """Authorize page -> login -> consent -> code (state passed through) -> token -> API
    call; the code works once."""
    user = api.signup()
    client_id, secret = api.create_app(REDIRECT)
    with httpx.Client(base_url=api.service.base) as browser:
        fields = authorize(api, browser, client_id)
        consent = login(api, browser, fields, user["username"])
        r = browser.post("/oauth/authorize", data=form_fields(consent) | {"step": "allow"})
    assert r.status_code == 302
    location = urlsplit(r.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["xyz"]
    exchange = {"client_id": client_id, "client_secret": secret,
                "grant_type": "authorization_code", "redirect_uri": REDIRECT,
                "code": query["code"][0]}
    r = api.http.post("/oauth/access_token", data=exchange)
    assert r.status_code == 200, r.text
    assert r.json()["user"]["username"] == user["username"]
    token = r.json()["access_token"]
    me = api.get("/v1/users/self", token)
    assert me.status_code == 200 and me.json()["data"]["id"] == user["id"]
    again = api.http.post("/oauth/access_token", data=exchange)
    assert again.status_code == 400
    assert again.json() == {"code": 400, "error_type": "OAuthException",
                            "error_message": "Matching code was not found or was already used."}
    # the granted scopes: basic and likes, not relationships
    r = api.post(f"/v1/users/{user['id']}/relationship", token, action="follow")
    assert r.json()["meta"]["error_type"] == "OAuthPermissionsException"


def test_a_code_is_exchanged_with_the_redirect_uri_its_request_gave(api: Api) -> None:
    """RFC 6749, 4.1.3: the exchange repeats the authorization request's redirect_uri if it
    gave one (leaving it out is refused), and may leave it out if it gave none."""
    client_id, secret = api.create_app(REDIRECT)

    def code(redirect_uri: str | None) -> str:
        user = api.signup()
        with httpx.Client(base_url=api.service.base) as browser:
            fields = authorize(api, browser, client_id, redirect_uri=redirect_uri)
            consent = login(api, browser, fields, user["username"])
            r = browser.post("/oauth/authorize", data=form_fields(consent) | {"step": "allow"})
        assert r.status_code == 302, r.text
        assert r.headers["location"].startswith(REDIRECT + "?")
        return parse_qs(urlsplit(r.headers["location"]).query)["code"][0]

    def exchange(code: str, **redirect: str) -> httpx.Response:
        return api.http.post("/oauth/access_token", data={
            "client_id": client_id, "client_secret": secret,
            "grant_type": "authorization_code", "code": code} | redirect)

    assert exchange(code(None)).status_code == 200
    assert exchange(code(None), redirect_uri=REDIRECT).status_code == 200
    refused = exchange(code(REDIRECT))
    assert refused.status_code == 400 and "Redirect URI" in refused.text
    assert exchange(code(REDIRECT), redirect_uri=REDIRECT).status_code == 200


def test_implicit_flow_and_deny(api: Api) -> None:
    """response_type=token puts the token in the fragment; Cancel redirects with
    error=access_denied."""
    user = api.signup()
    client_id, _ = api.create_app(REDIRECT)
    with httpx.Client(base_url=api.service.base) as browser:
        consent = login(api, browser, authorize(api, browser, client_id, "token"),
                        user["username"])
        r = browser.post("/oauth/authorize", data=form_fields(consent) | {"step": "allow"})
        fragment = parse_qs(urlsplit(r.headers["location"]).fragment)
        assert api.get("/v1/users/self", fragment["access_token"][0]).status_code == 200
        r = browser.post("/oauth/authorize", data=form_fields(consent) | {"step": "deny"})
    query = parse_qs(urlsplit(r.headers["location"]).query)
    assert query["error"] == ["access_denied"] and query["error_reason"] == ["user_denied"]


def test_authorize_refusals(api: Api) -> None:
    """A wrong redirect_uri or client is answered, never redirected; a bad scope redirects
    with invalid_scope; a form without its CSRF token is refused; a wrong password shows the
    page again."""
    user = api.signup()
    client_id, _ = api.create_app(REDIRECT)
    base = {"client_id": client_id, "redirect_uri": REDIRECT, "response_type": "code"}
    r = api.http.get("/oauth/authorize", params=base | {"redirect_uri": REDIRECT + "/evil"})
    assert r.status_code == 400 and "location" not in r.headers
    assert r.json()["error_type"] == "OAuthException"
    r = api.http.get("/oauth/authorize", params=base | {"client_id": "nope"})
    assert r.status_code == 400 and r.json()["error_message"] == "Invalid client_id"
    r = api.http.get("/oauth/authorize", params=base | {"scope": "everything"})
    assert r.status_code == 302
    assert parse_qs(urlsplit(r.headers["location"]).query)["error"] == ["invalid_scope"]
    with httpx.Client(base_url=api.service.base) as browser:
        fields = authorize(api, browser, client_id)
        login_form = fields | {"step": "login", "username": user["username"]}
        r = browser.post("/oauth/authorize", data=login_form | {"csrf": "forged",
                                                                "password": PASSWORD})
        assert r.status_code == 403
        r = browser.post("/oauth/authorize", data=login_form | {"password": "wrong password"})
        assert r.status_code == 401 and "Wrong username or password" in r.text


def test_access_token_errors(api: Api) -> None:
    """Wrong secret, unknown grant type, wrong password and a revoked app answer flat
    OAuthException errors."""
    user = api.signup()
    client_id, secret = api.create_app(REDIRECT)
    base = {"client_id": client_id, "client_secret": secret, "grant_type": "password",
            "username": user["username"], "password": PASSWORD}
    for changes, message in (
        ({"client_secret": "x" * 32}, "Invalid client_secret"),
        ({"password": "not the password"}, "Wrong username or password."),
        ({"username": api.name()}, "Wrong username or password."),
        ({"scope": "root"}, "unknown scope: root"),
    ):
        r = api.http.post("/oauth/access_token", data=base | changes)
        assert r.status_code == 400, r.text
        assert r.json() == {"code": 400, "error_type": "OAuthException",
                            "error_message": message}
    r = api.http.post("/oauth/access_token", data=base | {"grant_type": "magic"})
    assert r.status_code == 400 and "grant_type" in r.json()["error_message"]


def test_access_token_is_idempotent(api: Api) -> None:
    """A retried grant with the same Idempotency-Key returns the same token."""
    user = api.signup()
    client_id, secret = api.app
    data = {"client_id": client_id, "client_secret": secret, "grant_type": "password",
            "username": user["username"], "password": PASSWORD}
    key = {"Idempotency-Key": "grant-1"}
    first = api.http.post("/oauth/access_token", data=data, headers=key)
    second = api.http.post("/oauth/access_token", data=data, headers=key)
    third = api.http.post("/oauth/access_token", data=data)
    assert first.json()["access_token"] == second.json()["access_token"]
    assert third.json()["access_token"] != first.json()["access_token"]


def test_a_grant_key_gives_no_token_to_another_request(api: Api) -> None:
    """Repeating a password grant's Idempotency-Key without the client secret, or with it
    but another user's credentials, gets an error, not the first grant's token."""
    victim = api.signup()
    client_id, secret = api.app
    key = {"Idempotency-Key": "login-1"}
    first = api.http.post("/oauth/access_token", headers=key, data={
        "client_id": client_id, "client_secret": secret, "grant_type": "password",
        "username": victim["username"], "password": PASSWORD})
    assert first.status_code == 200, first.text
    r = api.http.post("/oauth/access_token", headers=key, data={
        "client_id": client_id, "client_secret": "wrong", "grant_type": "password",
        "username": "mallory", "password": "not-the-password"})
    assert (r.status_code, r.json()["error_type"]) == (400, "OAuthException"), r.text
    r = api.http.post("/oauth/access_token", headers=key, data={
        "client_id": client_id, "client_secret": secret, "grant_type": "password",
        "username": "mallory", "password": "not-the-password"})
    assert (r.status_code, r.json()["error_message"]) == (400, "Wrong username or password.")
    assert first.json()["access_token"] not in r.text


def test_token_errors_and_revocation(api: Api) -> None:
    """No token, a bad token, conflicting tokens, a revoked token and all of a user's tokens
    revoked: each refused with the Instagram error type."""
    user, token = api.user()
    r = api.http.get("/v1/users/self")
    assert (r.status_code, r.json()["meta"]["error_type"]) == (400, "OAuthParameterException")
    r = api.http.get("/v1/users/self", params={"access_token": "garbage"})
    assert r.json()["meta"]["error_type"] == "OAuthAccessTokenException"
    r = api.http.get("/v1/users/self", params={"access_token": token},
                     headers={"Authorization": "Bearer other"})
    assert r.json()["meta"]["error_type"] == "OAuthParameterException"
    assert api.http.get("/v1/users/self", params={"access_token": token}).status_code == 200
    other = api.token(user["username"])
    assert api.post("/oauth/revoke", token).json()["data"] == {"revoked": 1}
    assert api.get("/v1/users/self", token).json()["meta"]["error_type"] == \
        "OAuthAccessTokenException"
    assert api.get("/v1/users/self", other).status_code == 200
    third = api.token(user["username"])
    assert api.post("/oauth/revoke", third, all="true").json()["data"] == {"revoked": 2}
    assert api.get("/v1/users/self", other).status_code == 400


def test_signed_requests(api: Api) -> None:
    """An app requiring signed requests: no sig is refused, a wrong sig is refused, the right
    sig (query and form parameters) passes; a wrong sig is refused for any app."""
    user = api.signup()
    target = api.signup()
    client_id, secret = api.create_app(REDIRECT, require_signed=True)
    token = api.token(user["username"], app=(client_id, secret))
    r = api.http.get("/v1/users/self", params={"access_token": token})
    assert (r.status_code, r.json()["meta"]["error_message"]) == (
        403, "Invalid signed-request: Missing required parameter 'sig'")
    assert r.json()["meta"]["error_type"] == "OAuthForbiddenException"
    params = {"access_token": token, "count": "5"}
    r = api.http.get("/v1/users/self", params=params | {"sig": "0" * 64})
    assert r.status_code == 403 and "does not match" in r.text
    r = api.http.get("/v1/users/self", params=params | {"sig": sign("/v1/users/self", params,
                                                                    secret)})
    assert r.status_code == 200, r.text
    path = f"/v1/users/{target['id']}/relationship"
    form = {"access_token": token, "action": "follow"}
    r = api.http.post(path, data=form | {"sig": sign(path, form, secret)})
    assert r.status_code == 200 and r.json()["data"]["outgoing_status"] == "follows"
    _, plain = api.user()
    r = api.http.get("/v1/users/self", params={"access_token": plain, "sig": "1" * 64})
    assert r.status_code == 403


def test_tokens_expire(module_env: Env) -> None:
    """With oauth.token_ttl of 1 s a token stops working on its own."""
    svc = start_service(module_env, SHUTTERLOG_OAUTH_TOKEN_TTL="1")
    try:
        api = Api(module_env, svc)
        _, token = api.user()
        wait_for(lambda: api.get("/v1/users/self", token).status_code == 400, timeout=10,
                 message="the token to expire")
        assert api.get("/v1/users/self", token).json()["meta"]["error_type"] == \
            "OAuthAccessTokenException"
    finally:
        svc.stop()


def shutterlog(env: Env, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scripts.cli", *argv], cwd=REPO,
                          env=scrubbed_env(env.vars), capture_output=True, text=True,
                          timeout=60)


def test_apps_commands(api: Api, module_env: Env) -> None:
    """apps create prints the credentials as JSON; list shows the app without its secret;
    revoke stops its tokens at once and refuses new ones."""
    out = shutterlog(module_env, "apps", "create", "CLI app", "--redirect-uri", REDIRECT)
    assert out.returncode == 0, out.stderr
    creds = json.loads(out.stdout)
    assert set(creds) == {"client_id", "client_secret"}
    listing = shutterlog(module_env, "apps", "list", "--json")
    assert creds["client_id"] in listing.stdout and creds["client_secret"] not in listing.stdout
    user = api.signup()
    token = api.token(user["username"], app=(creds["client_id"], creds["client_secret"]))
    assert api.get("/v1/users/self", token).status_code == 200
    out = shutterlog(module_env, "apps", "revoke", creds["client_id"])
    assert out.returncode == 0 and "1 token(s) revoked" in out.stderr
    assert api.get("/v1/users/self", token).status_code == 400
    r = api.http.post("/oauth/access_token", data={
        "client_id": creds["client_id"], "client_secret": creds["client_secret"],
        "grant_type": "password", "username": user["username"], "password": PASSWORD})
    assert r.json()["error_message"] == "Invalid client_id"
    bad = shutterlog(module_env, "apps", "create", "x", "--redirect-uri", "ftp://nope")
    assert bad.returncode == 2 and "redirect URI" in bad.stderr


def test_revoke_is_idempotent(api: Api) -> None:
    """A retried revocation with the same Idempotency-Key returns the first answer."""
    user, token = api.user()
    key = {"Idempotency-Key": "revoke-1"}
    first = api.post("/oauth/revoke", token, headers=key)
    assert first.json()["data"] == {"revoked": 1}
    other = api.token(user["username"])
    retry = api.post("/oauth/revoke", other, headers=key)
    assert retry.json()["data"] == {"revoked": 1}
    assert api.get("/v1/users/self", other).status_code == 200  # the retry revoked nothing
