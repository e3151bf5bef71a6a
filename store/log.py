"""Logging setup for the servers and the CLI."""

from __future__ import annotations

import logging
import re
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVELS = ("debug", "info", "warning", "error")


class CancelledStreamFilter(logging.Filter):
    """Turn grpc's traceback for a reply stream the client cancelled into one INFO line.

    When a client stops reading a server stream (a GET that ends early, a closed S3
    connection), grpc.aio fails the next send with ExecuteBatchError and logs it at
    ERROR with a traceback, though nothing went wrong on the server.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if type(error).__name__ == "ExecuteBatchError":
            method = re.search(r"\[(.*?)\]", record.getMessage())
            record.msg = "stream %s ended: the client cancelled it before the last message"
            record.args = (method.group(1) if method else "?",)
            record.exc_info = None
            record.exc_text = None
            record.levelno = logging.INFO
            record.levelname = "INFO"
        return True


def setup_logging(level: str = "info") -> None:
    """Send log records at `level` and above to stderr in one line each."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr, force=True)
    # grpc's own logger is noisy at info about channel state changes.
    logging.getLogger("grpc").setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
    cygrpc = logging.getLogger("grpc._cython.cygrpc")
    if not any(isinstance(f, CancelledStreamFilter) for f in cygrpc.filters):
        cygrpc.addFilter(CancelledStreamFilter())
