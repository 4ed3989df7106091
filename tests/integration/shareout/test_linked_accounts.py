"""``/v1/users/self/linked_accounts`` against the real service and the fake services: links
proven with the service, stored encrypted, never answered; every refusal precise and
changing nothing; uploads may only share to linked services."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Sequence

import pytest

from server.config import load
from server.credentials import rotate_all
from server.crypto import CredentialCipher, generate_key
from server.db import Txn
from server.domain.events import EVENTS
from server.domain.ids import shard_of
from server.domain.links import AccountLinked, AccountUnlinked, link_stream
from server.domain.log import AppendRequest, AppendResult, NewEvent, StreamConflict
from server.domain.shareout import Credentials
from server.store import links
from server.store.events import PostgresEventStore
from tests.fakes.http import Reply
from tests.helpers import REPO, scrubbed_env
from tests.integration.apiclient import Api
from tests.integration.conftest import Env
from tests.integration.mediakit import picture, upload
from tests.integration.recording import cli
from tests.integration.shareout.conftest import (
    MASTODON_TOKEN,
    SECRETS,
    Fakes,
    link,
    linked_user,
)

SERVICES = ("mastodon", "twitter", "facebook", "webhook")
#: The key the rotation tests put first (one for the module: a rotation re-seals every link).
NEW_KEY = generate_key()


def link_events(env: Env) -> list[tuple[str, bytes]]:
    """(type, raw payload) of every link event in every database."""
    out: list[tuple[str, bytes]] = []
    for db in env.router.databases():
        out += [(t, bytes(p)) for t, p in db.run_interaction(
            "link_events", Txn.fetchall,
            "SELECT type, payload FROM events WHERE type IN ('AccountLinked', 'AccountUnlinked') "
            "ORDER BY id")]
    return out


def error(r: object) -> tuple[int, str, str]:
    body = r.json()["meta"]  # type: ignore[attr-defined]
    return r.status_code, body["error_type"], body["error_message"]  # type: ignore[attr-defined]


def test_each_service_links_and_get_never_shows_credentials(api: Api, fakes: Fakes) -> None:
    """Every service links after one verifying call; GET shows service, account and time,
    and no answer carries a token or secret."""
    _, token = api.user()
    answers = [link(api, token, s, fakes.fields(s)) for s in SERVICES]
    for r in answers:
        assert r.status_code == 200, r.text
    got = api.get("/v1/users/self/linked_accounts", token)
    assert got.status_code == 200
    data = got.json()["data"]
    assert [d["service"] for d in data] == sorted(SERVICES)
    assert {d["service"]: d["account"] for d in data} == {
        "mastodon": "@alice", "twitter": "@alice", "facebook": "Alice's Photos",
        "webhook": "127.0.0.1"}
    assert all(set(d) == {"service", "account", "linked_time"} for d in data)
    for text in [got.text, *(r.text for r in answers)]:
        assert not any(secret in text for secret in SECRETS)
    assert fakes.mastodon.received("GET", "/api/v1/accounts/verify_credentials")
    assert fakes.receiver.events["ping"]["type"] == "ping"


def test_credentials_are_stored_encrypted(api: Api, fakes: Fakes, module_env: Env) -> None:
    """The AccountLinked payload holds the credentials only as a Fernet token that the
    configured key opens (with what verify learned); never the token in clear."""
    before = len(link_events(module_env))
    _, token = api.user()
    assert link(api, token, "mastodon", fakes.fields("mastodon")).status_code == 200
    (kind, payload), = link_events(module_env)[before:]
    assert kind == "AccountLinked" and MASTODON_TOKEN.encode() not in payload
    event = module_env.store.latest(1, types=["AccountLinked"])[0].data
    assert isinstance(event, AccountLinked) and event.service == "mastodon"
    assert EVENTS.redacted(event)["credentials"] == "***"  # what `shutterlog events` shows
    sealed = event.credentials
    opened = Credentials.from_json(CredentialCipher.from_config(module_env.config).decrypt(sealed))
    assert opened["access_token"] == MASTODON_TOKEN
    assert opened["max_characters"] == "500"  # learned from /api/v2/instance


@pytest.mark.parametrize("fields, message", [
    ({"service": "myspace", "token": "t"}, "service: unknown service 'myspace'"),
    ({"service": "twitter"}, "token is required to link twitter"),
    ({"service": "facebook", "token": "t"}, "page_id is required to link facebook"),
    ({"service": "twitter", "token": "t", "page_id": "1"},
     "page_id is not a field of a twitter link"),
    ({"service": "facebook", "token": "t", "page_id": "my-page"},
     "page_id must be the Page's numeric id"),
    ({"service": "webhook", "url": "http://169.254.169.254/latest", "secret": "s" * 20},
     "metadata addresses are refused"),
    ({"service": "webhook", "url": "http://10.1.2.3/hook", "secret": "s" * 20}, "private"),
    ({"service": "webhook", "url": "ftp://example.com/hook", "secret": "s" * 20}, "http"),
    ({"service": "mastodon", "token": "t", "instance_url": "http://[::1]:3000"}, "loopback"),
    ({"service": "webhook", "url": "https://example.com/hook", "secret": "short"},
     "secret must be at least 16 characters"),
])
def test_bad_link_requests_get_a_precise_400(api: Api, module_env: Env, fields: dict[str, str],
                                             message: str) -> None:
    """Unknown services, missing or foreign fields, malformed ids and unsafe URLs are 400s
    naming the problem, and append nothing."""
    _, token = api.user()
    before = len(link_events(module_env))
    r = link(api, token, fields.pop("service"), fields)
    code, kind, text = error(r)
    assert (code, kind) == (400, "APIInvalidParametersError") and message in text, text
    assert len(link_events(module_env)) == before
    assert api.get("/v1/users/self/linked_accounts", token).json()["data"] == []


def test_credentials_the_service_refuses_are_not_linked(api: Api, fakes: Fakes) -> None:
    """A token the service answers 401 to is refused with 400, and the refusal does not
    echo it."""
    _, token = api.user()
    r = link(api, token, "mastodon", {"token": "wrong-token-5a5a",
                                      "instance_url": fakes.mastodon.url})
    code, kind, text = error(r)
    assert (code, kind) == (400, "APIInvalidParametersError")
    assert "Mastodon refused the credentials" in text and "wrong-token-5a5a" not in text
    assert api.get("/v1/users/self/linked_accounts", token).json()["data"] == []


def test_an_unreachable_service_is_a_503(api: Api, fakes: Fakes) -> None:
    """A 503 from the service while verifying answers 503: nothing is linked, try later."""
    _, token = api.user()
    fakes.twitter.script("GET", "/2/users/me", Reply(503, {"title": "Service Unavailable"}))
    r = link(api, token, "twitter", fakes.fields("twitter"))
    assert error(r)[:2] == (503, "APIServiceUnavailableError")
    assert api.get("/v1/users/self/linked_accounts", token).json()["data"] == []


def test_linking_again_replaces_and_unlinking_removes(api: Api, fakes: Fakes,
                                                      module_env: Env) -> None:
    """A second link of a service replaces the first; DELETE unlinks (reason user); a
    second DELETE is 404 and an unknown service 400."""
    _, token = linked_user(api, fakes, "twitter")
    assert link(api, token, "twitter", fakes.fields("twitter")).status_code == 200
    assert len(api.get("/v1/users/self/linked_accounts", token).json()["data"]) == 1
    path = "/v1/users/self/linked_accounts"
    auth = {"Authorization": f"Bearer {token}"}
    assert api.http.delete(f"{path}/twitter", headers=auth).status_code == 200
    assert api.get(path, token).json()["data"] == []
    unlinked = module_env.store.latest(1, types=["AccountUnlinked"])[0].data
    assert isinstance(unlinked, AccountUnlinked)
    assert (unlinked.reason, unlinked.service) == ("user", "twitter")
    assert error(api.http.delete(f"{path}/twitter", headers=auth))[:2] == (
        404, "APINotFoundError")
    assert error(api.http.delete(f"{path}/myspace", headers=auth))[:2] == (
        400, "APIInvalidParametersError")


def test_a_retried_link_appends_once(api: Api, fakes: Fakes, module_env: Env) -> None:
    """A link retried with its Idempotency-Key answers the first link and appends nothing
    more."""
    _, token = api.user()
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "link-once-1"}
    body = {"service": "twitter"} | fakes.fields("twitter")
    before = len(link_events(module_env))
    first, again = (api.http.post("/v1/users/self/linked_accounts", headers=headers, data=body)
                    for _ in range(2))
    assert first.status_code == again.status_code == 200, first.text
    assert first.json()["data"] == again.json()["data"]
    assert len(link_events(module_env)) == before + 1


def test_linked_accounts_need_a_token(api: Api) -> None:
    """No access token: the OAuth error, for reading and for linking."""
    assert error(api.get("/v1/users/self/linked_accounts", None))[:2] == (
        400, "OAuthParameterException")
    r = link(api, None, "twitter", {"token": "t"})
    assert error(r)[:2] == (400, "OAuthParameterException")


def test_share_to_must_name_linked_services(api: Api, fakes: Fakes, module_env: Env) -> None:
    """An upload sharing to a service the owner has not linked is a 400 that appends
    nothing; with the service linked it is accepted and the owner sees it pending."""
    _, token = linked_user(api, fakes, "webhook")
    posted = len(module_env.store.latest(1000, types=["MediaPosted"]))
    r = upload(api, token, picture(), share_to="webhook,twitter")
    assert error(r) == (400, "APIInvalidParametersError",
                        "share_to: no linked account for twitter (link one with POST "
                        "/v1/users/self/linked_accounts)")
    assert error(upload(api, token, picture(), share_to="myspace"))[0] == 400
    assert len(module_env.store.latest(1000, types=["MediaPosted"])) == posted
    r = upload(api, token, picture(), share_to="webhook")
    assert r.status_code == 200, r.text
    assert r.json()["data"]["shares"] == []  # queued once rendered, by the consumer


def test_rotation_reseals_every_link_under_the_new_key(api: Api, fakes: Fakes,
                                                       module_env: Env) -> None:
    """``shutterlog secrets rotate`` with a new key first appends a re-sealed AccountLinked
    per link, which the new key alone opens; the link keeps working; a second run finds
    nothing to do."""
    user, token = linked_user(api, fakes, "twitter", "webhook")
    env = scrubbed_env(module_env.vars | {"SHUTTERLOG_SECRETS_ENCRYPTION_KEYS":
                                          f"{NEW_KEY};master"})

    def rotate() -> str:
        done = subprocess.run(cli("secrets", "rotate"), env=env, cwd=REPO, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stderr

    assert re.search(r"re-encrypted [1-9]", rotate())
    assert rotate().strip().endswith("re-encrypted 0")
    only_new = CredentialCipher([NEW_KEY.encode()])
    shard = shard_of(int(user["id"]))
    found = module_env.router.database(shard).run_interaction(
        "links", links.links_txn, int(user["id"]))
    assert [row.service for row in found] == ["twitter", "webhook"]
    for row in found:
        assert Credentials.from_json(only_new.decrypt(row.credentials)).secret_values()
        latest = module_env.store.read_stream(shard, link_stream(int(user["id"]), row.service))
        assert isinstance(latest[-1].data, AccountLinked)
        assert latest[-1].data.credentials == row.credentials and len(latest) == 2
    assert len(api.get("/v1/users/self/linked_accounts", token).json()["data"]) == 2


class Racing(PostgresEventStore):
    """The event store, but an append to ``stream`` first runs ``race`` (while the rotation's
    transaction is open, as another writer would), then appends."""

    def __init__(self, env: Env, stream: str, race: Callable[[], None]) -> None:
        super().__init__(env.router)
        self.stream, self.race, self.raced = stream, race, 0

    def append_txn(self, txn: Txn, requests: Sequence[AppendRequest]) -> list[AppendResult]:
        if any(r.stream == self.stream for r in requests):
            self.raced += 1
            self.race()
        return super().append_txn(txn, requests)


def rotating(env: Env) -> tuple[CredentialCipher, CredentialCipher]:
    """A cipher with a new key first (as ``secrets rotate`` runs), and one of the new key."""
    config = load(env=env.vars | {"SHUTTERLOG_SECRETS_ENCRYPTION_KEYS": f"{NEW_KEY};master"},
                  search_default=False)
    return CredentialCipher.from_config(config), CredentialCipher([NEW_KEY.encode()])


def test_rotation_decides_again_when_the_user_relinks_meanwhile(api: Api, fakes: Fakes,
                                                                module_env: Env) -> None:
    """The user re-links X while rotation is re-sealing that link: the append conflicts, the
    rotation re-reads the new link and re-seals it instead of aborting the run."""
    user, token = linked_user(api, fakes, "twitter")
    uid, shard = int(user["id"]), shard_of(int(user["id"]))
    stream = link_stream(uid, "twitter")
    relinked = False

    def relink() -> None:
        nonlocal relinked
        if not relinked:
            relinked = True
            assert link(api, token, "twitter", fakes.fields("twitter")).status_code == 200

    cipher, only_new = rotating(module_env)
    store = Racing(module_env, stream, relink)
    done = rotate_all(store, module_env.router, cipher)
    assert store.raced == 2 and done.skipped == () and done.rotated >= 1
    events = module_env.store.read_stream(shard, stream)
    assert [type(e.data) for e in events] == [AccountLinked] * 3
    current = module_env.router.database(shard).run_interaction(
        "link", links.link_txn, uid, "twitter")
    assert current is not None and current.link_id == events[-1].id
    assert Credentials.from_json(only_new.decrypt(current.credentials)).secret_values()


def test_rotation_skips_a_link_that_keeps_changing_and_goes_on(api: Api, fakes: Fakes,
                                                               module_env: Env) -> None:
    """A link whose stream moves on at every try is skipped and named; the user's other
    link is still re-sealed."""
    user, _ = linked_user(api, fakes, "twitter", "webhook")
    uid, shard = int(user["id"]), shard_of(int(user["id"]))

    def conflict() -> None:
        raise StreamConflict(link_stream(uid, "twitter"), 1, 2)

    cipher, only_new = rotating(module_env)
    done = rotate_all(Racing(module_env, link_stream(uid, "twitter"), conflict),
                      module_env.router, cipher)
    assert done.skipped == (f"user {uid} twitter",)
    hook = module_env.router.database(shard).run_interaction(
        "link", links.link_txn, uid, "webhook")
    assert hook is not None and only_new.decrypt(hook.credentials)


def test_rotation_reports_a_link_no_key_opens_and_goes_on(api: Api, fakes: Fakes,
                                                          module_env: Env) -> None:
    """A link sealed under a key dropped before rotating is named as unreadable (left as it
    is: its owner must link again), and the other links are still re-sealed; a dry run
    names it too."""
    good, _ = linked_user(api, fakes, "twitter")
    lost, _ = api.user()
    uid = int(lost["id"])
    dropped = CredentialCipher([generate_key().encode()])
    module_env.store.append(shard_of(uid), link_stream(uid, "twitter"), [NewEvent(
        AccountLinked(user_id=uid, service="twitter", account="@lost", credentials=dropped.encrypt(
            Credentials({"access_token": "t" * 20}).to_json())), actor=uid)])
    cipher, only_new = rotating(module_env)
    dry = rotate_all(module_env.store, module_env.router, cipher, dry_run=True)
    assert dry.unreadable == (f"user {uid} twitter",)
    done = rotate_all(module_env.store, module_env.router, cipher)
    assert done.unreadable == (f"user {uid} twitter",) and done.rotated >= 1
    gid = int(good["id"])
    found = module_env.router.database(shard_of(gid)).run_interaction(
        "link", links.link_txn, gid, "twitter")
    assert found is not None and only_new.decrypt(found.credentials)
