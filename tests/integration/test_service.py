"""The service skeleton: ``twistd -n shutterlog`` with /healthz, /metrics, errors, logs."""

from __future__ import annotations

import json
import signal

import psycopg2

from scripts.stack import free_port
from tests.helpers import Service, wait_for
from tests.integration.conftest import Env
from tests.integration.recording import relay, workers


def start(env: Env, **overrides: str) -> Service:
    service = Service(env.vars | overrides, free_port())
    service.wait_listening()
    return service


def test_healthz_metrics_and_error_envelope(env: Env) -> None:
    """Healthy: /healthz 200, /metrics counts requests, unknown routes and methods get the
    error envelope, request ids are echoed."""
    svc = start(env)
    try:
        r = svc.client.get("/healthz")
        assert r.status_code == 200, r.text
        assert r.json()["checks"] == {"postgres": "ok", "redis": "ok", "gearmand": "ok"}
        r = svc.client.get("/v1/nothing/here", headers={"X-Request-Id": "abc-123"})
        assert r.status_code == 404 and r.headers["x-request-id"] == "abc-123"
        assert r.json() == {"meta": {"code": 404, "error_type": "APINotFoundError",
                                     "error_message": "no such endpoint: /v1/nothing/here",
                                     "request_id": "abc-123"}}
        r = svc.client.post("/healthz")
        assert r.status_code == 405
        assert r.json()["meta"]["error_type"] == "APIMethodNotAllowedError"
        assert "GET" in r.headers["allow"]
        metrics = svc.client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        assert 'shutterlog_http_requests_total{code="404",method="GET"} 1.0' in metrics.text
    finally:
        # twistd re-raises the signal that stopped it, so a clean SIGTERM stop exits -15.
        assert svc.stop() == -signal.SIGTERM
        assert "Main loop terminated" in svc.output.text()


def test_healthz_names_each_dependency_that_is_down(env: Env) -> None:
    """With Redis, then gearmand, then PostgreSQL unreachable, /healthz is 503 naming it."""
    dead = str(free_port())
    cases = {
        "redis": {"SHUTTERLOG_REDIS_URL": f"redis://127.0.0.1:{dead}/0"},
        "gearmand": {"SHUTTERLOG_GEARMAN_SERVERS": f"127.0.0.1:{dead}"},
        "postgres": {"SHUTTERLOG_SHARDS_DATABASES":
                     f"0-15=postgresql://postgres@127.0.0.1:{dead}/nothing"},
    }
    for name, override in cases.items():
        svc = start(env, **override)
        try:
            r = svc.client.get("/healthz")
            assert r.status_code == 503, r.text
            assert r.json()["failing"] == [name]
            assert r.json()["checks"][name].startswith("error")
        finally:
            svc.stop()


def test_json_logs_without_secrets(env: Env) -> None:
    """With log.format json every output line is a JSON object, and no secret appears."""
    svc = start(env, SHUTTERLOG_LOG_FORMAT="json", SHUTTERLOG_LOG_LEVEL="debug")
    try:
        svc.client.get("/healthz?access_token=tok-SECRET-1")
        wait_for(lambda: "/healthz" in svc.output.text(), message="the access log line")
    finally:
        svc.stop()
    lines = [line for line in svc.output.lines if line.strip()]
    assert lines and all(isinstance(json.loads(line), dict) for line in lines)
    text = svc.output.text()
    assert "tok-SECRET-1" not in text and "access_token=***" in text
    assert "test-secret-key" not in text


def test_unmigrated_database_refuses_to_start(env: Env) -> None:
    """Pointed at an empty database, the service, the relay and the workers each exit saying
    to run shutterlog migrate."""
    admin = psycopg2.connect(env.stack.dsn(0).rsplit("/", 1)[0] + "/postgres")
    admin.autocommit = True
    name = f"{env.dbnames[0]}_empty"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        dsn = env.stack.dsn(0).rsplit("/", 1)[0] + "/" + name
        empty = env.vars | {"SHUTTERLOG_SHARDS_DATABASES": f"0-15={dsn}"}
        for proc in (Service(empty, free_port()), relay(empty), workers(empty)):
            assert proc.wait(30) != 0, proc.name
            assert "run 'shutterlog migrate' first" in proc.output.text(), proc.output.text()
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()
