"""A small Gearman client and worker connection: the binary protocol over plain sockets.

Written here rather than taken from a library (README, "Dependencies and why"): it must carry
binary payloads, run under gevent (plain blocking sockets, which gevent's monkey-patching makes
cooperative), and surface gearmand's ERROR answer to a submit as an exception at once (a unique
key over 64 bytes gets ``ERROR ARGUMENT_TOO_LARGE``), never as a hang.

- ``GearmanClient``: background submits to one of several gearmand servers, chosen by
  rendezvous hashing of the unique key (so repeated submits of one key meet on one server and
  coalesce there), failing over to the next server when one does not answer.
- ``WorkerConnection``: one worker's connection to one gearmand (CAN_DO, GRAB_JOB_UNIQ,
  PRE_SLEEP and NOOP wake-ups, WORK_COMPLETE).
- ``admin``/``status``/``workers``/``version``: the text admin protocol.

Packets (pure, unit-tested): a 12-byte header (``\\0REQ`` or ``\\0RES``, type, size, big-endian)
then the arguments separated by NUL; the last argument may hold NULs (the payload).
"""

from __future__ import annotations

import enum
import logging
import socket
import struct
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

REQ = b"\0REQ"
RES = b"\0RES"
HEADER = struct.Struct(">4sII")
#: gearmand rejects longer unique keys (GEARMAN_MAX_UNIQUE_SIZE).
MAX_UNIQUE = 64


class P(enum.IntEnum):
    """Packet types of the binary protocol (the ones we send or expect)."""

    CAN_DO = 1
    CANT_DO = 2
    RESET_ABILITIES = 3
    PRE_SLEEP = 4
    NOOP = 6
    SUBMIT_JOB = 7
    JOB_CREATED = 8
    GRAB_JOB = 9
    NO_JOB = 10
    JOB_ASSIGN = 11
    WORK_STATUS = 12
    WORK_COMPLETE = 13
    WORK_FAIL = 14
    GET_STATUS = 15
    ECHO_REQ = 16
    ECHO_RES = 17
    SUBMIT_JOB_BG = 18
    ERROR = 19
    STATUS_RES = 20
    SUBMIT_JOB_HIGH = 21
    SET_CLIENT_ID = 22
    WORK_EXCEPTION = 25
    GRAB_JOB_UNIQ = 30
    JOB_ASSIGN_UNIQ = 31
    SUBMIT_JOB_HIGH_BG = 32
    SUBMIT_JOB_LOW = 33
    SUBMIT_JOB_LOW_BG = 34


#: How many arguments each response carries (the last one may contain NULs).
ARGC = {
    P.NOOP: 0, P.NO_JOB: 0, P.JOB_CREATED: 1, P.ECHO_RES: 1, P.ERROR: 2, P.JOB_ASSIGN: 3,
    P.JOB_ASSIGN_UNIQ: 4, P.WORK_COMPLETE: 2, P.WORK_FAIL: 1, P.WORK_EXCEPTION: 2,
    P.STATUS_RES: 5,
}

BACKGROUND = {"normal": P.SUBMIT_JOB_BG, "high": P.SUBMIT_JOB_HIGH_BG, "low": P.SUBMIT_JOB_LOW_BG}


class GearmanError(Exception):
    """Base of this module's errors."""


class GearmanServerError(GearmanError):
    """gearmand answered with an ERROR packet (``code``: e.g. ``ARGUMENT_TOO_LARGE``)."""

    def __init__(self, server: str, code: str, text: str) -> None:
        super().__init__(f"gearmand {server}: {code}: {text}")
        self.code = code
        self.text = text


class GearmanConnectionError(GearmanError):
    """A gearmand could not be reached, or the connection broke or timed out."""


class GearmanTimeout(GearmanConnectionError):
    """Nothing arrived in time on an idle connection (which stays usable)."""


class ProtocolError(GearmanError):
    """Bytes that are not the Gearman protocol."""


@dataclass(frozen=True, slots=True)
class Packet:
    type: int
    args: tuple[bytes, ...]


def encode(ptype: int, *args: bytes, magic: bytes = REQ) -> bytes:
    """One packet: header, then the arguments joined by NUL."""
    body = b"\0".join(args)
    return HEADER.pack(magic, ptype, len(body)) + body


