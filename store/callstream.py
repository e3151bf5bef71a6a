"""Unary calls carried over long-lived gRPC bidirectional streams.

A grpc.aio unary call costs each side 1.5 to 2.5 times the CPU of one
request and reply on a stream that is already open (bench/call_streams.py
measures both). So the hot calls between our processes (stats, commits, block
reads) travel on reusable streams: the client writes one request, reads one
reply, and puts the stream back in a pool for the next call. Each stream
carries one call at a time, so replies need no ids and keep their order.

Failures read the same as a unary call's. A server fails a streamed call with
the gRPC status and trailing metadata a unary call would get, which ends that
stream, and a timeout ends the stream too. A stream that ends with OK before
its reply arrives carried a request the server did not handle: a server ends
its streams that way only while they wait for a request, when it shuts down.
The client then sends the request again on a new stream, whatever the method.

A server of an older version serves only the unary methods. Against it a
StreamedMethod with a fallback uses the unary call from its first
UNIMPLEMENTED reply on, so clients and servers can be upgraded one at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message_factory import GetMessageClass

log = logging.getLogger(__name__)

# Idle streams kept per method and server; more than this many are closed when
# their call ends. One stream is opened per concurrent call.
MAX_IDLE_STREAMS = 32


class StreamEnded(Exception):
    """The server ended a stream without handling the request sent on it."""


# The same call made without streams, called as `await fallback(request, timeout=...)`.
Fallback = Callable[..., Awaitable[Any]]


class StreamedMethod:
    """The client side: a unary method called as `await method(request, timeout=...)`.

    It returns the reply, or raises grpc.aio.AioRpcError as the unary call would.
    `fallback` makes the same call without streams, for servers that reply
    UNIMPLEMENTED to the streamed method.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        path: str,
        request_serializer: Callable[[Any], bytes],
        response_deserializer: Callable[[bytes], Any],
        fallback: Fallback | None = None,
    ) -> None:
        self._open_stream = channel.stream_stream(
            path,
            request_serializer=request_serializer,
            response_deserializer=response_deserializer,
        )
        self._path = path
        self._idle: list[grpc.aio.StreamStreamCall] = []
        self._closed = False
        self._fallback = fallback
        # The fallback, once the server replied UNIMPLEMENTED to the streamed method.
        self._unary: Fallback | None = None

    async def __call__(self, request: Any, timeout: float | None = None) -> Any:
        if self._unary is not None:
            return await self._unary(request, timeout=timeout)
        # A reused stream that the server had ended gives way to the next one. The
        # loop ends at the latest with a new stream.
        while True:
            call, reused = self._take()
            try:
                reply = await self._exchange(call, request, timeout, reused)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.UNIMPLEMENTED or self._fallback is None:
                    raise
                log.info("the server replied UNIMPLEMENTED to %s; sending unary calls", self._path)
                self._unary = self._fallback
                return await self._unary(request, timeout=timeout)
            except StreamEnded:
                if reused:
                    continue
                raise _rpc_error(
                    grpc.StatusCode.UNAVAILABLE,
                    f"{self._path}: the server ended a new stream before reading the request; "
                    "it is shutting down",
                ) from None
            self._give_back(call)
            return reply

    def close(self) -> list[grpc.aio.StreamStreamCall]:
        """Cancel the idle streams and return them; calls in progress finish on theirs."""
        self._closed = True
        cancelled = self._idle
        self._idle = []
        for call in cancelled:
            call.cancel()
        return cancelled

    async def aclose(self) -> None:
        """Close the idle streams and wait until gRPC has finished them.

        gRPC completes a cancellation on its own thread. When the event loop closes
        before that, the late completion fails with "Event loop is closed".
        """
        for call in self.close():
            await call.code()

    def _take(self) -> tuple[grpc.aio.StreamStreamCall, bool]:
        while self._idle:
            call = self._idle.pop()
            if not call.done():
                return call, True
        return self._open_stream(), False

    def _give_back(self, call: grpc.aio.StreamStreamCall) -> None:
        if self._closed or len(self._idle) >= MAX_IDLE_STREAMS:
            call.cancel()
        else:
            self._idle.append(call)

    async def _exchange(
        self, call: grpc.aio.StreamStreamCall, request: Any, timeout_s: float | None, reused: bool
    ) -> Any:
        """Write `request` and read the reply; any failure but StreamEnded cancels the stream.

        A request is one message: when a server fails a stream while the client
        still writes to it, grpc.aio reports INTERNAL in place of the server's status.
        """
        try:
            async with asyncio.timeout(timeout_s):
                try:
                    await call.write(request)
                except grpc.aio.AioRpcError as error:
                    raise _send_failure(error, self._path) from None
                reply = await call.read()
        except TimeoutError:
            call.cancel()
            raise _rpc_error(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"{self._path}: no reply within {timeout_s:.3f} s",
            ) from None
        except asyncio.InvalidStateError:
            # write() on a stream that had ended, so the request was not sent. An idle
            # stream may have ended for any reason. A new one ends this early only by failing.
            if not reused:
                await _raise_status(call)
            raise StreamEnded() from None
        except BaseException:
            call.cancel()
            raise
        if reply is grpc.aio.EOF:
            await _raise_status(call)
            raise StreamEnded()
        return reply


