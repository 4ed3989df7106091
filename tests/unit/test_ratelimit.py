"""Token-bucket arithmetic."""

from __future__ import annotations

from server.domain.ratelimit import Bucket, refill, take_all


def test_a_new_bucket_is_full_and_drains() -> None:
    """Five requests empty a bucket of five; the sixth is refused with a retry time."""
    buckets: list[Bucket | None] = [None]
    remaining = []
    for _ in range(5):
        after, verdict = take_all([(buckets[0], 5, 3600)], 1000)
        buckets = [after[0]]
        remaining.append(verdict.remaining)
    assert remaining == [4, 3, 2, 1, 0]
    _, verdict = take_all([(buckets[0], 5, 3600)], 1000)
    assert not verdict.allowed and verdict.retry_after_s == 720  # one token per 720 s


def test_refill_is_continuous_and_capped() -> None:
    """Tokens come back at capacity per window, never above capacity."""
    empty = Bucket(0.0, 0)
    assert refill(empty, 3600, 3600, 1500).tokens == 1.5
    assert refill(empty, 10, 60, 10**9).tokens == 10
    assert refill(Bucket(2.0, 5000), 10, 60, 4000).tokens == 2.0  # clock going back: no change


def test_all_or_nothing_and_the_tightest_bucket_speaks() -> None:
    """When one bucket is empty no bucket is charged; otherwise the verdict is the bucket
    with the fewest tokens left."""
    token = Bucket(0.2, 0)
    address = Bucket(50.0, 0)
    after, verdict = take_all([(address, 100, 3600), (token, 10, 3600)], 0)
    assert not verdict.allowed and verdict.limit == 10
    assert after[0].tokens == 50.0
    after, verdict = take_all([(address, 100, 3600), (Bucket(5.0, 0), 10, 3600)], 0)
    assert verdict.allowed and (verdict.limit, verdict.remaining) == (10, 4)
    assert [b.tokens for b in after] == [49.0, 4.0]
