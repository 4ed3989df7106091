"""gevent set-up for the relay and the workers: must run before anything else is imported."""

from __future__ import annotations


def patch() -> None:
    """Make the standard library and psycopg2 cooperative under gevent."""
    from gevent import monkey

    monkey.patch_all()
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()
