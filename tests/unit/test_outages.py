"""What the worker pool takes for an outage of its own Redis, PostgreSQL or geo index (retried,
never parked) and what for a failure of the event (retried, then parked)."""

from __future__ import annotations

import httpx
import psycopg2
import psycopg2.errors
import pysolr
import redis
import redis.exceptions

from server.interfaces import GeoUnavailable
from server.outages import outage


def test_only_our_clients_connection_errors_are_outages() -> None:
    """Redis down, loading or timing out, and PostgreSQL unreachable or shut down are
    outages; a socket error, an HTTP client's ConnectError (an outside service, or a bug)
    and a cancelled statement (one event's query running into statement_timeout) are not."""
    assert outage(redis.ConnectionError("Error 111 connecting"))
    assert outage(redis.exceptions.BusyLoadingError("loading the dataset in memory"))
    assert outage(redis.TimeoutError("Timeout reading from socket"))
    assert outage(psycopg2.OperationalError("server closed the connection unexpectedly"))
    assert outage(psycopg2.errors.AdminShutdown("terminating connection"))
    assert outage(psycopg2.InterfaceError("connection already closed"))
    assert not outage(ConnectionRefusedError(111, "Connection refused"))
    assert not outage(httpx.ConnectError("All connection attempts failed"))
    assert not outage(psycopg2.errors.QueryCanceled("canceling statement due to timeout"))
    assert not outage(redis.ResponseError("WRONGTYPE"))
    assert not outage(ValueError("a bug"))


def test_the_geo_index_unreachable_is_an_outage() -> None:
    """GeoUnavailable (the Solr backend's word for a Solr down, timing out or answering 503)
    is an outage; pysolr's own error (a document Solr refused) is a failure of the event."""
    assert outage(GeoUnavailable("Solr is unavailable: Failed to connect to server"))
    assert not outage(pysolr.SolrError("Solr responded with an error (HTTP 400): bad field"))
