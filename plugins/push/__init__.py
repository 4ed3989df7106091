"""Push providers (``IPushProvider``), chosen per platform by the ``push`` settings.

``push_providers(config)`` returns ``{"ios": provider, "android": provider}``: ``log`` (the
default: development), ``apns`` (iOS only) or ``fcm``; a platform set to the same kind as
the other shares its provider (one connection). The interface lives in
``server/interfaces.py`` with the other seams, so the worker side imports it without any
event loop; the implementations here import neither gevent nor Twisted and are driven by the
worker pool's greenlets.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from plugins.push.apns import ApnsProvider
from plugins.push.fcm import FcmProvider
from plugins.push.log import LogProvider
from server.config import Config
from server.domain.push import PLATFORMS, Platform
from server.interfaces import IPushProvider

_BUILDERS: dict[str, Callable[[Config, Callable[[], float]], IPushProvider]] = {
    "log": lambda cfg, clock: LogProvider(),
    "apns": lambda cfg, clock: ApnsProvider.from_config(cfg.push, clock),
    "fcm": lambda cfg, clock: FcmProvider.from_config(cfg.push, clock),
}


def push_providers(config: Config, clock: Callable[[], float] = time.time,
                   ) -> dict[Platform, IPushProvider]:
    """The provider for each platform, as configured. Raises ``ConfigError`` naming the
    setting that is missing or wrong (a key file that cannot be read, ...)."""
    kinds: dict[Platform, str] = {"ios": config.push.ios, "android": config.push.android}
    built: dict[str, IPushProvider] = {}
    out: dict[Platform, IPushProvider] = {}
    for platform in PLATFORMS:
        kind = kinds[platform]
        if kind not in built:
            built[kind] = _BUILDERS[kind](config, clock)
        out[platform] = built[kind]
    return out


def close_all(providers: dict[Platform, IPushProvider]) -> None:
    """Close each distinct provider once."""
    for provider in {id(p): p for p in providers.values()}.values():
        provider.close()
