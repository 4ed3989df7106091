"""Token-bucket arithmetic. Pure: no I/O.

A bucket holds up to ``capacity`` tokens and refills continuously at ``capacity / window``
tokens per second; a request takes one token, or is refused when less than one is left.
The same arithmetic runs inside Redis as one Lua script (``server/store/ratelimit.py``) for
the token's and the client address's buckets at once; a test proves the two agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Bucket:
    tokens: float
    at_ms: int


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int  # 0 when allowed


def refill(bucket: Bucket | None, capacity: int, window_s: int, now_ms: int) -> Bucket:
    """The bucket at ``now_ms``: a missing bucket is full; tokens never exceed capacity."""
    if bucket is None:
        return Bucket(float(capacity), now_ms)
    elapsed = max(0, now_ms - bucket.at_ms)
    rate = capacity / (window_s * 1000.0)
    return Bucket(min(float(capacity), bucket.tokens + elapsed * rate), now_ms)


def take_all(
    buckets: Sequence[tuple[Bucket | None, int, int]], now_ms: int
) -> tuple[list[Bucket], Verdict]:
    """Take one token from every bucket ``(bucket, capacity, window_s)``, or from none when
    any is empty. Returns the buckets to store and the verdict of the tightest bucket (the
    one refusing with the longest wait, or else the one with the fewest tokens left)."""
    filled = [refill(b, cap, win, now_ms) for b, cap, win in buckets]
    waits = [
        (1.0 - b.tokens) / (cap / (win * 1000.0)) if b.tokens < 1.0 else 0.0
        for b, (_, cap, win) in zip(filled, buckets, strict=True)
    ]
    if any(w > 0 for w in waits):
        worst = max(range(len(waits)), key=lambda i: waits[i])
        retry = max(1, math.ceil(waits[worst] / 1000.0))
        return filled, Verdict(False, buckets[worst][1], 0, retry)
    after = [Bucket(b.tokens - 1.0, now_ms) for b in filled]
    tight = min(range(len(after)), key=lambda i: after[i].tokens)
    return after, Verdict(True, buckets[tight][1], int(math.floor(after[tight].tokens)), 0)
