"""The servers' logging setup: grpc's traceback for a cancelled stream becomes one line."""

from __future__ import annotations

import logging
import sys

import pytest

from store.log import CancelledStreamFilter, setup_logging


class ExecuteBatchError(Exception):
    """Stands in for grpc._cython.cygrpc.ExecuteBatchError, which cannot be built here."""


def grpc_record(error: BaseException) -> logging.LogRecord:
    try:
        raise error
    except type(error):
        exc_info = sys.exc_info()
    return logging.LogRecord(
        "grpc._cython.cygrpc",
        logging.ERROR,
        __file__,
        1,
        "ExecuteBatchError raised in core by servicer method [%s]",
        ("/store.v1.ChunkStream/Read",),
        exc_info,
    )


def test_cancelled_stream_is_one_info_line() -> None:
    record = grpc_record(ExecuteBatchError('Failed "execute_batch"'))

    assert CancelledStreamFilter().filter(record)

    assert record.levelno == logging.INFO
    assert record.exc_info is None
    assert record.getMessage() == (
        "stream /store.v1.ChunkStream/Read ended: the client cancelled it before the last message"
    )


def test_other_errors_keep_their_traceback() -> None:
    record = grpc_record(RuntimeError("boom"))

    assert CancelledStreamFilter().filter(record)

    assert record.levelno == logging.ERROR
    assert record.exc_info is not None


@pytest.mark.parametrize("level", ["info", "debug"])
def test_setup_installs_filter_once(level: str) -> None:
    setup_logging(level)
    setup_logging(level)
    filters = logging.getLogger("grpc._cython.cygrpc").filters
    assert sum(isinstance(f, CancelledStreamFilter) for f in filters) == 1
