"""The two ways a chunk is read: ReadBlocks (small, through the page cache) and Read (streamed).

Reads up to SMALL_READ_BYTES take one unary ChunkStream/ReadBlocks call, which
a dataserver serves from the page cache on its event loop when every page is
cached and in a worker thread otherwise. Larger reads stream with O_DIRECT.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import DecodeError

import store
from dataserver.chunkstore import ChunkStore
from dataserver.service import MAX_READ_BLOCKS_BYTES
from store import datapath
from store._pb import common_pb2 as pb
from store._pb import data_pb2
from store.checksum import crc32c
from store.cluster import LocalCluster
from store.errors import ChunkNotFound, InvalidArgument
from store.limits import CHECKSUM_BLOCK_BYTES, SMALL_READ_BYTES
from store.reader import slice_pieces
from store.rpc import CHANNEL_OPTIONS

from .support import (
    CHUNK_SIZE_BYTES,
    make_data,
    mounted_tmpfs,
    new_bucket_name,
    upload_chunk_files,
)

BLOCK = CHECKSUM_BLOCK_BYTES
CHUNK = CHUNK_SIZE_BYTES
CHUNK_DATA_BYTES = 5 * BLOCK + 1234


def write_chunk(chunk_store: ChunkStore, data: bytes) -> bytes:
    """Write one chunk as a dataserver does and return its id."""
    upload = uuid.uuid4().bytes
    chunk_id = upload + bytes(6)
    header = pb.ChunkFileHeader(
        chunk_id=chunk_id, upload_id=upload.hex(), length_bytes=len(data), crc32c=crc32c(data)
    )
    chunk_store.write_chunk(header, [data])
    return chunk_id


def drop_from_page_cache(chunk_store: ChunkStore, chunk_id: bytes) -> None:
    fd = os.open(chunk_store.path_for(chunk_id), os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def test_read_blocks_cached_only(tmp_path: Path) -> None:
    chunk_store = ChunkStore(tmp_path)
    data = make_data(CHUNK_DATA_BYTES, seed=1500)
    chunk_id = write_chunk(chunk_store, data)
    drop_from_page_cache(chunk_store, chunk_id)
    offset, length = BLOCK + 10, 2 * BLOCK

    if chunk_store.direct_io:
        # Written with O_DIRECT and dropped: nothing is cached, so the event loop's
        # attempt gives up instead of waiting for the disk.
        cached = chunk_store.read_blocks(chunk_id, offset, length, MAX_READ_BLOCKS_BYTES, True)
        assert cached is None, "a read of uncached pages did not give up with cached_only"

    header, start, blocks = chunk_store.read_blocks(chunk_id, offset, length, MAX_READ_BLOCKS_BYTES)
    assert (start, len(blocks)) == (BLOCK, 3 * BLOCK), f"blocks {start}+{len(blocks)}"
    assert blocks == data[BLOCK : 4 * BLOCK], "read_blocks returned other bytes"
    assert list(header.block_crc32c) == [
        crc32c(data[i : i + BLOCK]) for i in range(0, len(data), BLOCK)
    ], "the header's block CRCs differ from the data's"

    # The thread's read left the header and the blocks in the page cache.
    cached = chunk_store.read_blocks(chunk_id, offset, length, MAX_READ_BLOCKS_BYTES, True)
    assert cached is not None, "a read of pages just read did not come from the page cache"
    assert cached[1:] == (start, blocks), "the cached read returned other blocks"

    # The last block is short, so a read to the end (length 0) stops at the chunk's end.
    _, start, tail = chunk_store.read_blocks(chunk_id, 5 * BLOCK + 1, 0, MAX_READ_BLOCKS_BYTES)
    assert (start, tail) == (5 * BLOCK, data[5 * BLOCK :]), "read of the short last block"


def test_read_blocks_bad_ranges(tmp_path: Path) -> None:
    chunk_store = ChunkStore(tmp_path)
    chunk_id = write_chunk(chunk_store, make_data(CHUNK_DATA_BYTES, seed=1501))

    with pytest.raises(InvalidArgument, match=r"covers 196608; read it with ChunkStream/Read"):
        chunk_store.read_blocks(chunk_id, 10, 2 * BLOCK, 2 * BLOCK)
    with pytest.raises(InvalidArgument, match=rf"offset {CHUNK_DATA_BYTES + 1} is past its end"):
        chunk_store.read_blocks(chunk_id, CHUNK_DATA_BYTES + 1, 1, MAX_READ_BLOCKS_BYTES)
    missing = bytes(len(chunk_id))
    with pytest.raises(ChunkNotFound, match=missing.hex()):
        chunk_store.read_blocks(missing, 0, 1, MAX_READ_BLOCKS_BYTES, True)


def test_read_blocks_tmpfs(tmp_path: Path) -> None:
    """tmpfs rejects RWF_NOWAIT: the event loop's attempt gives way to the thread's read."""
    with mounted_tmpfs(tmp_path / "tmpfs", 8 * CHUNK) as mounted:
        if not mounted:
            pytest.skip("mounting a tmpfs needs root")
        chunk_store = ChunkStore(tmp_path / "tmpfs")
        data = make_data(CHUNK_DATA_BYTES, seed=1504)
        chunk_id = write_chunk(chunk_store, data)
        cached = chunk_store.read_blocks(chunk_id, 0, 10, MAX_READ_BLOCKS_BYTES, True)
        assert cached is None, "a read with RWF_NOWAIT on tmpfs returned data"
        assert not chunk_store.nowait_reads, "tmpfs rejected RWF_NOWAIT but it is still tried"
        _, start, blocks = chunk_store.read_blocks(chunk_id, 0, 10, MAX_READ_BLOCKS_BYTES)
        assert (start, blocks) == (0, data[:BLOCK]), "the thread's read on tmpfs"


@pytest.mark.parametrize(
    ("offset", "length"),
    [
        (0, 1),
        (BLOCK - 1, 2),  # two blocks for two bytes
        (CHUNK - 100, 200),  # across a chunk boundary: two small reads
        (3 * BLOCK + 5, SMALL_READ_BYTES),  # the largest small read, unaligned
        (2 * BLOCK, SMALL_READ_BYTES + 1),  # one byte more: a streamed read
        (CHUNK // 2, CHUNK),  # half a chunk streamed on each side of a boundary
        (0, 3 * CHUNK),  # whole chunks
    ],
)
def test_ranges_both_paths(client: store.Client, bucket: str, offset: int, length: int) -> None:
    """Every range reads back the same bytes, cold from the disk and again warm."""
    data = make_data(3 * CHUNK + 777, seed=1502)
    key = f"paths/{offset}-{length}"
    client.put(bucket, key, data)
    expected = data[offset : offset + length]
    for attempt in ("cold", "warm"):
        got = client.get(bucket, key, offset=offset, length=length)
        assert got == expected, f"{attempt} read of {offset}+{length} returned other bytes"


def test_read_blocks_grpc(cluster: LocalCluster, client: store.Client) -> None:
    """ReadBlocks returns a small range and rejects a large one, naming the method to use."""
    bucket = new_bucket_name("read-blocks")
    client.create_bucket(bucket, scheme="rep:1")
    data = make_data(CHUNK, seed=1503)
    info = client.put(bucket, "one-chunk", data)
    files = upload_chunk_files(cluster, info.version_id)
    [process] = [process for process in cluster.dataservers if files[process.name]]
    chunk_id = bytes.fromhex(files[process.name][0].name)

    async def call(offset: int, length: int) -> tuple[data_pb2.ReadChunkHeader, memoryview]:
        request = data_pb2.ReadChunkRequest(
            chunk_id=chunk_id,
            offset_bytes=offset,
            length_bytes=length,
            dataserver_id=process.server_id,
        )
        async with grpc.aio.insecure_channel(process.address, options=CHANNEL_OPTIONS) as channel:
            reply: tuple[data_pb2.ReadChunkHeader, memoryview]
            reply = await datapath.read_blocks_callable(channel)(request, timeout=10)
            return reply

    reply, reply_data = asyncio.run(call(BLOCK + 1, 10))
    assert (reply.offset_bytes, reply.length_bytes) == (BLOCK, BLOCK), f"reply {reply.offset_bytes}"
    assert reply_data == data[BLOCK : 2 * BLOCK], "ReadBlocks returned other bytes"
    assert reply.data == b"", "the parsed header keeps a copy of the data"
    assert list(reply.block_crc32c) == [crc32c(reply_data)], "ReadBlocks block CRCs"
    assert (reply.chunk_length_bytes, reply.chunk_crc32c) == (CHUNK, crc32c(data))

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        asyncio.run(call(0, CHUNK))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value
    assert "read it with ChunkStream/Read" in (caught.value.details() or "")


def test_slice_pieces_matches_join() -> None:
    pieces = [os.urandom(size) for size in (5, 1, 17, 0, 64, 9)]
    joined = b"".join(pieces)
    for start in range(len(joined) + 1):
        for end in range(start, len(joined) + 1):
            sliced = slice_pieces(pieces, start, end)
            assert b"".join(sliced) == joined[start:end], (start, end)
            assert all(len(piece) > 0 for piece in sliced), (start, end)
    whole = slice_pieces(pieces, 0, len(joined))
    assert all(got is want for got, want in zip(whole, [p for p in pieces if p], strict=True))


def test_split_bytes_field_matches_protobuf() -> None:
    header = data_pb2.ReadChunkHeader(
        offset_bytes=300,
        block_size_bytes=65536,
        length_bytes=2**40,
        block_crc32c=[1, 2**32 - 1],
        chunk_crc32c=7,
    )
    data = os.urandom(1000)
    appended = datapath.with_bytes_field(header.SerializeToString(), datapath.READ_DATA_FIELD, data)
    # The same message as protobuf writes it, with the data field among the others.
    header.data = data
    for message in (appended, header.SerializeToString()):
        rest, view = datapath.split_bytes_field(message, datapath.READ_DATA_FIELD)
        parsed = data_pb2.ReadChunkHeader.FromString(rest)
        assert view == data
        assert parsed.data == b""
        parsed.data = data
        assert parsed == header

    _, view = datapath.split_bytes_field(b"", datapath.READ_DATA_FIELD)
    assert view == b""
    for truncated in (appended[:-1], b"\x08", b"\x08\xff", b"\x0b"):
        with pytest.raises(DecodeError):
            datapath.split_bytes_field(truncated, datapath.READ_DATA_FIELD)
