"""Log output of the relay and the workers: stdlib logging, text or JSON lines (``log.format``)."""

from __future__ import annotations

import json
import logging
import sys
import time

from server.config import Config
from server.logs import quiet_http_logs


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, process role, message (and traceback)."""

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "role": self.role,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup(cfg: Config, role: str) -> None:
    """Send every log record of this process to stdout in the configured format (never the
    HTTP libraries' requests: ``quiet_http_logs``)."""
    handler = logging.StreamHandler(sys.stdout)
    if cfg.log.format == "json":
        handler.setFormatter(JsonFormatter(role))
    else:
        handler.setFormatter(logging.Formatter(
            f"%(asctime)s %(levelname)s {role} %(name)s: %(message)s"
        ))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(cfg.log.level.upper())
    quiet_http_logs()
