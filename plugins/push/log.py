"""Log-only push provider, for development: every notification is logged and 'delivered'.

It is the default for both platforms, so ``make run`` needs no Apple or Google credentials.
What it logs is the notification's log-safe summary and its title or localization key; it
holds no secrets to leak.
"""

from __future__ import annotations

import logging

from zope.interface import implementer

from server.domain.push import Delivered, Notification, PushResult
from server.interfaces import IPushProvider

log = logging.getLogger(__name__)


@implementer(IPushProvider)
class LogProvider:
    """Logs each notification at INFO and answers ``Delivered`` with its id."""

    name = "log"

    def __init__(self) -> None:
        self.sent = 0

    def send(self, notification: Notification, attempt: int = 0) -> PushResult:
        self.sent += 1
        log.info("push (log only) to %s: %s%s", notification.describe(),
                 notification.title or notification.title_loc_key
                 or notification.body_loc_key or notification.push_type,
                 f" [collapse {notification.collapse_key}]" if notification.collapse_key else "")
        return Delivered(f"log:{notification.id}")

    def close(self) -> None:
        """Nothing to close."""
