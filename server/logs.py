"""Log output for the service: text or JSON lines, chosen by ``log.format``.

``twistd --logger server.logs.observer -n shutterlog`` uses it (``shutterlog run`` does);
``SHUTTERLOG_LOG_FORMAT=json`` selects JSON. Secrets never reach a log: request URIs are
logged with credentials masked (``redact_uri``).
"""

from __future__ import annotations

import logging
import re
import sys

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    jsonFileLogObserver,
    textFileLogObserver,
)

from server.config import load

_LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warning": LogLevel.warn,
    "error": LogLevel.error,
}
_SECRET_PARAMS = re.compile(
    rb"((?:^|[?&])(?:access_token|client_secret|password|code|sig|hub\.verify_token)=)[^&#]*",
    re.IGNORECASE,
)


def observer() -> ILogObserver:
    """The log observer the configuration asks for (a ``twistd --logger`` factory)."""
    cfg = load()
    out: ILogObserver
    if cfg.log.format == "json":
        out = jsonFileLogObserver(sys.stdout, recordSeparator="")
    else:
        out = textFileLogObserver(sys.stdout)
    predicate = LogLevelFilterPredicate(defaultLogLevel=_LEVELS[cfg.log.level])
    return FilteringLogObserver(out, [predicate])


def redact_uri(uri: bytes) -> str:
    """A request URI fit for a log: credential-bearing query parameters masked."""
    return _SECRET_PARAMS.sub(rb"\1***", uri).decode("ascii", "replace")


#: The HTTP libraries' loggers (stdlib ``logging``) and the least level each may log at:
#: hpack logs header blocks at DEBUG (bearer tokens among them), httpcore its exchanges at
#: DEBUG, httpx every request's URL at INFO, query and all (a webhook's callback or an API's
#: URL can carry credentials there). None of it belongs in a log.
_NOISY = {"hpack": logging.INFO, "h2": logging.INFO, "httpcore": logging.INFO,
          "httpx": logging.WARNING}


def quiet_http_logs() -> None:
    """Raise the level of the HTTP libraries' loggers so no credential reaches a log."""
    for name, level in _NOISY.items():
        logger = logging.getLogger(name)
        if logger.level < level:
            logger.setLevel(level)
