"""Send notifications concurrently from greenlets, as the worker pool will (run as a process).

``python -m tests.integration.push.green_push PLATFORM COUNT`` builds the providers from the
SHUTTERLOG_* environment, sends COUNT notifications to distinct devices at once from a gevent
pool of ``push.concurrency`` greenlets, and prints one JSON line: the result kinds counted.
"""

from workers.green import patch

patch()

import json  # noqa: E402  (after gevent's patching, as in the worker)
import sys  # noqa: E402
from collections import Counter  # noqa: E402

import gevent.pool  # noqa: E402

from plugins.push import close_all, push_providers  # noqa: E402
from server.config import load  # noqa: E402
from server.domain.push import Notification, notification_id  # noqa: E402


def main() -> None:
    platform, count = sys.argv[1], int(sys.argv[2])
    cfg = load()
    providers = push_providers(cfg)
    provider = providers[platform]  # type: ignore[index]
    tokens = [f"{i:064x}" for i in range(count)]
    notes = [Notification(t, platform, notification_id("green", t), title="hi",  # type: ignore[arg-type]
                          body="concurrent") for t in tokens]
    pool = gevent.pool.Pool(cfg.push.concurrency)
    results = Counter(type(r).__name__ for r in pool.imap_unordered(provider.send, notes))
    close_all(providers)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
