"""The DataService gRPC servicer: chunk writes, reads and deletes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import grpc.aio

from dataserver.chunkstore import ChunkStore, ChunkWriter
from store._pb import common_pb2 as pb
from store._pb import data_pb2, data_pb2_grpc
from store.errors import InvalidArgument, StoreError
from store.limits import MESSAGE_BYTES
from store.rpc import stream_handler, unary_handler

log = logging.getLogger(__name__)

T = TypeVar("T")


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
    async def WriteChunk(
        self,
        request_iterator: AsyncIterator[data_pb2.WriteChunkRequest],
        context: grpc.aio.ServicerContext,
    ) -> data_pb2.WriteChunkResponse:
        writer: ChunkWriter | None = None
        try:
            async for message in request_iterator:
                if writer is None:
                    writer = await self._begin(message)
                if message.data:
                    await self._run(writer.write, message.data)
            if writer is None:
                raise InvalidArgument("WriteChunk stream carried no header")
            await self._run(writer.finish)
        except BaseException as exc:
            if writer is not None:
                writer.abort()
                if isinstance(exc, StoreError):
                    log.warning(
                        "chunk write failed chunk=%s upload=%s: %s",
                        writer.header.chunk_id.hex(),
                        writer.header.upload_id,
                        exc,
                    )
                else:
                    log.info(
                        "chunk write abandoned chunk=%s: %r", writer.header.chunk_id.hex(), exc
                    )
            raise
        self.chunks_written += 1
        return data_pb2.WriteChunkResponse(
            dataserver_id=self.dataserver_id, length_bytes=writer.length_bytes
        )

    async def _begin(self, message: data_pb2.WriteChunkRequest) -> ChunkWriter:
        if not message.HasField("header"):
            raise InvalidArgument("the first WriteChunk message must carry the chunk header")
        self._check_target(message.dataserver_id)
        header = pb.ChunkFileHeader()
        header.CopyFrom(message.header)
        header.created_unix_ns = time.time_ns()
        return await self._run(self.store.begin_write, header)

    @stream_handler
    async def ReadChunk(
        self, request: data_pb2.ReadChunkRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[data_pb2.ReadChunkResponse]:
        self._check_target(request.dataserver_id)
        chunk = await self._run(self.store.open_chunk, request.chunk_id)
        try:
            header = chunk.header
            length = header.length_bytes
            start = request.offset_bytes
            if start > length:
                raise InvalidArgument(
                    f"chunk {request.chunk_id.hex()}: offset {start} is past its end "
                    f"({length} bytes)"
                )
            end = length if request.length_bytes == 0 else min(start + request.length_bytes, length)
            block = header.block_size_bytes
            position = start // block * block
            aligned_end = min((end + block - 1) // block * block, length)
            # Messages hold whole blocks so the reader can verify each one.
            message_bytes = max(MESSAGE_BYTES // block, 1) * block
            while position < aligned_end:
                size = min(message_bytes, aligned_end - position)
                data = await self._run(self.store.read_blocks, chunk, position, size)
                first_block = position // block
                block_count = (size + block - 1) // block
                yield data_pb2.ReadChunkResponse(
                    offset_bytes=position,
                    data=data,
                    block_size_bytes=block,
                    block_crc32c=header.block_crc32c[first_block : first_block + block_count],
                    chunk_length_bytes=length,
                )
                position += size
        finally:
            chunk.close()
        self.chunks_read += 1

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
    async def GetStatus(
        self, request: data_pb2.DataserverStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.DataserverInfo:
        return await self._run(self.info)

    def info(self) -> pb.DataserverInfo:
        """Return this dataserver's identity and current disk usage."""
        usage = self.store.usage()
        return pb.DataserverInfo(
            id=self.dataserver_id,
            address=self.address,
            state=pb.DATASERVER_STATE_UP,
            capacity_bytes=usage.capacity_bytes,
            free_bytes=usage.free_bytes,
            used_bytes=usage.used_bytes,
            chunk_count=usage.chunk_count,
            domain=self.domain,
        )

    def close(self) -> None:
        self._executor.shutdown(wait=True)
