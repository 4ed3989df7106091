"""The worker pool: ``shutterlog workers``, many concurrent Gearman jobs in one gevent process.

One grab loop per configured gearmand holds a worker connection (CAN_DO our functions); while
the pool has a free slot it asks for a job (GRAB_JOB_UNIQ), and when gearmand has none it
sends PRE_SLEEP and waits for the NOOP that announces work, so an idle worker costs nothing.
A job is completed towards gearmand as soon as it is taken (see ``workers/advance.py`` for why
that loses nothing) and runs in the pool.

SIGTERM (or a first SIGINT): stop grabbing, let running jobs finish their current batch and
checkpoint it (an advance job stops between batches and re-submits itself), for at most
``workers.stop_timeout`` seconds; jobs still running then are abandoned (their batch was not
checkpointed, so it is simply applied again later). Exit status 0. A second SIGINT exits at
once.
"""

from __future__ import annotations

import logging
import os
import signal
import socket

import gevent
import gevent.event
import gevent.pool
import msgpack

from server.domain.checkpoints import retry_delay
from workers import metrics
from workers.advance import Advancer
from workers.consumers import Consumers
from workers.context import WorkerContext
from workers.gearman import GearmanError, Job, WorkerConnection
from workers.jobs import advance_function, task_function
from workers.tasks import run_task

log = logging.getLogger(__name__)

#: Longest sleep between grabs when gearmand sends no NOOP (a lost wake-up heals by then).
IDLE_REGRAB = 30.0


class WorkerPool:
    """Grab loops over every gearmand, and a pool of ``concurrency`` running jobs."""

    def __init__(self, ctx: WorkerContext, consumers: Consumers, concurrency: int) -> None:
        self.ctx = ctx
        self.concurrency = concurrency
        self.pool = gevent.pool.Pool(concurrency)
        self._stopping = gevent.event.Event()
        self._interrupts = 0
        ns = ctx.config.gearman.namespace
        self.advancer = Advancer(ctx, consumers, ctx.config.workers, self._stopping.is_set)
        self.functions = {advance_function(ns): self._advance, task_function(ns): self._task}
        self.client_id = f"shutterlog-workers-{socket.gethostname()}-{os.getpid()}"

    def run(self) -> int:
        """Work until SIGTERM/SIGINT; returns the exit status."""
        gevent.signal_handler(signal.SIGTERM, self.stop)
        gevent.signal_handler(signal.SIGINT, self._interrupt)
        loops = [gevent.spawn(self._grab_loop, s) for s in self.ctx.config.gearman.servers]
        log.info("worker pool up: %d concurrent jobs, gearmand %s, functions %s",
                 self.concurrency, ", ".join(self.ctx.config.gearman.servers),
                 ", ".join(self.functions))
        self._stopping.wait()
        gevent.killall(loops)
        timeout = self.ctx.config.workers.stop_timeout
        running = len(self.pool)
        if running:
            log.info("stopping: letting %d running job(s) finish their batch", running)
        if not self.pool.join(timeout=timeout):
            log.warning("stopping: abandoning %d job(s) still running after %.0fs (their "
                        "batches were not checkpointed and will be applied again)",
                        len(self.pool), timeout)
            self.pool.kill(timeout=5)
        self.advancer.close()
        self.ctx.close()
        log.info("worker pool stopped")
        return 0

    def stop(self) -> None:
        if not self._stopping.is_set():
            log.info("stopping: no new jobs")
        self._stopping.set()

    def _interrupt(self) -> None:
        self._interrupts += 1
        if self._interrupts > 1:
            log.warning("second interrupt: exiting now")
            os._exit(130)
        self.stop()

    def _grab_loop(self, server: str) -> None:
        conn = WorkerConnection(server, list(self.functions), self.client_id)
        failures = 0
        try:
            while not self._stopping.is_set():
                try:
                    self.pool.wait_available()
                    job = conn.grab()
                    if job is None:
                        conn.sleep(IDLE_REGRAB)
                        continue
                    conn.complete(job)  # gearmand forgets it now; see workers/advance.py
                    self.pool.spawn(self._run, job)
                    failures = 0
                except GearmanError as e:
                    conn.close()
                    failures += 1
                    delay = retry_delay(failures, 0.1, 5.0)
                    log.warning("gearmand %s: %s; reconnecting in %.1fs", server, e, delay)
                    gevent.sleep(delay)
        finally:
            conn.close()

    def _run(self, job: Job) -> None:
        metrics.JOBS.labels(job.function).inc()
        try:
            self.functions[job.function](job)
        except Exception:
            log.exception("job %s (%s, unique %s) failed", job.handle, job.function, job.unique)

    def _advance(self, job: Job) -> None:
        consumer, shard = msgpack.unpackb(job.data)
        self.advancer.run(consumer, shard)

    def _task(self, job: Job) -> None:
        run_task(self.ctx, msgpack.unpackb(job.data))
