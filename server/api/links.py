"""``/v1/users/self/linked_accounts``: the caller's accounts on other networks (share-out).

Linking checks the credentials' form (the target's ``check``: required fields, URL syntax
and the outbound policy), resolves user-given URLs once to refuse private, loopback and
link-local destinations (``server.outbound.check_url``), then proves the credentials with
one call to the service (``verify``), which also names the remote account and learns what is
worth keeping (Mastodon's status length, the X user id). Only then is ``AccountLinked``
appended, with the credentials encrypted (``CredentialCipher``): the event and the
``linked_accounts`` row hold a Fernet token, the API never answers credentials, and nothing
here logs them. Unlinking appends ``AccountUnlinked`` (reason ``user``).
"""

from __future__ import annotations

from typing import Any

from klein import Klein

from server.api.endpoint import API, Call, Reply
from server.api.envelope import APIError, invalid, not_found
from server.api.params import Param
from server.context import ServiceContext
from server.db import RetryTransaction, Txn
from server.domain.ids import shard_of
from server.domain.links import (
    REQUEST_FIELDS,
    SERVICE_NAMES,
    USER,
    AccountLinked,
    Link,
    LinkError,
    check_service,
    credential_fields,
    decide_unlink,
    link_stream,
)
from server.domain.log import AppendRequest, NewEvent, StreamConflict
from server.domain.media import SHARE_TARGETS
from server.domain.outbound import UnsafeURL
from server.domain.shareout import (
    CredentialDead,
    Credentials,
    InvalidCredentials,
    RetryLater,
    Verified,
)
from server.outbound import check_url, policy_from
from server.store import links
from server.store.events import append_latest_txn

#: Credential fields holding URLs the user gave (checked against the outbound policy).
_URL_FIELDS = ("instance_url", "url")
LINK: dict[str, Any] = {
    "type": "object", "required": ["service", "account", "linked_time"],
    "properties": {"service": {"type": "string", "enum": list(SHARE_TARGETS)},
                   "account": {"type": "string"}, "linked_time": {"type": "string"}},
}
_FIELD_DOCS = {
    "token": "the OAuth access token (mastodon, twitter, facebook: a Page token)",
    "instance_url": "mastodon: the instance's URL",
    "page_id": "facebook: the Page's numeric id",
    "url": "webhook: the receiver's URL (public addresses only)",
    "secret": "webhook: the signing secret (16 characters or more)",
    "visibility": "mastodon: public, unlisted, private or direct (default public)",
}