class Decoder:
    """Incremental packet parser: ``feed`` bytes as they arrive, get whole packets back."""

    def __init__(self, magic: bytes = RES) -> None:
        self._magic = magic
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Packet]:
        self._buf += data
        out = []
        while len(self._buf) >= HEADER.size:
            magic, ptype, size = HEADER.unpack_from(self._buf)
            if magic != self._magic:
                raise ProtocolError(f"bad packet magic {bytes(magic)!r}")
            end = HEADER.size + size
            if len(self._buf) < end:
                break
            body = bytes(self._buf[HEADER.size:end])
            del self._buf[:end]
            argc = ARGC.get(ptype, 1)
            args = tuple(body.split(b"\0", argc - 1)) if argc else ()
            if len(args) != argc:
                raise ProtocolError(f"packet {ptype} has {len(args)} arguments, expected {argc}")
            out.append(Packet(ptype, args))
        return out


def validate_unique(unique: str) -> bytes:
    """The unique key as bytes; ValueError if gearmand would refuse it."""
    raw = unique.encode()
    if len(raw) > MAX_UNIQUE:
        raise ValueError(f"Gearman unique key {unique!r} is {len(raw)} bytes (max {MAX_UNIQUE})")
    if b"\0" in raw:
        raise ValueError("Gearman unique key contains NUL")
    return raw


def parse_server(server: str) -> tuple[str, int]:
    host, _, port = server.rpartition(":")
    return host, int(port)


