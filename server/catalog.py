"""Imports every module that declares event types or inline projections.

A process that appends or decodes events imports this first, so the registries are complete:
an event type missing from the registry would be an UnknownEventType error on read, and a
missing inline projection would silently not be written. Each feature adds its modules here.
"""

from __future__ import annotations

import importlib

#: Modules declaring event types (server/domain) and inline projections (server/store).
MODULES: list[str] = [
    "server.domain.accounts",
    "server.domain.graph",
    "server.domain.oauth",
    "server.store.accounts",
    "server.store.graph",
    "server.store.apps",
    "server.domain.media",
    "server.domain.likes",
    "server.domain.comments",
    "server.store.media",
    "server.store.likes",
    "server.store.comments",
    "server.domain.subscriptions",
    "server.store.subscriptions",
    "server.domain.links",
    "server.store.links",
    "server.domain.devices",
    "server.domain.notifications",
    "server.store.devices",
    "server.store.notifications",
]


def load() -> None:
    """Import every feature module (idempotent)."""
    for name in MODULES:
        importlib.import_module(name)
