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
from store.checksum import Buffer, crc32c
from store.clustermap import ClusterView
from store.connection import Connection, Deadline
from store.datapath import MAX_STREAMED_WRITE_BYTES, WholeChunk
from store.digests import Digests
from store.erasure import codec
from store.errors import ChecksumMismatch, ResourceExhausted, StoreError, Unavailable
from store.layout import chunk_id
from store.limits import MESSAGE_BYTES
from store.names import display_key
from store.placement import (
    domains_of,
    eligible_dataservers,
    interleave_domains,
    rank_dataservers,
    replacement_target,
    shares_domain,
    stripe_targets,
)
from store.rpc import error_from_rpc
from store.scheme import Scheme
from store.sources import Source

log = logging.getLogger(__name__)

# Stripes of this size and up are coded in a worker thread. Coding 1 MiB takes
# about 0.2 ms, a few times what the hop to the thread costs the event loop.
CODE_IN_THREAD_BYTES = 1 << 20


@dataclass(slots=True)
class UploadResult:
    layout: pb.Layout
    size_bytes: int
    # Chunks left on dataservers that failed while they were being written.
    abandoned: list[pb.ChunkRef]


def chunk_etag(layout: pb.Layout) -> str:
    """Return an ETag derived from the chunks' CRC32Cs, for objects written without MD5.

    It is not an MD5 of the content, and its "-N" suffix says so to S3 clients, as
    a multipart ETag does.
    """
    crcs = b"".join(
        chunk.crc32c.to_bytes(4, "big") for stripe in layout.stripes for chunk in stripe.chunks[:1]
    )
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
        scheme: Scheme,
        window: int,
        chunk_timeout_s: float,
        digests: Digests,
    ) -> None:
        assert window > 0
        assert chunk_size_bytes > 0
        self.connection = connection
        self.view = view
        self.bucket = bucket
        self.key = key
        self.upload_id = upload_id
        self.chunk_size_bytes = chunk_size_bytes
        self.scheme = scheme
        self.stripe_bytes = scheme.stripe_bytes(chunk_size_bytes)
        # `window` counts chunks of data, and an erasure-coded stripe contains K of them.
        self.window = max(window // scheme.data_chunks, 1)
        self.chunk_timeout_s = chunk_timeout_s
        # Fed with every byte in order, from a worker thread.
        self.digests = digests
        self.domains = domains_of(view.map)
        self.abandoned: list[pb.ChunkRef] = []
        # Dataservers that failed a chunk write of this upload; later stripes avoid them.
        self.failed: set[str] = set()
        # Whether every failed write found a full disk, so running out of targets is
        # ResourceExhausted and not Unavailable.
        self.only_disks_full = True
        self.ranking = interleave_domains(
            rank_dataservers(eligible_dataservers(view.map, chunk_size_bytes), upload_id),
            self.domains,
        )
        # Fail before sending anything when too few dataservers are up.
        stripe_targets(self.ranking, 0, scheme.width, self.domains)

    def _name(self) -> str:
        return f"{self.bucket}/{display_key(self.key)}"

    async def write(
        self, source: Source, first: bytes | memoryview, deadline: Deadline
    ) -> UploadResult:
        """Write `first` and the rest of `source` as stripes and return the layout."""
        layout = pb.Layout(chunk_size_bytes=self.chunk_size_bytes)
        self.scheme.fill(layout)
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
        layout.shared_domains = any(
            shares_domain([chunk.target for chunk in stripe.chunks], self.domains)
            for stripe in layout.stripes
        )
        return UploadResult(layout, offset, self.abandoned)

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
            if len(data) < self.stripe_bytes:
                return
            index += 1
            data = await source.read_exact(self.stripe_bytes)

    async def _encoded(
        self, index: int, data: bytes | memoryview
    ) -> list[tuple[bytes, Buffer, int]]:
        """Return (chunk id, bytes, CRC32C) for each position of a stripe.

        A large stripe is coded and checksummed in a worker thread: ISA-L and
        awscrt release the GIL, so the event loop goes on meanwhile.
        """
        if len(data) < CODE_IN_THREAD_BYTES:
            return self._encode(index, data)
        return await asyncio.to_thread(self._encode, index, data)

    def _encode(self, index: int, data: bytes | memoryview) -> list[tuple[bytes, Buffer, int]]:
        if not self.scheme.erasure_coded:
            # Identical copies share their bytes and checksum.
            return [(chunk_id(self.upload_id, index), data, crc32c(data))] * self.scheme.width
        coder = codec(self.scheme.data_chunks, self.scheme.parity_chunks)
        return [
            (chunk_id(self.upload_id, index, position), chunk, crc32c(chunk))
            for position, chunk in enumerate(coder.encode(data))
        ]

    async def _write_stripe(
        self,
        index: int,
        data: bytes | memoryview,
        stripe: pb.Stripe,
        slots: asyncio.Semaphore,
        deadline: Deadline,
    ) -> None:
        try:
            encoded = await self._encoded(index, data)
            targets = self._targets(index)
            writes = []
            messages: dict[bytes, list[Buffer]] = {}
            for target, (chunk, content, checksum) in zip(targets, encoded, strict=True):
                if chunk not in messages:
                    messages[chunk] = chunk_messages(content)
                ref = stripe.chunks.add(
                    chunk_id=chunk, target=target, length_bytes=len(content), crc32c=checksum
                )
                header = pb.ChunkFileHeader(
                    chunk_id=chunk,
                    upload_id=self.upload_id,
                    bucket=self.bucket,
                    key=self.key,
                    stripe_index=index,
                    length_bytes=len(content),
                    crc32c=checksum,
                )
                writes.append(self._place_chunk(stripe, ref, header, messages[chunk], deadline))
            await asyncio.gather(*writes)
        finally:
            slots.release()

    def _targets(self, index: int) -> list[str]:
        ranking = [server for server in self.ranking if server not in self.failed]
        try:
            return stripe_targets(ranking, index, self.scheme.width, self.domains)
        except Unavailable as error:
            if not self.failed:
                raise
            kind = ResourceExhausted if self.only_disks_full else Unavailable
            cause = " because their disks are full" if self.only_disks_full else ""
            raise kind(
                f"{error}; dataservers {', '.join(sorted(self.failed))} failed writes of "
                f"{self._name()} (upload {self.upload_id}){cause}, so it was not stored"
            ) from None

    async def _place_chunk(
        self,
        stripe: pb.Stripe,
        ref: pb.ChunkRef,
        header: pb.ChunkFileHeader,
        messages: list[Buffer],
        deadline: Deadline,
    ) -> None:
        """Write one chunk to its target, or to a replacement when the target fails.

        A target that fails is left out of this upload's later stripes. When no
        replacement is left, the chunk is retried on its own target while it may be
        restarting, and the put fails if that does not succeed.
        """
        while True:
            others = [chunk.target for chunk in stripe.chunks if chunk is not ref]
            replacement = replacement_target(
                self.ranking, header.stripe_index, others, {*self.failed, ref.target}, self.domains
            )
            try:
                await self._write_chunk(
                    ref.target, header, messages, deadline, retry=replacement is None
                )
                return
            except (Unavailable, ResourceExhausted, ChecksumMismatch) as error:
                self.failed.add(ref.target)
                if not isinstance(error, ResourceExhausted):
                    self.only_disks_full = False
                # Other chunks of the stripe may have moved while this one was written.
                others = [chunk.target for chunk in stripe.chunks if chunk is not ref]
                replacement = replacement_target(
                    self.ranking, header.stripe_index, others, self.failed, self.domains
                )
                if replacement is None:
                    raise type(error)(
                        f"{error}; no other dataserver can take chunk {header.chunk_id.hex()} "
                        f"of {self.scheme} (failed: {', '.join(sorted(self.failed))}), so "
                        f"{self._name()} was not stored"
                    ) from None
                log.warning(
                    "chunk write moved upload=%s chunk=%s from dataserver=%s to %s: %s",
                    self.upload_id,
                    header.chunk_id.hex(),
                    ref.target,
                    replacement,
                    error,
                )
                abandoned = pb.ChunkRef()
                abandoned.CopyFrom(ref)
                self.abandoned.append(abandoned)
                ref.target = replacement
                deadline.remaining_s()

    async def _write_chunk(
        self,
        target: str,
        header: pb.ChunkFileHeader,
        messages: list[Buffer],
        deadline: Deadline,
        retry: bool,
    ) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await write_chunk(
                    self.connection,
                    self.view,
                    target,
                    header,
                    messages,
                    deadline.remaining_s(self.chunk_timeout_s),
                )
                return
            except StoreError as failure:
                error = failure
            log.warning(
                "chunk write failed upload=%s attempt=%d: %s", self.upload_id, attempt, error
            )
            # Rewriting a chunk is safe: the dataserver replaces the file atomically.
            if not retry or not await self.connection.should_retry(
                [error], [target], attempt, deadline
            ):
                raise error
            self.view = await self.connection.cluster_view(deadline)


async def write_chunk(
    connection: Connection,
    view: ClusterView,
    target: str,
    header: pb.ChunkFileHeader,
    messages: list[Buffer],
    timeout_s: float | None,
) -> None:
    """Send one chunk to a dataserver once; raise StoreError unless it is durable there."""
    address = view.dataserver_address(target)
    first = data_pb2.WriteChunkHeader(chunk=header, dataserver_id=target).SerializeToString()
    try:
        if header.length_bytes <= MAX_STREAMED_WRITE_BYTES:
            # chunk_messages returns one view, or none for an empty chunk.
            data = messages[0] if messages else b""
            chunk = WholeChunk(first, data)
            await connection.channels.whole_chunk_writer(address)(chunk, timeout=timeout_s)
        else:
            await connection.channels.chunk_writer(address)(
                iter([first, *messages]), timeout=timeout_s
            )
    except grpc.RpcError as exc:
        raise error_from_rpc(
            exc,
            f"writing chunk {header.chunk_id.hex()} (stripe {header.stripe_index}) of "
            f"{header.bucket}/{display_key(header.key)} to dataserver {target} at {address}",
        ) from None


def chunk_messages(content: Buffer) -> list[Buffer]:
    """Split chunk bytes into the data messages of a ChunkStream write.

    A chunk that goes in one streamed call stays a view, because the call's
    serializer copies it into the request. gRPC needs bytes for the others.
    """
    view = memoryview(content)
    if len(view) <= MAX_STREAMED_WRITE_BYTES:
        return [view]
    return [
        bytes(view[start : start + MESSAGE_BYTES]) for start in range(0, len(view), MESSAGE_BYTES)
    ]


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
