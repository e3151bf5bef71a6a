"""The ChunkStream gRPC methods that carry chunk data.

The data messages of Write and Read skip protobuf, so that a megabyte of
payload is copied once by gRPC and never parsed. ReadBlocks replies and
whole-chunk writes, at most about 1 MiB each, carry their data in a bytes
field appended by hand, and the receiver takes that field out as a view
before it parses the rest. The framing is described in proto/data.proto.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError

from store._pb import data_pb2
from store.callstream import StreamedHandlers, StreamedMethod, streamed_service
from store.checksum import Buffer
from store.limits import MESSAGE_BYTES

SERVICE = "store.v1.ChunkStream"
WRITE_METHOD = f"/{SERVICE}/Write"
READ_METHOD = f"/{SERVICE}/Read"
READ_BLOCKS_METHOD = f"/{SERVICE}/ReadBlocks"
# Write and ReadBlocks on reusable streams (see store.callstream), where one call
# costs less CPU. A streamed Write carries a whole chunk in its header message.
STREAMED_WRITE_METHOD = f"/{streamed_service(SERVICE)}/Write"
STREAMED_READ_BLOCKS_METHOD = f"/{streamed_service(SERVICE)}/ReadBlocks"
# The largest chunk sent as one streamed Write request; larger chunks take the
# client-streaming Write, one data message per MESSAGE_BYTES.
MAX_STREAMED_WRITE_BYTES = MESSAGE_BYTES

# Field numbers of the `data` fields of WriteChunkHeader and ReadChunkHeader.
WRITE_DATA_FIELD = data_pb2.WriteChunkHeader.DESCRIPTOR.fields_by_name["data"].number
READ_DATA_FIELD = data_pb2.ReadChunkHeader.DESCRIPTOR.fields_by_name["data"].number


# A streamed Write request as the dataserver receives it: the header without its
# data, and a view of the data in the received message.
WholeChunkRequest = tuple[data_pb2.WriteChunkHeader, memoryview]


@dataclass(frozen=True, slots=True)
class WholeChunk:
    """A streamed Write request: a serialized WriteChunkHeader without data, and the data."""

    header: bytes
    data: Buffer


def with_bytes_field(message: bytes, field_number: int, data: Buffer) -> bytes:
    """Append a bytes field to a serialized message, copying `data` once.

    Setting the field through protobuf would copy the data twice.
    """
    # Wire type 2 (length-delimited). Field numbers up to 15 fit the tag in one byte.
    assert 0 < field_number < 16, field_number
    tag = bytes([field_number << 3 | 2])
    return b"".join((message, tag, _varint(len(data)), data))


def _varint(value: int) -> bytes:
    """Encode a non-negative integer as a protobuf varint."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def split_bytes_field(message: bytes, field_number: int) -> tuple[bytes, memoryview]:
    """Split a serialized message into its other fields and a view of one bytes field.

    The view shares the message's memory, so only the other fields (a few dozen
    bytes) are copied. When the field occurs more than once, the last one counts,
    as in protobuf. A message without the field gives an empty view. Raises
    DecodeError for a truncated message or a group.
    """
    view = memoryview(message)
    others: list[memoryview] = []
    data = memoryview(b"")
    position = 0
    while position < len(message):
        start = position
        tag, position = _read_varint(message, position)
        wire_type = tag & 7
        value_start = position
        if wire_type == 0:
            _, position = _read_varint(message, position)
        elif wire_type == 1:
            position += 8
        elif wire_type == 2:
            length, value_start = _read_varint(message, position)
            position = value_start + length
        elif wire_type == 5:
            position += 4
        else:
            raise DecodeError(f"unsupported wire type {wire_type} at byte {start}")
        if position > len(message):
            raise DecodeError(f"field at byte {start} runs past the end of the message")
        if tag >> 3 == field_number and wire_type == 2:
            data = view[value_start:position]
        else:
            others.append(view[start:position])
    return b"".join(others), data


def _read_varint(message: bytes, position: int) -> tuple[int, int]:
    """Decode the varint at `position`; return its value and the position after it."""
    value = 0
    shift = 0
    while True:
        if position >= len(message) or shift > 63:
            raise DecodeError(f"truncated or overlong varint at byte {position}")
        byte = message[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


def parse_read_blocks_reply(message: bytes) -> tuple[data_pb2.ReadChunkHeader, memoryview]:
    """Parse a ReadBlocks reply into its header, without data, and a view of its data."""
    header, data = split_bytes_field(message, READ_DATA_FIELD)
    return data_pb2.ReadChunkHeader.FromString(header), data


def parse_whole_chunk(message: bytes) -> tuple[data_pb2.WriteChunkHeader, memoryview]:
    """Parse a streamed Write request into its header, without data, and a view of its data."""
    header, data = split_bytes_field(message, WRITE_DATA_FIELD)
    return data_pb2.WriteChunkHeader.FromString(header), data


def _raw(message: bytes) -> bytes:
    return message


def _serialize_whole_chunk(chunk: WholeChunk) -> bytes:
    return with_bytes_field(chunk.header, WRITE_DATA_FIELD, chunk.data)


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
    """Return the unary ReadBlocks call of a channel: ReadChunkRequest in, header and data out."""
    return channel.unary_unary(
        READ_BLOCKS_METHOD,
        request_serializer=data_pb2.ReadChunkRequest.SerializeToString,
        response_deserializer=parse_read_blocks_reply,
    )


def streamed_write(channel: grpc.aio.Channel) -> StreamedMethod:
    """Return Write of a channel called on reusable streams with WholeChunk requests."""
    unary = write_callable(channel)

    async def write_without_streams(chunk: WholeChunk, timeout: float | None = None) -> Any:
        return await unary(iter([chunk.header, bytes(chunk.data)]), timeout=timeout)

    return StreamedMethod(
        channel,
        STREAMED_WRITE_METHOD,
        request_serializer=_serialize_whole_chunk,
        response_deserializer=data_pb2.WriteChunkResponse.FromString,
        fallback=write_without_streams,
    )


def streamed_read_blocks(channel: grpc.aio.Channel) -> StreamedMethod:
    """Return ReadBlocks of a channel called on reusable streams, with the unary call's types."""
    return StreamedMethod(
        channel,
        STREAMED_READ_BLOCKS_METHOD,
        request_serializer=data_pb2.ReadChunkRequest.SerializeToString,
        response_deserializer=parse_read_blocks_reply,
        fallback=read_blocks_callable(channel),
    )


def register(
    server: grpc.aio.Server,
    streams: StreamedHandlers,
    write: Callable[[AsyncIterator[bytes], grpc.aio.ServicerContext], Awaitable[Any]],
    write_whole: Callable[[WholeChunkRequest, grpc.aio.ServicerContext], Awaitable[Any]],
    read: Callable[[data_pb2.ReadChunkRequest, grpc.aio.ServicerContext], AsyncIterator[bytes]],
    read_blocks: Callable[[data_pb2.ReadChunkRequest, grpc.aio.ServicerContext], Awaitable[bytes]],
) -> None:
    """Register the dataserver's Write, Read and ReadBlocks handlers on a server.

    Write (of a whole chunk, by `write_whole`) and ReadBlocks are also served on streams.
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
        "Write": streams.method_handler(
            write_whole,
            request_deserializer=parse_whole_chunk,
            response_serializer=data_pb2.WriteChunkResponse.SerializeToString,
        ),
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
