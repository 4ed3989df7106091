"""A raw TCP callback that answers as slowly or as endlessly as we like: what an HTTP client
must not let hold it (headers or a body dripping in, a body that never ends)."""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Callable, Iterator
from types import TracebackType

#: The answer to one connection: the pieces to send, given the server's stop event.
Answer = Callable[[threading.Event], Iterator[bytes]]


class Trickle:
    """Serves every connection in a thread: reads the request, then sends ``answer``'s
    pieces until they end, the client goes or the server stops; ``sent`` holds the bytes
    sent to each connection."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.stop = threading.Event()
        self.sent: list[int] = []
        self.lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}/hook"
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Trickle:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop.set()
        self._thread.join(5)
        self._server.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        with self.lock:
            index = len(self.sent)
            self.sent.append(0)
        with conn:
            try:
                conn.recv(65536)
                for piece in self.answer(self.stop):
                    conn.sendall(piece)
                    with self.lock:
                        self.sent[index] += len(piece)
            except OSError:
                return


def drip(at_once: bytes, then: Iterator[bytes] | bytes, every: float = 0.5) -> Answer:
    """Send ``at_once``, then ``then`` one byte every ``every`` seconds (bytes: that many;
    an iterator: forever, if it is endless)."""

    def answer(stop: threading.Event) -> Iterator[bytes]:
        if at_once:
            yield at_once
        for byte in then if not isinstance(then, bytes) else (bytes([b]) for b in then):
            if stop.wait(every):  # the fake's pace, not a test's synchronization
                return
            yield byte

    return answer


def endless_redirect(location: str = "/hook", cap: int = 128 << 20) -> Answer:
    """A 302 to ``location`` whose body claims a terabyte and streams as fast as the client
    reads it (up to ``cap`` bytes, then the connection is closed)."""
    head = (f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: {1 << 40}\r\n"
            "\r\n").encode()
    chunk = b"x" * 65536

    def answer(stop: threading.Event) -> Iterator[bytes]:
        yield head
        yield from itertools.islice(itertools.repeat(chunk), cap // len(chunk))

    return answer


def forever(byte: bytes = b"x") -> Iterator[bytes]:
    """The same byte, endlessly."""
    return itertools.repeat(byte)
