"""The ChunkStream gRPC methods that carry chunk data as raw bytes.

Data messages skip protobuf so that a megabyte of payload is copied once by
gRPC and never parsed; the framing is described in proto/data.proto.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

from store._pb import data_pb2

SERVICE = "store.v1.ChunkStream"
WRITE_METHOD = f"/{SERVICE}/Write"
READ_METHOD = f"/{SERVICE}/Read"
READ_BLOCKS_METHOD = f"/{SERVICE}/ReadBlocks"


def _raw(message: bytes) -> bytes:
    return message


def write_callable(channel: grpc.aio.Channel) -> Any:
    """Return the client-streaming Write call of a channel: bytes in, WriteChunkResponse out."""
    return channel.stream_unary(
        WRITE_METHOD,
        request_serializer=_raw,
        response_deserializer=data_pb2.WriteChunkResponse.FromString,
    )


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


def register(
    server: grpc.aio.Server,
    write: Callable[[AsyncIterator[bytes], grpc.aio.ServicerContext], Awaitable[Any]],
    read: Callable[[data_pb2.ReadChunkRequest, grpc.aio.ServicerContext], AsyncIterator[bytes]],
    read_blocks: Callable[[data_pb2.ReadChunkRequest, grpc.aio.ServicerContext], Awaitable[bytes]],
) -> None:
    """Register the dataserver's Write, Read and ReadBlocks handlers on a server."""
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
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