async def _raise_status(call: grpc.aio.StreamStreamCall) -> None:
    """Raise the failure a finished stream ended with; return when it ended with OK."""
    code = await call.code()
    if code == grpc.StatusCode.OK:
        return
    raise grpc.aio.AioRpcError(
        code,
        await call.initial_metadata(),
        await call.trailing_metadata(),
        await call.details(),
    )


def _send_failure(error: grpc.aio.AioRpcError, path: str) -> grpc.aio.AioRpcError:
    """Return the error to raise for a request that could not be written to its stream.

    grpc.aio reports a failed send as INTERNAL ("Internal error from Core"), for
    example when the server's process died. A unary call fails as UNAVAILABLE then,
    so callers retry the same way.
    """
    if error.code() != grpc.StatusCode.INTERNAL:
        return error
    return _rpc_error(
        grpc.StatusCode.UNAVAILABLE,
        f"{path}: sending the request failed ({error.details()}); the connection broke",
    )


def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


UnaryHandler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class StreamedHandlers:
    """The server side: serves unary handlers on streams, and ends idle streams at shutdown."""

    def __init__(self) -> None:
        # Tasks of the streams that wait for their next request.
        self._waiting: set[asyncio.Task[Any]] = set()
        self._closing = False

    def method_handler(
        self,
        handler: UnaryHandler,
        request_deserializer: Callable[[bytes], Any],
        response_serializer: Callable[[Any], bytes],
    ) -> grpc.RpcMethodHandler:
        """Return a bidirectional streaming method that replies to each request with `handler`."""

        async def serve(
            requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[Any]:
            async for request in self._requests(requests):
                yield await handler(request, context)

        return grpc.stream_stream_rpc_method_handler(
            serve,
            request_deserializer=request_deserializer,
            response_serializer=response_serializer,
        )

    def close(self) -> None:
        """End every stream that waits for a request, and each other one after its reply.

        Call it before grpc.aio.Server.stop, which otherwise waits its whole grace
        period for the streams that clients keep open.
        """
        self._closing = True
        for task in list(self._waiting):
            task.cancel()
        if self._waiting:
            log.info("ending %d idle call streams", len(self._waiting))

    async def _requests(self, iterator: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """Yield the stream's requests until the client ends the stream or close() is called."""
        task = asyncio.current_task()
        assert task is not None
        while not self._closing:
            self._waiting.add(task)
            try:
                request = await anext(iterator)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                # Only close() cancels a waiting stream's task. Returning ends the
                # stream with OK, which means to the client that no request was handled.
                # A handler that raises CancelledError instead would leave the
                # call open until Server.stop's grace period ends.
                if self._closing:
                    return
                raise
            finally:
                self._waiting.discard(task)
            yield request


def streamed_service(service_name: str) -> str:
    """Return the name of the service that carries `service_name`'s unary methods on streams."""
    return f"{service_name}Calls"


def client_method(
    channel: grpc.aio.Channel, service: ServiceDescriptor, method: str
) -> StreamedMethod:
    """Return the streamed form of the unary method `method` of `service`."""
    descriptor = service.methods_by_name[method]
    deserializer = GetMessageClass(descriptor.output_type).FromString
    unary = channel.unary_unary(
        f"/{service.full_name}/{method}",
        request_serializer=_serialize,
        response_deserializer=deserializer,
    )
    return StreamedMethod(
        channel,
        f"/{streamed_service(service.full_name)}/{method}",
        request_serializer=_serialize,
        response_deserializer=deserializer,
        fallback=unary,
    )


def register_service(
    server: grpc.aio.Server,
    handlers: StreamedHandlers,
    service: ServiceDescriptor,
    servicer: Any,
) -> None:
    """Serve the streamed form of every unary method of `service`, handled by `servicer`."""
    method_handlers = {}
    for descriptor in service.methods:
        if descriptor.client_streaming or descriptor.server_streaming:
            continue
        method_handlers[descriptor.name] = handlers.method_handler(
            getattr(servicer, descriptor.name),
            request_deserializer=GetMessageClass(descriptor.input_type).FromString,
            response_serializer=_serialize,
        )
    generic = grpc.method_handlers_generic_handler(
        streamed_service(service.full_name), method_handlers
    )
    server.add_generic_rpc_handlers((generic,))


def _serialize(message: Any) -> bytes:
    return message.SerializeToString()
