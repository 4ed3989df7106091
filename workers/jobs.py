"""The Gearman jobs of the worker pool: their function names, payloads and submission.

- ``{namespace}advance``: advance consumer C on shard S; unique key ``C:S`` (gearmand
  coalesces repeated kicks of a pair into one queued job), payload msgpack ``[C, S]``.
- ``{namespace}task``: run durable task T; unique key ``T``, payload msgpack ``T``. Submitted
  at LOW priority: gearmand hands a worker every queued advance job before any task, so a
  large fan-out's hundreds of chunk tasks never queue ahead of the next post's advance job.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import msgpack

from server.domain.checkpoints import job_key
from workers.gearman import GearmanClient, GearmanError, Submit

log = logging.getLogger(__name__)


def advance_function(namespace: str) -> str:
    return f"{namespace}advance"


def task_function(namespace: str) -> str:
    return f"{namespace}task"


def advance_job(namespace: str, consumer: str, shard: int) -> Submit:
    return Submit(advance_function(namespace), msgpack.packb([consumer, shard]),
                  job_key(consumer, shard))


def task_job(namespace: str, task_id: int) -> Submit:
    return Submit(task_function(namespace), msgpack.packb(task_id), str(task_id), "low")


def submit(client: GearmanClient, jobs: Sequence[Submit]) -> int:
    """Submit jobs, logging (not raising) failures: a lost kick is healed by the relay's next
    scan. Returns how many were accepted."""
    if not jobs:
        return 0
    failed: list[tuple[Submit, GearmanError]] = []
    for job, result in zip(jobs, client.submit_many(jobs), strict=True):
        if isinstance(result, GearmanError):
            failed.append((job, result))
    if failed:
        log.warning("%d of %d Gearman submits failed (first: %s: %s); the relay re-kicks them",
                    len(failed), len(jobs), failed[0][0].unique, failed[0][1])
    return len(jobs) - len(failed)