class Connection:
    """A blocking connection to one gearmand; a lock serializes request/response pairs."""

    def __init__(self, server: str, timeout: float = 10.0) -> None:
        self.server = server
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._decoder = Decoder()
        self._pending: list[Packet] = []
        self.lock = threading.Lock()

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> None:
        if self._sock is not None:
            return
        host, port = parse_server(self.server)
        try:
            sock = socket.create_connection((host, port), timeout=self.timeout)
        except OSError as e:
            raise GearmanConnectionError(f"gearmand {self.server}: {e}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._decoder = Decoder()
        self._pending = []

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def send(self, data: bytes) -> None:
        self.connect()
        assert self._sock is not None
        try:
            self._sock.sendall(data)
        except OSError as e:
            self.close()
            raise GearmanConnectionError(f"gearmand {self.server}: send: {e}") from None

    def read(self, timeout: float | None = None, *, idle: bool = False) -> Packet:
        """The next packet; GearmanConnectionError on EOF, error or timeout. With ``idle``
        (nothing asked, e.g. asleep), a timeout raises GearmanTimeout and keeps the
        connection; otherwise the stream could be out of step, so it is closed."""
        while not self._pending:
            if self._sock is None:
                raise GearmanConnectionError(f"gearmand {self.server}: not connected")
            try:
                self._sock.settimeout(self.timeout if timeout is None else timeout)
                data = self._sock.recv(65536)
            except TimeoutError:
                if idle:
                    raise GearmanTimeout(f"gearmand {self.server}: quiet") from None
                self.close()
                raise GearmanConnectionError(f"gearmand {self.server}: timed out") from None
            except OSError as e:
                self.close()
                raise GearmanConnectionError(f"gearmand {self.server}: {e}") from None
            if not data:
                self.close()
                raise GearmanConnectionError(f"gearmand {self.server}: connection closed")
            self._pending.extend(self._decoder.feed(data))
        return self._pending.pop(0)

    def answer(self, *expected: int) -> Packet:
        """Read the answer to a request: one of ``expected``; ERROR raises."""
        while True:
            packet = self.read()
            if packet.type == P.ERROR:
                code, text = (a.decode("utf-8", "replace") for a in packet.args)
                raise GearmanServerError(self.server, code, text)
            if packet.type in expected:
                return packet
            if packet.type != P.NOOP:  # a stray wake-up is harmless; anything else is not
                self.close()
                raise ProtocolError(f"gearmand {self.server}: unexpected packet {packet.type}")


@dataclass(frozen=True, slots=True)
class Submit:
    """A background job to submit."""

    function: str
    data: bytes
    unique: str
    priority: str = "normal"


class GearmanClient:
    """Submits background jobs to a set of gearmand servers.

    A job goes to the first live server in the rendezvous-hash order of its unique key, so
    every submitter sends a given key to the same server (where duplicates coalesce), and a
    server going down only moves its own keys. A server that fails is skipped for a while
    (``retry_after`` seconds, doubling up to a minute) and the job goes to the next one.
    """

    def __init__(self, servers: Sequence[str], timeout: float = 5.0) -> None:
        if not servers:
            raise ValueError("no gearmand servers configured")
        self.servers = list(servers)
        self._conns = {s: Connection(s, timeout) for s in self.servers}
        self._down_until: dict[str, float] = {}
        self._down_for: dict[str, float] = {}

    def order(self, unique: str) -> list[str]:
        """The servers to try for ``unique``, preferred first (live ones before dead ones)."""
        ranked = sorted(self.servers, key=lambda s: zlib.crc32(f"{s}\0{unique}".encode()),
                        reverse=True)
        now = time.monotonic()
        return sorted(ranked, key=lambda s: self._down_until.get(s, 0) > now)

    def submit(self, function: str, data: bytes, unique: str, priority: str = "normal") -> str:
        """Submit one background job; returns its handle."""
        result = self.submit_many([Submit(function, data, unique, priority)])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def submit_many(self, jobs: Sequence[Submit]) -> list[str | GearmanError]:
        """Submit background jobs, pipelined per server; each result is the job's handle, or
        the error that stopped it (a server's ERROR, or every server unreachable)."""
        results: list[str | GearmanError | None] = [None] * len(jobs)
        todo: dict[int, list[str]] = {}
        for i, job in enumerate(jobs):
            try:
                validate_unique(job.unique)
            except ValueError as e:
                results[i] = GearmanError(str(e))
                continue
            todo[i] = self.order(job.unique)
        while todo:
            by_server: dict[str, list[int]] = {}
            for i, servers in todo.items():
                by_server.setdefault(servers[0], []).append(i)
            for server, indexes in by_server.items():
                answers = self._submit_to(server, [jobs[i] for i in indexes])
                for i, answer in zip(indexes, answers, strict=True):
                    if isinstance(answer, GearmanConnectionError):
                        todo[i].pop(0)
                        if todo[i]:
                            continue
                    results[i] = answer
                    del todo[i]
        return [r if r is not None else GearmanError("not submitted") for r in results]

    def _submit_to(self, server: str, jobs: list[Submit]) -> list[str | GearmanError]:
        conn = self._conns[server]
        out: list[str | GearmanError] = []
        with conn.lock:
            try:
                conn.send(b"".join(
                    encode(BACKGROUND[j.priority], j.function.encode(), j.unique.encode(), j.data)
                    for j in jobs
                ))
                for _ in jobs:
                    try:
                        out.append(conn.answer(P.JOB_CREATED).args[0].decode())
                    except GearmanServerError as e:
                        out.append(e)
            except GearmanError as e:
                conn.close()
                self._mark_down(server, e)
                err = e if isinstance(e, GearmanConnectionError) else GearmanConnectionError(str(e))
                out += [err] * (len(jobs) - len(out))
                return out
        self._down_until.pop(server, None)
        self._down_for.pop(server, None)
        return out

    def _mark_down(self, server: str, error: Exception) -> None:
        wait = min(self._down_for.get(server, 0.5) * 2, 60.0)
        self._down_for[server] = wait
        self._down_until[server] = time.monotonic() + wait
        log.warning("gearmand %s unavailable (%s); retrying it in %.1fs", server, error, wait)

    def echo(self, server: str, data: bytes = b"ping") -> bytes:
        """ECHO_REQ round trip to ``server``."""
        conn = self._conns[server]
        with conn.lock:
            try:
                conn.send(encode(P.ECHO_REQ, data))
                return conn.answer(P.ECHO_RES).args[0]
            except GearmanError:
                conn.close()
                raise

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()


@dataclass(frozen=True, slots=True)
class Job:
    """A job assigned to a worker."""

    handle: bytes
    function: str
    unique: str
    data: bytes


class WorkerConnection:
    """One worker's connection to one gearmand: register functions, grab jobs, sleep until a
    NOOP says there is work. Used by a single greenlet (the pool's grab loop)."""

    def __init__(self, server: str, functions: Sequence[str], client_id: str,
                 timeout: float = 10.0) -> None:
        self.server = server
        self.functions = list(functions)
        self.client_id = client_id
        self.conn = Connection(server, timeout)

    def connect(self) -> None:
        """(Re)connect and register; idempotent while connected."""
        if self.conn.connected:
            return
        self.conn.connect()
        self.conn.send(encode(P.SET_CLIENT_ID, self.client_id.encode()) + b"".join(
            encode(P.CAN_DO, f.encode()) for f in self.functions
        ))

    def grab(self) -> Job | None:
        """Ask for a job: the job, or None when gearmand has none for us."""
        self.connect()
        self.conn.send(encode(P.GRAB_JOB_UNIQ))
        packet = self.conn.answer(P.JOB_ASSIGN_UNIQ, P.NO_JOB)
        if packet.type == P.NO_JOB:
            return None
        handle, function, unique, data = packet.args
        return Job(handle, function.decode(), unique.decode(), data)

    def sleep(self, timeout: float) -> None:
        """PRE_SLEEP, then wait up to ``timeout`` for gearmand's NOOP (there may be work)."""
        self.conn.send(encode(P.PRE_SLEEP))
        try:
            while self.conn.read(timeout, idle=True).type != P.NOOP:
                pass
        except GearmanTimeout:
            pass  # grab again anyway: cheap, and it heals a lost wake-up

    def complete(self, job: Job, data: bytes = b"") -> None:
        """WORK_COMPLETE: gearmand forgets the job (and its unique key)."""
        self.conn.send(encode(P.WORK_COMPLETE, job.handle, data))

    def close(self) -> None:
        self.conn.close()


# --- the text admin protocol ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FunctionStatus:
    """A line of ``status``: a function, its queued and running jobs, and capable workers."""

    function: str
    total: int  # queued + running
    running: int
    workers: int

    @property
    def queued(self) -> int:
        return self.total - self.running


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A line of ``workers``: a connected worker and the functions it can do."""

    fd: int
    ip: str
    client_id: str
    functions: tuple[str, ...]


def admin(server: str, command: str, timeout: float = 5.0) -> list[str]:
    """Run an admin command; the lines of its answer (``version`` answers one line)."""
    host, port = parse_server(server)
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(command.encode() + b"\n")
            buf = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if command in ("version", "getpid") and buf.endswith(b"\n"):
                    break
                if buf == b".\n" or buf.endswith(b"\n.\n") or buf.startswith(b"ERR "):
                    break
    except OSError as e:
        raise GearmanConnectionError(f"gearmand {server}: {e}") from None
    text = buf.decode("utf-8", "replace")
    if text.startswith("ERR "):
        raise GearmanServerError(server, *(text[4:].strip().split(" ", 1) + [""])[:2])
    lines = text.split("\n")
    return [line for line in lines if line and line != "."]


def parse_status(lines: list[str]) -> list[FunctionStatus]:
    """``status`` lines: ``FUNCTION\\tTOTAL\\tRUNNING\\tAVAILABLE_WORKERS``."""
    out = []
    for line in lines:
        parts = line.split("\t")
        if len(parts) != 4:
            raise ProtocolError(f"not a status line: {line!r}")
        out.append(FunctionStatus(parts[0], int(parts[1]), int(parts[2]), int(parts[3])))
    return out


def parse_workers(lines: list[str]) -> list[WorkerInfo]:
    """``workers`` lines: ``FD IP-ADDRESS CLIENT-ID : FUNCTION ...``."""
    out = []
    for line in lines:
        # the address may hold " :" itself (IPv6: "::1"), so it is taken by position first
        parts = line.split(" ", 2)
        client, sep, functions = parts[-1].partition(" :")
        if not sep or len(parts) < 3 or not parts[0].removeprefix("-").isdigit():
            # (a connection gearmand is closing is listed with the descriptor -1)
            raise ProtocolError(f"not a workers line: {line!r}")
        out.append(WorkerInfo(int(parts[0]), parts[1], client, tuple(functions.split())))
    return out


def status(server: str) -> list[FunctionStatus]:
    """The server's functions with their queue depths and workers."""
    return parse_status(admin(server, "status"))


def workers(server: str) -> list[WorkerInfo]:
    """The workers connected to the server."""
    return parse_workers(admin(server, "workers"))


def version(server: str) -> str:
    """The server's version string."""
    lines = admin(server, "version")
    return lines[0].removeprefix("OK ").strip() if lines else ""
