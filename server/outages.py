"""Which errors say that a server we run on (PostgreSQL, Redis, the geo index's Solr) cannot
be reached now, rather than that the work itself failed.

The worker pool waits an outage out instead of parking events or failing tasks
(``workers/advance.py``, ``workers/tasks.py``); the API answers it 503, not 500.
"""

from __future__ import annotations

import psycopg2
import redis
from psycopg2.extensions import QueryCanceledError

from server.interfaces import GeoUnavailable

#: The errors of our own Redis and PostgreSQL clients that say the server is unreachable
#: (down, restarting, still loading its data set, the connection lost), and the geo index's
#: saying the same.
OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,  # BusyLoadingError too
    redis.TimeoutError,
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    GeoUnavailable,
)


def outage(error: BaseException) -> bool:
    """Whether ``error`` is an outage of Redis, PostgreSQL or the geo index's server. Only
    those clients' own errors count (and ``GeoUnavailable``, which the Solr backend raises
    for a Solr unreachable, timing out or answering 502-504, never for a document it
    refuses): a socket error or an HTTP client's ``ConnectError`` may come from an outside
    service or a bug, and a statement cancelled (``statement_timeout``) would fail again the
    same way; those are failures like any other."""
    return isinstance(error, OUTAGE_ERRORS) and not isinstance(error, QueryCanceledError)
