"""What the replay tests share: the CLI run as a subprocess, the size of the log, and
waiting for the worker pool to catch up."""

from __future__ import annotations

import subprocess
import sys

from server.db import Txn
from server.store.consumers import ConsumerStore
from tests.helpers import REPO, scrubbed_env, wait_for
from tests.integration.conftest import Env
from workers import handlers
from workers.consumers import CONSUMERS

#: Consumers the pool must have caught up with before live state is compared.
LIVE = ("followers", "blocks", "fanout", "tags", "activity", "counters", "liked", "geo_index")


def cli(env: Env, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """``shutterlog replay ARGS`` as a subprocess, with ``env``'s settings and ``extra``."""
    return subprocess.run([sys.executable, "-m", "scripts.cli", "replay", *args], cwd=REPO,
                          env=scrubbed_env(env.vars | extra), capture_output=True, text=True,
                          timeout=300)


def settled(env: Env, consumers: tuple[str, ...] = LIVE) -> None:
    """Wait until the pool has applied the whole log for every one of ``consumers``."""
    handlers.load()
    wanted, checkpoints = CONSUMERS.wanted(*consumers), ConsumerStore(env.router)
    wait_for(lambda: checkpoints.caught_up(wanted), 60, "the worker pool to catch up")


def log_size(env: Env) -> int:
    """How many events the log holds, over every database."""
    total = 0
    for db in env.router.databases():
        row = db.run_interaction("n", Txn.fetchone, "SELECT count(*) FROM events")
        assert row is not None
        total += int(row[0])
    return total
