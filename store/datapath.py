"""The ChunkStream gRPC methods that carry chunk data as raw bytes.

Data messages skip protobuf so that a megabyte of payload is copied once by
gRPC and never parsed; the framing is described in proto/data.proto.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError

from store._pb import data_pb2
from store.callstream import StreamedHandlers, StreamedMethod, streamed_service

SERVICE = "store.v1.ChunkStream"
WRITE_METHOD = f"/{SERVICE}/Write"
READ_METHOD = f"/{SERVICE}/Read"
READ_BLOCKS_METHOD = f"/{SERVICE}/ReadBlocks"
# Write and ReadBlocks on reusable streams (see store.callstream), where one call
# costs less CPU. A streamed Write carries the same messages per chunk, and the
# dataserver replies once the header's length_bytes of data arrived.
STREAMED_WRITE_METHOD = f"/{streamed_service(SERVICE)}/Write"
STREAMED_READ_BLOCKS_METHOD = f"/{streamed_service(SERVICE)}/ReadBlocks"


def _raw(message: bytes) -> bytes:
    return message


def read_callable(channel: grpc.aio.Channel) -> Any:
    """Return the server-streaming Read call of a channel: ReadChunkRequest in, bytes out."""
    return channel.unary_stream(
        READ_METHOD,
        request_serializer=data_pb2.ReadChunkRequest.SerializeToString,
        response_deserializer=_raw,
    )


def read_blocks_callable(channel: grpc.aio.Channel) -> Any:
    """Return the unary ReadBlocks call of a channel: ReadChunkRequest in, ReadChunkHeader out."""
    return channel.unary_unary(
        READ_BLOCKS_METHOD,
        request_serializer=data_pb2.ReadChunkRequest.SerializeToString,
        response_deserializer=data_pb2.ReadChunkHeader.FromString,
    )


def streamed_write(channel: grpc.aio.Channel) -> StreamedMethod:
    """Return Write of a channel called on reusable streams: send it a chunk's messages."""
    return StreamedMethod(
        channel,
        STREAMED_WRITE_METHOD,
        request_serializer=_raw,
        response_deserializer=data_pb2.WriteChunkResponse.FromString,
    )


def streamed_read_blocks(channel: grpc.aio.Channel) -> StreamedMethod:
    """Return ReadBlocks of a channel called on reusable streams, with the unary call's types."""
    return StreamedMethod(
        channel,
        STREAMED_READ_BLOCKS_METHOD,
        request_serializer=data_pb2.ReadChunkRequest.SerializeToString,
        response_deserializer=data_pb2.ReadChunkHeader.FromString,
    )


def register(
    server: grpc.aio.Server,
    streams: StreamedHandlers,
    write: Callable[[AsyncIterator[bytes], grpc.aio.ServicerContext], Awaitable[Any]],
    read: Callable[[data_pb2.ReadChunkRequest, grpc.aio.ServicerContext], AsyncIterator[bytes]],
    read_blocks: Callable[[data_pb2.ReadChunkRequest, grpc.aio.ServicerContext], Awaitable[bytes]],
) -> None:
    """Register the dataserver's Write, Read and ReadBlocks handlers on a server.

    Write and ReadBlocks are also served on streams.
    """
    handlers = {
        "Write": grpc.stream_unary_rpc_method_handler(
            write,
            request_deserializer=_raw,
            response_serializer=data_pb2.WriteChunkResponse.SerializeToString,
        ),
        "Read": grpc.unary_stream_rpc_method_handler(
            read,
            request_deserializer=data_pb2.ReadChunkRequest.FromString,
            response_serializer=_raw,
        ),
        "ReadBlocks": grpc.unary_unary_rpc_method_handler(
            read_blocks,
            request_deserializer=data_pb2.ReadChunkRequest.FromString,
            response_serializer=_raw,
        ),
    }
    streamed = {
        "Write": _streamed_write_handler(streams, write),
        "ReadBlocks": streams.method_handler(
            read_blocks,
            request_deserializer=data_pb2.ReadChunkRequest.FromString,
            response_serializer=_raw,
        ),
    }
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(SERVICE, handlers),
            grpc.method_handlers_generic_handler(streamed_service(SERVICE), streamed),
        )
    )


def _streamed_write_handler(
    streams: StreamedHandlers,
    write: Callable[[AsyncIterator[bytes], grpc.aio.ServicerContext], Awaitable[Any]],
) -> grpc.RpcMethodHandler:
    async def serve(
        messages: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        async for header in streams.requests(messages):
            yield await write(_chunk_messages(header, messages), context)

    return grpc.stream_stream_rpc_method_handler(
        serve,
        request_deserializer=_raw,
        response_serializer=data_pb2.WriteChunkResponse.SerializeToString,
    )


async def _chunk_messages(header: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Yield one chunk's messages from a stream: its header, then data up to its length."""
    yield header
    try:
        length_bytes = data_pb2.WriteChunkHeader.FromString(header).chunk.length_bytes
    except DecodeError:
        return  # The write handler rejects the header.
    received_bytes = 0
    while received_bytes < length_bytes:
        message = await anext(rest, None)
        if message is None:
            return
        received_bytes += len(message)
        yield message
