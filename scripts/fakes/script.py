"""Answers that tests script into a local server, per key (a device or registration token)."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Entry(Generic[T]):
    answer: T
    times: int | None


class Script(Generic[T]):
    """Per key, a queue of answers, each given ``times`` times (None: from then on, always).

    Thread-safe: tests add answers while the server's thread takes them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, deque[_Entry[T]]] = {}

    def add(self, key: str, answer: T, times: int | None = 1) -> None:
        with self._lock:
            self._queues.setdefault(key, deque()).append(_Entry(answer, times))

    def take(self, key: str) -> T | None:
        """The next scripted answer for ``key``, or None when nothing is scripted."""
        with self._lock:
            queue = self._queues.get(key)
            if not queue:
                return None
            entry = queue[0]
            if entry.times is not None:
                entry.times -= 1
                if entry.times <= 0:
                    queue.popleft()
            return entry.answer
