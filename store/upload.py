"""The write path of chunked objects: stripes streamed to dataservers in a bounded window.

1. The caller has opened an upload at the key's shard (upload id, chunk size).
2. Each stripe's chunk goes to its targets, computed by placement from the
   cluster map; at most `window` stripes are in flight, so memory stays
   bounded for inputs of any length.
3. A dataserver acknowledges a chunk only once it is durable, and the
   caller commits only after every chunk was acknowledged. Any failure
   fails the whole put; nothing is committed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from store._pb import common_pb2 as pb
from store._pb import data_pb2
from store.checksum import crc32c
from store.clustermap import ClusterView
from store.connection import Connection, Deadline
from store.digests import Digests
from store.errors import StoreError
from store.layout import chunk_id
from store.limits import MESSAGE_BYTES
from store.names import display_key
from store.placement import eligible_dataservers, rank_dataservers, stripe_targets
from store.rpc import error_from_rpc
from store.sources import Source

log = logging.getLogger(__name__)


@dataclass(slots=True)
class UploadResult:
    layout: pb.Layout
    size_bytes: int


def chunk_etag(layout: pb.Layout) -> str:
    """Return an ETag derived from the chunks' CRC32Cs, for objects written without MD5.

    It is not an MD5 of the content, and its "-N" suffix says so to S3 clients, as
    a multipart ETag does.
    """
    crcs = b"".join(stripe.chunks[0].crc32c.to_bytes(4, "big") for stripe in layout.stripes)
    return f"{hashlib.md5(crcs).hexdigest()}-{len(layout.stripes)}"


class Upload:
    """Writes the stripes of one upload and builds its layout."""

    def __init__(
        self,
        connection: Connection,
        view: ClusterView,
        bucket: str,
        key: bytes,
        upload_id: str,
        chunk_size_bytes: int,
        replicas: int,
        window: int,
        chunk_timeout_s: float,
        digests: Digests,
    ) -> None:
        assert window > 0 and chunk_size_bytes > 0 and replicas > 0
        self.connection = connection
        self.view = view
        self.bucket = bucket
        self.key = key
        self.upload_id = upload_id
        self.chunk_size_bytes = chunk_size_bytes
        self.replicas = replicas
        self.window = window
        self.chunk_timeout_s = chunk_timeout_s
        # Fed with every byte in order, from a worker thread.
        self.digests = digests
        self.ranking = rank_dataservers(eligible_dataservers(view.map, chunk_size_bytes), upload_id)
        # Fail before sending anything when too few dataservers are up.
        stripe_targets(self.ranking, 0, replicas)

    def _name(self) -> str:
        return f"{self.bucket}/{display_key(self.key)}"

    async def write(
        self, source: Source, first: bytes | memoryview, deadline: Deadline
    ) -> UploadResult:
        """Write `first` and the rest of `source` as stripes and return the layout."""
        layout = pb.Layout(chunk_size_bytes=self.chunk_size_bytes, replicas=self.replicas)
        slots = asyncio.Semaphore(self.window)
        offset = 0
        try:
            async with asyncio.TaskGroup() as tasks:
                async for index, data in self._stripes(source, first, slots):
                    stripe = layout.stripes.add(offset_bytes=offset, length_bytes=len(data))
                    offset += len(data)
                    tasks.create_task(self._write_stripe(index, data, stripe, slots, deadline))
        except BaseExceptionGroup as group:
            raise _first_store_error(group) from None
        return UploadResult(layout, offset)

    async def _stripes(
        self, source: Source, first: bytes | memoryview, slots: asyncio.Semaphore
    ) -> AsyncIterator[tuple[int, bytes | memoryview]]:
        index = 0
        data = first
        while data:
            await slots.acquire()
            if self.digests.wanted:
                await asyncio.to_thread(self.digests.update, data)
            yield index, data
            if len(data) < self.chunk_size_bytes:
                return
            index += 1
            data = await source.read_exact(self.chunk_size_bytes)

    async def _write_stripe(
        self,
        index: int,
        data: bytes | memoryview,
        stripe: pb.Stripe,
        slots: asyncio.Semaphore,
        deadline: Deadline,
    ) -> None:
        try:
            checksum = crc32c(data)
            targets = stripe_targets(self.ranking, index, self.replicas)
            chunk = chunk_id(self.upload_id, index)
            for target in targets:
                stripe.chunks.add(
                    chunk_id=chunk, target=target, length_bytes=len(data), crc32c=checksum
                )
            header = pb.ChunkFileHeader(
                chunk_id=chunk,
                upload_id=self.upload_id,
                bucket=self.bucket,
                key=self.key,
                stripe_index=index,
                length_bytes=len(data),
                crc32c=checksum,
            )
            view = memoryview(data)
            messages = [
                bytes(view[start : start + MESSAGE_BYTES])
                for start in range(0, len(view), MESSAGE_BYTES)
            ]
            await asyncio.gather(
                *(self._write_chunk(target, header, messages, deadline) for target in targets)
            )
        finally:
            slots.release()

    async def _write_chunk(
        self,
        target: str,
        header: pb.ChunkFileHeader,
        messages: list[bytes],
        deadline: Deadline,
    ) -> None:
        first = data_pb2.WriteChunkHeader(chunk=header, dataserver_id=target).SerializeToString()
        attempt = 0
        while True:
            attempt += 1
            address = self.view.dataserver_address(target)
            try:
                await self.connection.channels.chunk_writer(address)(
                    iter([first, *messages]),
                    timeout=deadline.remaining_s(self.chunk_timeout_s),
                )
                return
            except grpc.RpcError as exc:
                error = error_from_rpc(
                    exc,
                    f"writing chunk {header.chunk_id.hex()} (stripe {header.stripe_index}) of "
                    f"{self._name()} to dataserver {target} at {address}",
                )
            log.warning(
                "chunk write failed upload=%s attempt=%d: %s", self.upload_id, attempt, error
            )
            # Rewriting a chunk is safe: the dataserver replaces the file atomically.
            if not await self.connection.should_retry([error], [target], attempt, deadline):
                raise error
            self.view = await self.connection.cluster_view(deadline)


def _first_store_error(group: BaseExceptionGroup) -> BaseException:
    """Pick the error to raise from a failed TaskGroup: the first StoreError, else the first."""
    store_errors = group.subgroup(StoreError)
    if store_errors is not None:
        leaf: BaseException = store_errors
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        return leaf
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first
