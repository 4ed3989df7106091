"""Tiny blocking liveness probes for the servers we depend on (health checks, the stack)."""

from __future__ import annotations

import socket


def ask(host: str, port: int, line: bytes, timeout: float = 1.0) -> bytes:
    """Send one line and return the first bytes of the answer (empty on any failure)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(line)
            return s.recv(256)
    except OSError:
        return b""


def gearman_version(host: str, port: int, timeout: float = 1.0) -> str | None:
    """gearmand's version through its text admin protocol, or None if it does not answer."""
    answer = ask(host, port, b"version\n", timeout)
    return answer[3:].strip().decode("ascii", "replace") if answer.startswith(b"OK ") else None


def redis_ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a Redis server answers PING."""
    return ask(host, port, b"PING\r\n", timeout).startswith(b"+PONG")
