"""``shutterlog apps``: register, list and revoke apps (OAuth clients)."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from scripts.commands.common import config, emit, say


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("apps", help="register, list and revoke apps (OAuth clients)",
                       description="Apps are the OAuth clients that get access tokens.")
    apps_sub = p.add_subparsers(dest="apps_command", metavar="ACTION", required=True)
    create = apps_sub.add_parser(
        "create", help="register an app; prints its client_id and client_secret as JSON",
        description="Register an app. The client secret is shown once: keep it.")
    create.add_argument("name", help="the app's name, shown on the consent page")
    create.add_argument("--redirect-uri", required=True,
                        help="the app's redirect URI; authorize requests must match it exactly")
    create.add_argument("--require-signed", action="store_true",
                        help="refuse requests with this app's tokens unless signed (sig)")
    create.set_defaults(func=_create)
    listing = apps_sub.add_parser("list", help="list apps (never their secrets)",
                                  description="List every app, revoked ones included.")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=_list)
    revoke = apps_sub.add_parser("revoke", help="revoke an app and every token it holds",
                                 description="Revoke an app: its tokens stop working at once "
                                 "and it cannot get new ones.")
    revoke.add_argument("client_id")
    revoke.set_defaults(func=_revoke)


def _create(args: argparse.Namespace) -> int:
    from server.domain.oauth import OAuthError
    from server.store import apps

    with _services(args) as ctx:
        try:
            client_id, secret = apps.create(ctx.store, ctx.router, ctx.box, args.name,
                                            args.redirect_uri, args.require_signed)
        except (OAuthError, ValueError) as e:
            say(f"cannot create the app: {e}")
            return 2
    print(json.dumps({"client_id": client_id, "client_secret": secret}))
    return 0


def _list(args: argparse.Namespace) -> int:
    from server.store import apps

    with _services(args) as ctx:
        rows = [{"client_id": a.client_id, "name": a.name, "redirect_uri": a.redirect_uri,
                 "require_signed": a.require_signed, "revoked": a.revoked}
                for a in apps.all_apps(ctx.router)]
    if args.json:
        emit(rows, True)
    else:
        for r in rows:
            flags = " revoked" if r["revoked"] else ""
            flags += " signed" if r["require_signed"] else ""
            print(f"{r['client_id']}  {r['name']}  {r['redirect_uri']}{flags}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from server.store import apps

    with _services(args) as ctx:
        if not apps.revoke(ctx.store, ctx.router, args.client_id):
            say(f"no live app {args.client_id!r}")
            return 1
        say(f"revoked {args.client_id}; {ctx.tokens.revoke_app(args.client_id)} token(s) revoked")
    return 0


@dataclass
class _Services:
    router: Any
    store: Any
    box: Any
    tokens: Any


@contextlib.contextmanager
def _services(args: argparse.Namespace) -> Iterator[_Services]:
    """The router, event store, secret box and token store the commands use."""
    import redis

    from server import catalog
    from server.secretbox import SecretBox
    from server.shards import ShardRouter
    from server.store.apps import PURPOSE
    from server.store.events import PostgresEventStore
    from server.store.tokens import Tokens

    cfg = config(args)
    catalog.load()
    router = ShardRouter(cfg.shard_map, pool_size=2, name="shutterlog-apps")
    client = redis.Redis.from_url(cfg.redis.url)
    o = cfg.oauth
    try:
        yield _Services(router, PostgresEventStore(router), SecretBox(cfg.secrets.key, PURPOSE),
                        Tokens(client, o.token_ttl, o.code_ttl, o.session_ttl))
    finally:
        router.close()
        client.close()
