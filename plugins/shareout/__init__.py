"""Share-out: posting a medium to the networks its owner linked (DESIGN.md, "Side effects").

``IShareTarget`` is the seam; ``mastodon``, ``twitter``, ``facebook`` and ``webhook`` implement
it over HTTP with ``httpx`` (synchronous: the gevent worker pool runs many at once). Targets
never raise for what a remote service or the network does: every answer is an ``Outcome``
(``server.domain.shareout``). ``share_once`` is what the share-out consumer calls: it puts the
share ledger in front of the target so that a redone job never posts twice.

Importable by workers: it imports neither Twisted nor gevent.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from zope.interface import Attribute, Interface, implementer

from server.domain.shareout import (
    Credentials,
    Outcome,
    Posted,
    ShareRequest,
)

if TYPE_CHECKING:
    import httpx

    from server.config import Config
    from server.crypto import CredentialCipher


class IShareTarget(Interface):
    """A network we post media to, for one linked account at a time."""

    name = Attribute("The service's name: 'mastodon', 'twitter', 'facebook' or 'webhook'.")
    can_delete = Attribute("Whether ``delete`` removes the remote post.")

    def check(credentials: Credentials) -> Credentials:
        """Check linked credentials without calling the service: required fields present,
        URLs well formed and safe. Returns them normalized; raises ``InvalidCredentials``
        (a ValueError) saying what is wrong, for a 400 at link time."""

    def verify(credentials: Credentials) -> Outcome:
        """Call the service once to prove the credentials work. Returns ``Verified`` (the
        remote account's name and fields worth storing with the link, e.g. Mastodon's
        ``max_characters``), or ``CredentialDead``, ``RetryLater`` or ``Failed``."""

    def post(request: ShareRequest, credentials: Credentials) -> Outcome:
        """Post the medium with its caption adapted to the service and the link to it.

        Every remote call carries ``request.key`` where the service accepts one. Returns
        ``Posted`` (remote id, URL), ``RetryLater`` (429, 5xx, network failure, media still
        processing; with the wait the service asked for), ``CredentialDead`` (401/403 and
        equivalents) or ``Failed`` (with the service's message, never our secrets). Raises
        only for programming errors."""

    def delete(remote_id: str, credentials: Credentials) -> Outcome:
        """Delete a post made by ``post``. Returns ``Deleted`` (``already_gone`` when the
        service no longer had it), ``RetryLater``, ``CredentialDead`` or ``Failed``
        (``Failed`` at once when ``can_delete`` is false)."""

    def find_existing(request: ShareRequest, credentials: Credentials) -> Outcome | None:
        """After an attempt whose outcome was lost (a crash, a timeout), look for the post it
        may have made: the ``Posted`` found; None when there is none or the service has no
        way to look (then the idempotency key is the only guard); ``RetryLater``,
        ``CredentialDead`` or ``Failed`` when the look itself failed (then do not post)."""

    def take_back(request: ShareRequest, credentials: Credentials) -> Outcome | None:
        """After an attempt whose outcome was lost, on a medium deleted since: delete the post
        it may have made. ``Deleted`` (with the id deleted); None when the look found none;
        else the outcome of the look or the deletion that failed (the post may stay)."""


class IShareLedger(Interface):
    """The durable record of share attempts, keyed by ``ShareRequest.key``.

    The share-out consumer implements it in PostgreSQL; ``MemoryLedger`` is its in-memory
    twin. Each method commits before it returns.
    """

    def get(key: str) -> Posted | bool | None:
        """``Posted`` if the share is done, True if an attempt began with no known result,
        None if it was never attempted."""

    def attempting(key: str) -> None:
        """Record that a remote create call for ``key`` is about to be made."""

    def posted(key: str, result: Posted) -> None:
        """Record the remote post made for ``key``."""


def share_once(
    target: IShareTarget, ledger: IShareLedger, request: ShareRequest, credentials: Credentials
) -> Outcome:
    """Post ``request`` unless the ledger shows it was posted, so a redone job (after a crash,
    a retry, a replay) never posts twice.

    Known result: returned without a remote call. An attempt with no known result: the
    target looks for the post it may have made (``find_existing``) before posting again, with
    the same idempotency key (a failed look returns its outcome: retry, do not risk a second
    post). Otherwise the attempt is recorded first, then made.
    """
    known = ledger.get(request.key)
    if isinstance(known, Posted):
        return known
    if known:
        found = target.find_existing(request, credentials)
        if isinstance(found, Posted):
            ledger.posted(request.key, found)
        if found is not None:
            return found
    else:
        ledger.attempting(request.key)
    outcome = target.post(request, credentials)
    if isinstance(outcome, Posted):
        ledger.posted(request.key, outcome)
    return outcome


@implementer(IShareLedger)
class MemoryLedger:
    """An in-memory ``IShareLedger`` (tests; the contract the PostgreSQL one follows)."""

    def __init__(self) -> None:
        self.entries: dict[str, Posted | bool] = {}

    def get(self, key: str) -> Posted | bool | None:
        return self.entries.get(key)

    def attempting(self, key: str) -> None:
        self.entries.setdefault(key, True)

    def posted(self, key: str, result: Posted) -> None:
        self.entries[key] = result


def share_client(config: Config) -> httpx.Client:
    """The outbound-safe HTTP client the targets share (``server.outbound``)."""
    from server.outbound import configured_client

    return configured_client(config, headers={"User-Agent": "shutterlog-shareout/1"})


def build_targets(config: Config, http: httpx.Client) -> dict[str, IShareTarget]:
    """One target per service, all sharing ``http`` (made by ``share_client``; the caller
    closes it)."""
    from plugins.shareout.facebook import FacebookTarget
    from plugins.shareout.mastodon import MastodonTarget
    from plugins.shareout.twitter import TwitterTarget
    from plugins.shareout.webhook import WebhookTarget
    from server.domain.shareout import PollSchedule
    from server.outbound import policy_from

    policy = policy_from(config)
    polls = PollSchedule(budget=config.shareout.media_poll_seconds)
    targets: list[IShareTarget] = [
        MastodonTarget(http, policy, config.shareout.mastodon_max_characters, polls=polls),
        TwitterTarget(http, config.shareout.twitter_api_url, polls=polls),
        FacebookTarget(http, config.shareout.facebook_graph_url),
        WebhookTarget(http, policy),
    ]
    return {t.name: t for t in targets}


class SharingContext:
    """What share-out needs of a process's context (the service's and the workers' both
    mix it in): the credentials cipher and the targets, made on first use."""

    config: Config

    @cached_property
    def cipher(self) -> CredentialCipher:
        """Encrypts and decrypts linked accounts' credentials (``secrets.encryption_keys``)."""
        from server.crypto import CredentialCipher

        return CredentialCipher.from_config(self.config)

    @cached_property
    def share_http(self) -> httpx.Client:
        """The outbound-safe HTTP client of the share-out targets."""
        return share_client(self.config)

    @cached_property
    def share_targets(self) -> dict[str, IShareTarget]:
        """The share-out targets by service name, sharing ``share_http``."""
        return build_targets(self.config, self.share_http)

    def close_sharing(self) -> None:
        """Close the targets' HTTP client, if it was made (the context's ``close`` calls
        this)."""
        if "share_http" in self.__dict__:
            self.share_http.close()
