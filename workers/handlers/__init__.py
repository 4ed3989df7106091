"""Consumer handlers, one module per feature; importing this package registers them all."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from server import catalog

#: Modules declaring consumers with ``@consumer``.
MODULES: list[str] = [
    "workers.handlers.followers",
    "workers.handlers.blocks",
    "workers.handlers.fanout",
    "workers.handlers.media_render",
    "workers.handlers.tags",
    "workers.handlers.activity",
    "workers.handlers.counters",
    "workers.handlers.liked",
    "workers.handlers.geo_index",
    "workers.handlers.realtime",
    "workers.handlers.webhooks",
    "workers.handlers.shareout",
    "workers.handlers.push",
]


def load(extra: Sequence[str] = ()) -> None:
    """Register every consumer (and, first, every event type and inline projection); then the
    ``extra`` modules (``workers.modules``: e.g. a test's consumers)."""
    catalog.load()
    for name in [*MODULES, *extra]:
        importlib.import_module(name)
