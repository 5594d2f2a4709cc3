"""One JSON object a line, for journald and log shippers: ts, level, logger, message, and the
record's extra fields (camera among them). The message is the same text the plain format logs, so
the rule about plate text (never at INFO) is the loggers' and holds for both formats."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

# What every LogRecord has: anything else on a record came from `extra=` and is shown.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_CAMERA_THREADS = ("feed-", "capture-")  # the daemon names a camera's threads after it


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "thread": record.threadName,
        }
        for prefix in _CAMERA_THREADS:
            if record.threadName and record.threadName.startswith(prefix):
                doc["camera"] = record.threadName[len(prefix):]
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)