def link_json(link: Link) -> dict[str, Any]:
    """What the API shows of a link: never its credentials."""
    return {"service": link.service, "account": link.account,
            "linked_time": str(link.linked_ms // 1000)}


def service_of(call: Call) -> str:
    """The request's ``service``; 400 naming the known ones if it is none of them."""
    try:
        return check_service(call.params["service"])
    except LinkError as e:
        raise invalid(str(e)) from None


def verified(call: Call, service: str) -> tuple[str, Credentials]:
    """The request's credentials for ``service``, checked and proven with the service:
    (remote account name, credentials to store). 400 naming what is wrong; 503 when the
    service cannot answer now."""
    try:
        fields = credential_fields(service, {n: call.params.get(n) for n in REQUEST_FIELDS})
    except LinkError as e:
        raise APIError(e.code, e.error_type, str(e)) from None
    target = call.ctx.share_targets[service]
    try:
        credentials = target.check(Credentials(fields))
        policy = policy_from(call.ctx.config)
        for name in _URL_FIELDS:
            if name in credentials:
                check_url(credentials[name], policy)
    except (InvalidCredentials, UnsafeURL) as e:
        raise invalid(str(e)) from None
    outcome = target.verify(credentials)
    name = SERVICE_NAMES[service]
    if isinstance(outcome, Verified):
        return outcome.account, credentials.with_fields(**outcome.learned)
    if isinstance(outcome, CredentialDead):
        raise invalid(f"{name} refused the credentials: {outcome.reason}")
    if isinstance(outcome, RetryLater):
        raise APIError(503, "APIServiceUnavailableError",
                       f"{name} cannot be reached now ({outcome.reason}); try again later")
    raise invalid(f"{name} did not accept the link: {getattr(outcome, 'reason', outcome)}")


def link_txn(txn: Txn, call: Call, service: str, account: str, sealed: str,
             key: str | None) -> Link:
    """Append the link (or answer a retry from the recorded event); the link made."""
    store = call.ctx.store
    me = call.user_id
    shard = shard_of(me)
    replay = store.replayed_txn(txn, shard, key) if key is not None else None
    if replay is None:
        stream = link_stream(me, service)
        event = AccountLinked(user_id=me, service=service, account=account, credentials=sealed)
        replay = append_latest_txn(txn, store, shard, stream, lambda: [event], me, key)
        assert replay is not None
    first = store.get_txn(txn, replay.event_ids[0])
    assert first is not None and isinstance(first.data, AccountLinked)
    d = first.data
    return Link(me, d.service, d.account, d.credentials, first.id, first.created_ms)


def unlink_txn(txn: Txn, call: Call, service: str) -> None:
    store = call.ctx.store
    me = call.user_id
    stream = link_stream(me, service)
    version = store.stream_version_txn(txn, stream)
    events = decide_unlink(links.link_txn(txn, me, service), service, USER, None)
    if not events:
        raise not_found(f"no linked {SERVICE_NAMES[service]} account")
    try:
        store.append_txn(txn, [AppendRequest(shard_of(me), stream,
                                             tuple(NewEvent(e, actor=me) for e in events),
                                             expected_version=version)])
    except StreamConflict as e:
        raise RetryTransaction(str(e)) from e


def check_share_to(call: Call, share_to: tuple[str, ...]) -> None:
    """400 unless the caller has linked every service of an upload's ``share_to``."""
    if not share_to:
        return
    found = call.ctx.router.database(shard_of(call.user_id)).run_interaction(
        "links", links.links_txn, call.user_id)
    missing = [s for s in share_to if s not in {link.service for link in found}]
    if missing:
        raise invalid(f"share_to: no linked account for {', '.join(missing)} (link one with "
                      "POST /v1/users/self/linked_accounts)")


def routes(app: Klein, ctx: ServiceContext) -> None:
    api = API(app, ctx)
    service_param = Param("service", where="path", required=True, pattern=r"^[a-z]{1,20}$",
                          description=f"one of {', '.join(SHARE_TARGETS)}")

    @api.endpoint("GET", "/v1/users/self/linked_accounts", "The caller's linked accounts",
                  scope="basic", tag="share-out", data={"type": "array", "items": LINK},
                  description="Service, remote account and link time; never credentials.")
    def linked(call: Call) -> Reply:
        found = ctx.router.database(shard_of(call.user_id)).run_interaction(
            "links", links.links_txn, call.user_id)
        return Reply([link_json(link) for link in found])

    @api.endpoint(
        "POST", "/v1/users/self/linked_accounts", "Link an account on another network",
        scope="basic", tag="share-out", data=LINK,
        params=(Param("service", where="body", required=True,
                      description=f"one of {', '.join(SHARE_TARGETS)}"),
                *(Param(n, where="body", max_length=2000, description=d)
                  for n, d in _FIELD_DOCS.items())),
        description="The credentials are checked (URLs must be public), proven with one call "
        "to the service, and stored encrypted; linking a service again replaces them. "
        "Errors: 400 APIInvalidParametersError (unknown service, a missing or foreign "
        "field, a refused URL, credentials the service refuses), 503 when the service "
        "cannot be reached.")
    def link(call: Call) -> Reply:
        service = service_of(call)
        account, credentials = verified(call, service)
        sealed = ctx.cipher.encrypt(credentials.to_json())
        found = ctx.router.database(shard_of(call.user_id)).run_interaction(
            "link_account", link_txn, call, service, account, sealed,
            call.idempotency_key(f"u{call.user_id}"))
        return Reply(link_json(found))

    @api.endpoint("DELETE", "/v1/users/self/linked_accounts/{service}",
                  "Unlink an account", scope="basic", tag="share-out",
                  params=(service_param,), data={"type": "null"},
                  description="Shares not made yet are recorded as failed. 404 when the "
                  "service is not linked; 400 for an unknown service.")
    def unlink(call: Call) -> Reply:
        service = service_of(call)
        ctx.router.database(shard_of(call.user_id)).run_interaction(
            "unlink_account", unlink_txn, call, service)
        return Reply(None)
