"""The DataService gRPC servicer: chunk writes, reads, deletes and stats."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import grpc.aio
from google.protobuf.message import DecodeError

from dataserver.chunkstore import ChunkStore, aligned_range
from dataserver.scrub import Scrubber
from store._pb import common_pb2 as pb
from store._pb import data_pb2, data_pb2_grpc
from store.checksum import Buffer
from store.datapath import READ_DATA_FIELD, WholeChunkRequest, with_bytes_field
from store.errors import ChecksumMismatch, ChunkNotFound, InvalidArgument, StoreError
from store.layout import CHUNK_ID_BYTES
from store.limits import CHECKSUM_BLOCK_BYTES, MESSAGE_BYTES, SMALL_READ_BYTES
from store.rpc import stream_handler, unary_handler

log = logging.getLogger(__name__)

# Data read from disk per worker-thread call; bounds the memory of one read stream.
READ_BATCH_BYTES = 8 * MESSAGE_BYTES
# Blocks one ChunkStream/ReadBlocks reply carries at most: a read of up to
# SMALL_READ_BYTES plus the partial blocks at both of its ends.
MAX_READ_BLOCKS_BYTES = SMALL_READ_BYTES + 2 * CHECKSUM_BLOCK_BYTES
# Chunk ids per StatChunks request; each costs one open and a 4 KiB header read.
MAX_STAT_CHUNK_IDS = 10_000

T = TypeVar("T")


def _reply_header(header: pb.ChunkFileHeader, start: int, end: int) -> data_pb2.ReadChunkHeader:
    """Build the header of a read reply carrying the blocks [start, end) of a chunk."""
    block = header.block_size_bytes
    first_block = start // block
    block_count = (end - start + block - 1) // block
    return data_pb2.ReadChunkHeader(
        offset_bytes=start,
        length_bytes=end - start,
        block_size_bytes=block,
        block_crc32c=header.block_crc32c[first_block : first_block + block_count],
        chunk_length_bytes=header.length_bytes,
        chunk_crc32c=header.crc32c,
    )


class DataService(data_pb2_grpc.DataServiceServicer):
    def __init__(self, store: ChunkStore, dataserver_id: str, address: str, domain: str) -> None:
        self.store = store
        self.dataserver_id = dataserver_id
        self.address = address
        self.domain = domain
        # Disk I/O runs here so the event loop keeps serving other streams.
        self._executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="chunk-io")
        self.chunks_written = 0
        self.chunks_read = 0
        # Set by main when scrub is enabled; its totals go out with every heartbeat.
        self.scrubber: Scrubber | None = None

    async def _run(self, function: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    def _check_target(self, dataserver_id: str) -> None:
        if dataserver_id and dataserver_id != self.dataserver_id:
            raise InvalidArgument(
                f"request for dataserver {dataserver_id} reached dataserver {self.dataserver_id} "
                f"at {self.address}; refresh the cluster map"
            )

    @unary_handler
    async def write(
        self, messages: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> data_pb2.WriteChunkResponse:
        """ChunkStream/Write: a WriteChunkHeader, then raw data messages."""
        header: pb.ChunkFileHeader | None = None
        parts: list[bytes] = []
        received_bytes = 0
        async for message in messages:
            if header is None:
                header = self._parse_write_header(message)
                continue
            received_bytes += len(message)
            if received_bytes > header.length_bytes:
                raise InvalidArgument(
                    f"chunk {header.chunk_id.hex()}: received more than the declared "
                    f"{header.length_bytes} bytes"
                )
            parts.append(message)
        if header is None:
            raise InvalidArgument("ChunkStream/Write carried no header")
        return await self._store_chunk(header, parts)

    @unary_handler
    async def write_whole(
        self, request: WholeChunkRequest, context: grpc.aio.ServicerContext
    ) -> data_pb2.WriteChunkResponse:
        """ChunkStreamCalls/Write: a WriteChunkHeader whose data field contains the whole chunk."""
        message, data = request
        header = self._accept_header(message)
        if len(data) != header.length_bytes:
            raise InvalidArgument(
                f"chunk {header.chunk_id.hex()}: the request carries {len(data)} bytes "
                f"of data, not the declared {header.length_bytes}"
            )
        return await self._store_chunk(header, [data])

    async def _store_chunk(
        self, header: pb.ChunkFileHeader, parts: Sequence[Buffer]
    ) -> data_pb2.WriteChunkResponse:
        try:
            await self._run(self.store.write_chunk, header, parts)
        except StoreError as error:
            log.warning(
                "chunk write failed chunk=%s upload=%s: %s",
                header.chunk_id.hex(),
                header.upload_id,
                error,
            )
            raise
        self.chunks_written += 1
        return data_pb2.WriteChunkResponse(
            dataserver_id=self.dataserver_id, length_bytes=header.length_bytes
        )

    def _parse_write_header(self, message: bytes) -> pb.ChunkFileHeader:
        try:
            request = data_pb2.WriteChunkHeader.FromString(message)
        except DecodeError:
            raise InvalidArgument("the first ChunkStream/Write message is not a header") from None
        return self._accept_header(request)

    def _accept_header(self, request: data_pb2.WriteChunkHeader) -> pb.ChunkFileHeader:
        self._check_target(request.dataserver_id)
        header = request.chunk
        header.created_unix_ns = time.time_ns()
        return header

    @stream_handler
    async def read(
        self, request: data_pb2.ReadChunkRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        """ChunkStream/Read: a ReadChunkHeader, then raw data of whole blocks."""
        self._check_target(request.dataserver_id)
        chunk = await self._run(self.store.open_chunk, request.chunk_id)
        try:
            start, end = aligned_range(chunk.header, request.offset_bytes, request.length_bytes)
            yield _reply_header(chunk.header, start, end).SerializeToString()
            block = chunk.header.block_size_bytes
            message_bytes = max(MESSAGE_BYTES // block, 1) * block
            for batch_start in range(start, end, READ_BATCH_BYTES):
                batch_end = min(batch_start + READ_BATCH_BYTES, end)
                pieces = await self._run(
                    self.store.read_pieces,
                    chunk,
                    batch_start,
                    batch_end - batch_start,
                    message_bytes,
                )
                for piece in pieces:
                    yield piece
        finally:
            chunk.close()
        self.chunks_read += 1

    @unary_handler
    async def read_blocks(
        self, request: data_pb2.ReadChunkRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        """ChunkStream/ReadBlocks: a ReadChunkHeader carrying the blocks in its data field.

        Blocks that are all in the page cache are read on the event loop, because
        that costs less than the hop to a worker thread. Otherwise a thread reads them.
        """
        self._check_target(request.dataserver_id)
        arguments = (
            request.chunk_id,
            request.offset_bytes,
            request.length_bytes,
            MAX_READ_BLOCKS_BYTES,
        )
        result = self.store.read_blocks(*arguments, cached_only=True)
        if result is None:
            result = await self._run(self.store.read_blocks, *arguments)
            assert result is not None
        header, start, data = result
        reply = _reply_header(header, start, start + len(data)).SerializeToString()
        self.chunks_read += 1
        return with_bytes_field(reply, READ_DATA_FIELD, data)

    @unary_handler
    async def DeleteChunks(
        self, request: data_pb2.DeleteChunksRequest, context: grpc.aio.ServicerContext
    ) -> data_pb2.DeleteChunksResponse:
        chunk_ids = list(request.chunk_ids)
        upload_ids = list(request.upload_ids)
        deleted, missing = await self._run(self._delete, chunk_ids, upload_ids)
        log.info(
            "deleted chunks=%d missing=%d uploads=%s", deleted, missing, ",".join(upload_ids) or "-"
        )
        return data_pb2.DeleteChunksResponse(deleted=deleted, missing=missing)

    def _delete(self, chunk_ids: list[bytes], upload_ids: list[str]) -> tuple[int, int]:
        deleted = missing = 0
        for chunk_id in chunk_ids:
            if self.store.delete(chunk_id):
                deleted += 1
            else:
                missing += 1
        self.store.sync_deletes(chunk_ids)
        for upload_id in upload_ids:
            deleted += self.store.delete_upload(upload_id)
        return deleted, missing

    @unary_handler
    async def StatChunks(
        self, request: data_pb2.StatChunksRequest, context: grpc.aio.ServicerContext
    ) -> data_pb2.StatChunksResponse:
        """Report whether each chunk exists, with its length and CRC32C from the header."""
        chunk_ids = list(request.chunk_ids)
        if len(chunk_ids) > MAX_STAT_CHUNK_IDS:
            raise InvalidArgument(
                f"StatChunks got {len(chunk_ids)} chunk ids, more than the maximum of "
                f"{MAX_STAT_CHUNK_IDS} per request; split the ids over several requests"
            )
        for index, chunk_id in enumerate(chunk_ids):
            if len(chunk_id) != CHUNK_ID_BYTES:
                raise InvalidArgument(
                    f"StatChunks chunk id {index} ({chunk_id[:64].hex() or 'empty'}) has "
                    f"{len(chunk_id)} bytes, expected {CHUNK_ID_BYTES}"
                )
        stats = await self._run(self._stat, chunk_ids)
        return data_pb2.StatChunksResponse(chunks=stats)

    def _stat(self, chunk_ids: list[bytes]) -> list[data_pb2.ChunkStat]:
        """Read each chunk's header without its data.

        A chunk whose header fails its checksum counts as absent, because readers
        get ChecksumMismatch from it, so for repair it is as good as lost.
        """
        stats = []
        for chunk_id in chunk_ids:
            try:
                header = self.store.read_header(chunk_id)
            except ChunkNotFound:
                stats.append(data_pb2.ChunkStat(chunk_id=chunk_id, exists=False))
                continue
            except ChecksumMismatch as error:
                log.warning(
                    "StatChunks found an unreadable header chunk=%s: %s", chunk_id.hex(), error
                )
                stats.append(data_pb2.ChunkStat(chunk_id=chunk_id, exists=False))
                continue
            stats.append(
                data_pb2.ChunkStat(
                    chunk_id=chunk_id,
                    exists=True,
                    length_bytes=header.length_bytes,
                    crc32c=header.crc32c,
                )
            )
        assert len(stats) == len(chunk_ids)
        return stats

    @unary_handler
    async def GetStatus(
        self, request: data_pb2.DataserverStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.DataserverInfo:
        return await self._run(self.info)

    def info(self) -> pb.DataserverInfo:
        """Return this dataserver's identity, current disk usage and scrub progress."""
        usage = self.store.usage()
        info = pb.DataserverInfo(
            id=self.dataserver_id,
            address=self.address,
            state=pb.DATASERVER_STATE_UP,
            capacity_bytes=usage.capacity_bytes,
            free_bytes=usage.free_bytes,
            used_bytes=usage.used_bytes,
            chunk_count=usage.chunk_count,
            domain=self.domain,
        )
        if self.scrubber is not None:
            self.scrubber.fill_info(info)
        return info

    def close(self) -> None:
        self._executor.shutdown(wait=True)
