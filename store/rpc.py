"""gRPC plumbing shared by the servers and the SDK: channel options and error mapping."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
import grpc.aio

from store.errors import (
    EPOCH_METADATA_KEY,
    ERROR_CODE_METADATA_KEY,
    StaleEpoch,
    StoreError,
    error_for_status,
)
from store.limits import GRPC_MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", GRPC_MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    # Reconnect quickly after a server restarts instead of backing off for minutes.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    ("grpc.enable_retries", 0),
    # Each channel gets its own connections, so a channel replaced after a failure
    # (ChannelPool.reset) does not inherit the old connection's reconnect backoff.
    ("grpc.use_local_subchannel_pool", 1),
]

SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", GRPC_MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE_BYTES),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.so_reuseport", 0),
]


def error_from_rpc(exc: grpc.RpcError, where: str) -> StoreError:
    """Turn a failed call into the StoreError the server raised, prefixed with `where`."""
    status = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    code = None
    epoch = None
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for item in trailing or ():
        if item[0] == ERROR_CODE_METADATA_KEY:
            code = str(item[1])
        elif item[0] == EPOCH_METADATA_KEY:
            epoch = int(item[1])
    if status == grpc.StatusCode.UNAVAILABLE and code is None:
        details = f"cannot reach the server ({details})"
    error = error_for_status(status, code, f"{where}: {details}")
    error.server_message = details
    if isinstance(error, StaleEpoch):
        error.server_epoch = epoch
    return error


def raise_from_rpc(exc: grpc.RpcError, where: str) -> NoReturn:
    raise error_from_rpc(exc, where) from None


async def abort_with(context: grpc.aio.ServicerContext, error: StoreError) -> NoReturn:
    """Fail the current call with the error's gRPC status and its store-error code."""
    metadata: list[tuple[str, str]] = [(ERROR_CODE_METADATA_KEY, error.code)]
    epoch = getattr(error, "server_epoch", None)
    if epoch is not None:
        metadata.append((EPOCH_METADATA_KEY, str(epoch)))
    await context.abort(error.grpc_status, str(error), trailing_metadata=tuple(metadata))
    raise AssertionError("context.abort returned")  # pragma: no cover


Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


def unary_handler(method: Handler) -> Handler:
    """Wrap a servicer method so a StoreError becomes a gRPC status and a bug becomes INTERNAL."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except StoreError as error:
            log.info("rpc=%s failed: %s: %s", method.__name__, error.code, error)
            await abort_with(context, error)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            log.exception("[BUG] rpc=%s raised an unexpected error", method.__name__)
            await abort_with(context, StoreError(f"internal error in {method.__name__}: {exc!r}"))

    return wrapper  # type: ignore[return-value]


def stream_handler(
    method: Callable[..., AsyncIterator[Any]],
) -> Callable[..., AsyncIterator[Any]]:
    """The unary_handler for server-streaming methods (async generators)."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            async for reply in method(self, request, context):
                yield reply
        except StoreError as error:
            log.info("rpc=%s failed: %s: %s", method.__name__, error.code, error)
            await abort_with(context, error)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            log.exception("[BUG] rpc=%s raised an unexpected error", method.__name__)
            await abort_with(context, StoreError(f"internal error in {method.__name__}: {exc!r}"))

    return wrapper
