"""A node's logging: every line names the node (`node=ID`), as text or as JSON lines
(`log_format = "json"`, for log shippers)."""

from __future__ import annotations

import json
import logging
import sys


class _NodeIdFilter(logging.Filter):
    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = self.node_id
        return True


class _JsonLines(logging.Formatter):
    """One JSON object per line (`log_format = "json"`), for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": self.formatTime(record), "level": record.levelname,
               "node": getattr(record, "node", ""), "logger": record.name,
               "message": record.getMessage()}
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(node_id: str, level: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_NodeIdFilter(node_id))
    handler.setFormatter(
        _JsonLines() if log_format == "json" else
        logging.Formatter("%(asctime)s %(levelname)s node=%(node)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)

