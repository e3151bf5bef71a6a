"""Logging setup for the servers and the CLI."""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVELS = ("debug", "info", "warning", "error")


def setup_logging(level: str = "info") -> None:
    """Send log records at `level` and above to stderr in one line each."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr, force=True)
    # grpc's own logger is noisy at info about channel state changes.
    logging.getLogger("grpc").setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
