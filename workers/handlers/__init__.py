"""Consumer handlers, one module per feature; importing this package registers them all."""

from __future__ import annotations

import importlib

from server import catalog

#: Modules declaring consumers with ``@consumer``.
MODULES: list[str] = [
    "workers.handlers.followers",
    "workers.handlers.blocks",
]


def load() -> None:
    """Register every consumer (and, first, every event type and inline projection)."""
    catalog.load()
    for name in MODULES:
        importlib.import_module(name)
