"""Prometheus metrics of the relay and the worker pool, served on their own ports.

Events per second are ``rate(shutterlog_consumer_events_total[1m])``; lag comes from the relay,
which scans every checkpoint against its shard's head.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

# relay
LAG_EVENTS = Gauge("shutterlog_consumer_lag_events",
                   "Events after the consumer's checkpoint in the shard (counted up to 100,000)",
                   ["consumer", "shard"])
LAG_SECONDS = Gauge("shutterlog_consumer_lag_seconds",
                    "Age of the oldest event the consumer has not applied in the shard",
                    ["consumer", "shard"])
STOPPED = Gauge("shutterlog_consumer_stopped",
                "1 when the consumer is stopped on the shard (a dead letter blocks it)",
                ["consumer", "shard"])
DEAD_LETTERS = Gauge("shutterlog_dead_letters", "Dead letters waiting, by consumer", ["consumer"])
KICKS = Counter("shutterlog_relay_kicks_total", "Advance jobs submitted by the relay",
                ["consumer"])
NOTIFICATIONS = Counter("shutterlog_relay_notifications_total",
                        "Append notifications received from PostgreSQL")
TASKS_RESUBMITTED = Counter("shutterlog_tasks_resubmitted_total",
                            "Tasks submitted by the relay's scan (due, or late)")

# workers
BATCHES = Counter("shutterlog_consumer_batches_total", "Batches applied", ["consumer"])
EVENTS = Counter("shutterlog_consumer_events_total", "Events applied", ["consumer"])
OUTAGES = Counter("shutterlog_consumer_outages_total",
                  "Handler calls that failed because Redis or PostgreSQL was unreachable "
                  "(called again later; never parked)", ["consumer"])
FAILURES = Counter("shutterlog_consumer_failures_total", "Failed handler calls", ["consumer"])
PARKED = Counter("shutterlog_consumer_parked_total", "Events parked in dead letters",
                 ["consumer"])
BATCH_SECONDS = Histogram("shutterlog_consumer_batch_seconds",
                          "Time to read, apply and checkpoint one batch", ["consumer"])
BUSY = Counter("shutterlog_consumer_busy_total",
               "Advance jobs that found another worker on the (consumer, shard)", ["consumer"])
JOBS = Counter("shutterlog_worker_jobs_total", "Gearman jobs run", ["function"])
TASKS = Counter("shutterlog_tasks_total", "Tasks run, by outcome", ["kind", "outcome"])
PUSHES = Counter("shutterlog_push_notifications_total",
                 "Push notifications by provider and outcome (delivered, unregistered, retry, "
                 "failed, duplicate: not sent again)", ["provider", "outcome"])
PUSH_GROUPS = Counter("shutterlog_push_groups_total", "Collapse groups by outcome (sent, "
                      "empty: nothing left to say, capped: over the user's rate)", ["outcome"])


def serve(port: int) -> int | None:
    """Serve /metrics on 127.0.0.1:``port`` (0: not at all); returns the port, or None."""
    if not port:
        return None
    try:
        start_http_server(port, addr="127.0.0.1")
    except OSError as e:
        log.warning("cannot serve metrics on port %d: %s", port, e)
        return None
    log.info("metrics on http://127.0.0.1:%d/metrics", port)
    return port
