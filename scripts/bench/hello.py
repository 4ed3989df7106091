"""A bare Twisted web server answering "hello": the ceiling the API benchmarks compare
against. Run: ``python -m scripts.bench.hello PORT``."""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.web.resource import Resource
from twisted.web.server import Site


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request: object) -> bytes:
        return b"hello"


def main() -> None:
    reactor: Any = _reactor
    reactor.listenTCP(int(sys.argv[1]), Site(Hello()), interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main()
