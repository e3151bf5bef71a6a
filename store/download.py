"""The read path: verified chunk reads, run in parallel in a bounded window.

A replicated stripe is read from the first of its copies that responds; a
copy that is down, missing or corrupt is skipped and the next one tried. An
erasure-coded stripe is read from the data chunks that hold the range; when
one of them is down, missing or corrupt, the same byte range is read from K
other chunks of the stripe and the lost bytes are decoded (a degraded read).
Every chunk that failed is remembered in `bad_chunks` for repair.

Every byte passes a CRC32C check before it is returned: per 64 KiB block as
it arrives, and against the chunk's CRC32C in the layout too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError

from store._pb import common_pb2 as pb
from store._pb import data_pb2, meta_pb2
from store.checksum import Buffer, verify_blocks
from store.clustermap import ClusterView
from store.connection import Connection, Deadline
from store.erasure import codec
from store.errors import ChecksumMismatch, InternalError, NotFound, StoreError, Unavailable
from store.layout import ChunkSpan, StripeSlice, data_spans, stripes_for_range
from store.limits import SMALL_READ_BYTES
from store.names import display_key
from store.rpc import error_from_rpc
from store.scheme import Scheme, of_layout

log = logging.getLogger(__name__)

MAX_BAD_CHUNKS = 1000
REPORT_TIMEOUT_S = 10.0
# Seconds a dataserver that failed a read is skipped by reads of coded stripes.
SHUN_S = 2.0


@dataclass(slots=True)
class ReadTarget:
    """The object a read targets: bucket, key and record."""

    bucket: str
    key: bytes
    record: pb.ObjectRecord

    def name(self) -> str:
        return f"{self.bucket}/{display_key(self.key)}"


class Reader:
    def __init__(self, connection: Connection, window: int, chunk_timeout_s: float) -> None:
        assert window > 0
        self.connection = connection
        self.window = window
        self.chunk_timeout_s = chunk_timeout_s
        # The most recent corrupt chunks seen: (chunk id, dataserver id, error).
        self.bad_chunks: deque[tuple[bytes, str, str]] = deque(maxlen=MAX_BAD_CHUNKS)
        # Dataservers that just failed a read, with the monotonic time until which reads
        # of coded stripes skip them.
        self._shunned: dict[str, float] = {}
        # Reports to the metaserver still being sent, kept so they are not collected.
        self._reports: set[asyncio.Task[None]] = set()

    def window_for(self, layout: pb.Layout) -> int:
        """Return how many stripes to read at once, since a coded stripe spans K chunks."""
        return max(self.window // max(layout.data_chunks, 1), 1)

    async def read_slice(
        self,
        target: ReadTarget,
        piece: StripeSlice,
        deadline: Deadline,
        out: memoryview | None = None,
    ) -> list[Buffer]:
        """Return the bytes of one stripe slice.

        With `out` (exactly the slice's length), the bytes are copied there as they
        arrive and the returned list is empty.
        """
        protection = of_layout(target.record.layout)
        if not protection.erasure_coded:
            return await self._read_copies(target, piece, deadline, out)
        attempt = 0
        # Too few chunks reachable: retried while the map shows one of their dataservers
        # up, since a restarted dataserver needs a moment before clients reconnect.
        while True:
            attempt += 1
            try:
                return await self._read_coded(target, piece, protection, deadline, out)
            except Unavailable as error:
                targets = [chunk.target for chunk in piece.stripe.chunks]
                if not await self.connection.should_retry([error], targets, attempt, deadline):
                    raise
                for server in targets:
                    self._shunned.pop(server, None)

    async def _read_coded(
        self,
        target: ReadTarget,
        piece: StripeSlice,
        protection: Scheme,
        deadline: Deadline,
        out: memoryview | None,
    ) -> list[Buffer]:
        """Read the data chunks a slice covers in parallel, decoding any that fail."""
        view = await self.connection.cluster_view(deadline)
        if any(chunk.target not in view.dataservers for chunk in piece.stripe.chunks):
            # Repair or a rebalance moved a chunk to a dataserver newer than the cached map.
            view = await self.connection.refresh_map(deadline)
        spans = data_spans(piece, protection.data_chunks)
        regions = [
            None if out is None else out[s.slice_offset_bytes :][: s.end_bytes - s.start_bytes]
            for s in spans
        ]
        failures: dict[int, StoreError] = {}
        # Data chunks known to be unreachable are replaced by parity chunks read at once.
        skipped = [s for s in spans if not self._usable(view, piece.stripe.chunks[s.position])]
        parity = self._parity_reads(view, target, piece, protection, skipped, deadline)

        async def healthy(span: ChunkSpan, region: memoryview | None) -> list[Buffer] | None:
            chunk = piece.stripe.chunks[span.position]
            if span in skipped:
                failures[span.position] = Unavailable(
                    f"dataserver {chunk.target} is down, out or failed a read just now"
                )
                return None
            local = StripeSlice(piece.stripe_index, piece.stripe, span.start_bytes, span.end_bytes)
            try:
                return await self.read_chunk(view, target, local, chunk, deadline, region)
            except (Unavailable, NotFound, ChecksumMismatch) as error:
                self._note_failure(target, piece, chunk, error)
                failures[span.position] = error
                return None

        reads = asyncio.gather(*(healthy(s, r) for s, r in zip(spans, regions, strict=True)))
        data_results, parity_results = await asyncio.gather(reads, parity)
        results = list(data_results)
        for index, span in enumerate(spans):
            if results[index] is not None:
                continue
            # The other data chunks read above hold this range too, when they cover it.
            known = {
                other.position: _span_bytes(results[i], regions[i])[
                    span.start_bytes - other.start_bytes : span.end_bytes - other.start_bytes
                ]
                for i, other in enumerate(spans)
                if results[i] is not None
                and other.start_bytes <= span.start_bytes
                and other.end_bytes >= span.end_bytes
            }
            for position, (start, data) in parity_results.items():
                if start <= span.start_bytes and start + len(data) >= span.end_bytes:
                    known[position] = data[span.start_bytes - start : span.end_bytes - start]
            local = StripeSlice(piece.stripe_index, piece.stripe, span.start_bytes, span.end_bytes)
            failed = {span.position: failures[span.position]}
            failed.update((p, e) for p, e in failures.items() if p != span.position)
            data = await self._decode_span(view, target, local, protection, failed, deadline, known)
            region = regions[index]
            if region is None:
                results[index] = [data]
            else:
                region[:] = data
                results[index] = []
        return [part for parts in results if parts is not None for part in parts]

    def _usable(self, view: ClusterView, chunk: pb.ChunkRef) -> bool:
        """Return whether to try a chunk: its dataserver is up or suspect and did not just fail."""
        shunned_until_s = self._shunned.get(chunk.target)
        if shunned_until_s is not None and shunned_until_s > time.monotonic():
            return False
        return view.is_readable(chunk.target)

    async def _parity_reads(
        self,
        view: ClusterView,
        target: ReadTarget,
        piece: StripeSlice,
        protection: Scheme,
        skipped: list[ChunkSpan],
        deadline: Deadline,
    ) -> dict[int, tuple[int, bytes]]:
        """Read one parity chunk per skipped data chunk, over the range the skipped ones cover.

        Returns {position: (start offset in the chunk, bytes)} for the reads that worked.
        """
        if not skipped:
            return {}
        stripe = piece.stripe
        start = min(span.start_bytes for span in skipped)
        end = max(span.end_bytes for span in skipped)
        positions = range(protection.data_chunks, len(stripe.chunks))
        usable = [p for p in positions if self._usable(view, stripe.chunks[p])]
        usable.sort(key=lambda p: view.read_rank(stripe.chunks[p].target))
        local = StripeSlice(piece.stripe_index, stripe, start, end)

        async def one(position: int) -> tuple[int, bytes] | None:
            chunk = stripe.chunks[position]
            try:
                parts = await self.read_chunk(view, target, local, chunk, deadline, None)
            except (Unavailable, NotFound, ChecksumMismatch) as error:
                self._note_failure(target, piece, chunk, error)
                return None
            return start, b"".join(parts)

        chosen = usable[: len(skipped)]
        found = await asyncio.gather(*(one(position) for position in chosen))
        return {p: result for p, result in zip(chosen, found, strict=True) if result is not None}

    async def _decode_span(
        self,
        view: ClusterView,
        target: ReadTarget,
        local: StripeSlice,
        protection: Scheme,
        failed: dict[int, StoreError],
        deadline: Deadline,
        known: dict[int, bytes],
    ) -> bytes:
        """Rebuild one data chunk's range [local.start, local.end) from K other chunks.

        The first key of `failed` is the chunk to rebuild. `known` contains that range
        of other chunks already read, so only the rest is fetched.
        """
        wanted = next(iter(failed))
        stripe = local.stripe
        survivors: dict[int, bytes] = dict(known)
        candidates = [p for p in range(len(stripe.chunks)) if p not in failed and p not in known]
        # Chunks on up dataservers first, then suspect ones, then data chunks before parity.
        candidates.sort(key=lambda p: (view.read_rank(stripe.chunks[p].target), p))

        async def fetch(position: int) -> None:
            chunk = stripe.chunks[position]
            try:
                parts = await self.read_chunk(view, target, local, chunk, deadline, None)
            except (Unavailable, NotFound, ChecksumMismatch) as error:
                self._note_failure(target, local, chunk, error)
                failed[position] = error
                return
            survivors[position] = b"".join(parts)

        while len(survivors) < protection.data_chunks and candidates:
            needed = protection.data_chunks - len(survivors)
            batch, candidates = candidates[:needed], candidates[needed:]
            await asyncio.gather(*(fetch(position) for position in batch))
        if len(survivors) < protection.data_chunks:
            raise _degraded_failure(target, local, protection, failed)
        log.info(
            "degraded read object=%s stripe=%d position=%d from positions %s",
            target.name(),
            local.stripe_index,
            wanted,
            sorted(survivors),
        )
        coder = codec(protection.data_chunks, protection.parity_chunks)
        return coder.decode(survivors, [wanted])[wanted]

    def _note_failure(
        self, target: ReadTarget, piece: StripeSlice, chunk: pb.ChunkRef, error: StoreError
    ) -> None:
        self._remember_bad(target, chunk, error)
        level = logging.WARNING
        if isinstance(error, Unavailable):
            # Later stripes read parity at once instead of waiting for the same failure.
            self._shunned[chunk.target] = time.monotonic() + SHUN_S
            # An unreachable dataserver is the failure detector's business; the read goes on.
            level = logging.INFO
        log.log(
            level,
            "chunk read failed object=%s stripe=%d chunk=%s: %s",
            target.name(),
            piece.stripe_index,
            chunk.chunk_id.hex(),
            error,
        )

    def _remember_bad(self, target: ReadTarget, chunk: pb.ChunkRef, error: StoreError) -> None:
        """Record a missing or corrupt chunk and report it to the object's shard for repair."""
        if not isinstance(error, ChecksumMismatch | NotFound):
            return
        entry = (chunk.chunk_id, chunk.target, str(error))
        if any(seen[:2] == entry[:2] for seen in self.bad_chunks):
            return
        self.bad_chunks.append(entry)
        report = meta_pb2.BadChunk(
            bucket=target.bucket,
            key=target.key,
            chunk_id=chunk.chunk_id,
            dataserver_id=chunk.target,
            reason=str(error),
        )
        task = asyncio.create_task(self._send_report(report))
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    async def _send_report(self, report: meta_pb2.BadChunk) -> None:
        deadline = Deadline(REPORT_TIMEOUT_S, f"report of bad chunk {report.chunk_id.hex()}")
        request = meta_pb2.ReportBadChunksRequest(chunks=[report])
        try:
            view = await self.connection.cluster_view(deadline)
            request.shard = self.connection.shard_for(view, report.bucket, report.key)
            await self.connection.meta_call(
                deadline,
                request.shard,
                lambda stub, _, timeout: stub.ReportBadChunks(request, timeout=timeout),
                idempotent=True,
            )
        except StoreError as error:
            log.info("bad chunk report failed chunk=%s: %s", report.chunk_id.hex(), error)

    async def _read_copies(
        self,
        target: ReadTarget,
        piece: StripeSlice,
        deadline: Deadline,
        out: memoryview | None,
    ) -> list[Buffer]:
        """Read a replicated stripe slice, trying each copy in turn."""
        view = await self.connection.cluster_view(deadline)
        errors: list[StoreError] = []
        attempt = 0
        # A stripe whose copies were all unreachable is retried while the map shows one of
        # their dataservers up or suspect, because a restarted dataserver needs a moment
        # before clients reconnect. Copies on up dataservers go first, then suspect ones.
        while True:
            attempt += 1
            copies = sorted(piece.stripe.chunks, key=lambda chunk: view.read_rank(chunk.target))
            errors = []
            for chunk in copies:
                try:
                    return await self.read_chunk(view, target, piece, chunk, deadline, out)
                except (Unavailable, NotFound, ChecksumMismatch) as error:
                    self._remember_bad(target, chunk, error)
                    log.warning(
                        "chunk read failed object=%s stripe=%d attempt=%d: %s",
                        target.name(),
                        piece.stripe_index,
                        attempt,
                        error,
                    )
                    errors.append(error)
            retry = await self.connection.should_retry(
                errors,
                [chunk.target for chunk in copies],
                attempt,
                deadline,
                include_suspect=True,
            )
            if not retry:
                break
            view = await self.connection.cluster_view(deadline)
        raise _read_failure(target, piece, errors)

    async def read_chunk(
        self,
        view: ClusterView,
        target: ReadTarget,
        piece: StripeSlice,
        chunk: pb.ChunkRef,
        deadline: Deadline,
        out: memoryview | None,
    ) -> list[Buffer]:
        address = view.dataserver_address(chunk.target)
        where = (
            f"chunk {chunk.chunk_id.hex()} (stripe {piece.stripe_index}) of {target.name()} on "
            f"dataserver {chunk.target} at {address}"
        )
        length_bytes = piece.end_bytes - piece.start_bytes
        request = data_pb2.ReadChunkRequest(
            chunk_id=chunk.chunk_id,
            offset_bytes=piece.start_bytes,
            length_bytes=length_bytes,
            dataserver_id=chunk.target,
        )
        timeout_s = deadline.remaining_s(self.chunk_timeout_s)
        receiver = _Receiver(piece, chunk, where, out)
        channels = self.connection.channels
        try:
            if length_bytes <= SMALL_READ_BYTES:
                header, data = await channels.block_reader(address)(request, timeout=timeout_s)
                receiver.start(header)
                receiver.add(data)
            else:
                async for message in channels.chunk_reader(address)(request, timeout=timeout_s):
                    receiver.add(message)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, f"reading {where}") from None
        receiver.finish()
        return receiver.pieces

    async def read_range(
        self, target: ReadTarget, offset_bytes: int, length_bytes: int, deadline: Deadline
    ) -> list[Buffer]:
        """Return the pieces of [offset, offset + length), reading `window` stripes at once."""
        slices = stripes_for_range(target.record.layout, offset_bytes, length_bytes)
        slots = asyncio.Semaphore(self.window_for(target.record.layout))

        async def bounded(piece: StripeSlice) -> list[Buffer]:
            async with slots:
                return await self.read_slice(target, piece, deadline)

        tasks = [asyncio.ensure_future(bounded(piece)) for piece in slices]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        return [part for parts in results for part in parts]

    async def read_range_into(
        self,
        target: ReadTarget,
        offset_bytes: int,
        out: memoryview,
        deadline: Deadline,
    ) -> None:
        """Copy [offset, offset + len(out)) into `out`, reading `window` stripes at once."""
        slices = stripes_for_range(target.record.layout, offset_bytes, len(out))
        slots = asyncio.Semaphore(self.window_for(target.record.layout))

        async def bounded(piece: StripeSlice) -> None:
            start = piece.stripe.offset_bytes + piece.start_bytes - offset_bytes
            region = out[start : start + piece.end_bytes - piece.start_bytes]
            async with slots:
                await self.read_slice(target, piece, deadline, region)

        tasks = [asyncio.ensure_future(bounded(piece)) for piece in slices]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise

    async def stream_range(
        self, target: ReadTarget, offset_bytes: int, length_bytes: int, deadline: Deadline
    ) -> AsyncIterator[bytes]:
        """Yield the bytes of a range in order, with up to `window` stripes read ahead."""
        slices = deque(stripes_for_range(target.record.layout, offset_bytes, length_bytes))
        pending: deque[asyncio.Task[list[Buffer]]] = deque()
        window = self.window_for(target.record.layout)
        try:
            while slices or pending:
                while slices and len(pending) < window:
                    pending.append(
                        asyncio.create_task(self.read_slice(target, slices.popleft(), deadline))
                    )
                for part in await pending.popleft():
                    yield part if isinstance(part, bytes) else bytes(part)
        finally:
            for task in pending:
                task.cancel()


class _Receiver:
    """Checks one ChunkStream/Read reply message by message: header, alignment, CRC32C."""

    def __init__(
        self, piece: StripeSlice, chunk: pb.ChunkRef, where: str, out: memoryview | None
    ) -> None:
        self.piece = piece
        self.chunk = chunk
        self.where = where
        self.out = out
        self.pieces: list[Buffer] = []
        self.header: data_pb2.ReadChunkHeader | None = None
        self.position = 0
        self.end = 0
        self.received_bytes = 0

    def start(self, header: data_pb2.ReadChunkHeader) -> None:
        check_read_header(header, self.chunk, self.where)
        self.header = header
        self.position = header.offset_bytes
        self.end = header.offset_bytes + header.length_bytes

    def add(self, message: Buffer) -> None:
        if self.header is None:
            self.start(_parse_read_header(message, self.where))
            return
        block = self.header.block_size_bytes
        if self.position % block or self.position + len(message) > self.end:
            raise InternalError(f"{self.where}: misaligned data at offset {self.position}")
        first_block = (self.position - self.header.offset_bytes) // block
        block_count = (len(message) + block - 1) // block
        crcs = self.header.block_crc32c[first_block : first_block + block_count]
        verify_blocks(message, crcs, block, self.where)
        kept = _trim(message, self.position, self.piece.start_bytes, self.piece.end_bytes)
        if self.out is None:
            self.pieces.append(kept)
        else:
            self.out[self.received_bytes : self.received_bytes + len(kept)] = kept
        self.received_bytes += len(kept)
        self.position += len(message)

    def finish(self) -> None:
        expected = self.piece.end_bytes - self.piece.start_bytes
        if self.header is None:
            raise InternalError(f"{self.where}: the reply carried no header")
        if self.received_bytes != expected:
            raise ChecksumMismatch(
                f"{self.where}: received {self.received_bytes} bytes, expected {expected}"
            )


def _parse_read_header(message: Buffer, where: str) -> data_pb2.ReadChunkHeader:
    try:
        return data_pb2.ReadChunkHeader.FromString(bytes(message))
    except DecodeError:
        raise InternalError(f"{where}: the reply's first message is not a header") from None


def check_read_header(header: data_pb2.ReadChunkHeader, chunk: pb.ChunkRef, where: str) -> None:
    """Check a read reply's header against the chunk the layout names."""
    if header.chunk_length_bytes != chunk.length_bytes:
        raise ChecksumMismatch(
            f"{where}: stored length {header.chunk_length_bytes} differs from the layout's "
            f"{chunk.length_bytes}"
        )
    if header.chunk_crc32c != chunk.crc32c:
        raise ChecksumMismatch(
            f"{where}: stored chunk CRC32C {header.chunk_crc32c:#010x} differs from the "
            f"layout's {chunk.crc32c:#010x}; the file holds other data"
        )
    if header.block_size_bytes == 0:
        raise InternalError(f"{where}: the reply's header has block size 0")


def _trim(data: Buffer, offset: int, start: int, end: int) -> Buffer:
    """Return the part of `data` (which starts at `offset`) inside [start, end)."""
    low = max(start - offset, 0)
    high = min(end - offset, len(data))
    if low == 0 and high == len(data):
        return data
    return data[low:high]


def _span_bytes(parts: list[Buffer] | None, region: memoryview | None) -> bytes:
    """Return the bytes a span's read produced: its parts, or what it copied into its region."""
    if region is not None:
        return bytes(region)
    return b"".join(parts or [])


def _degraded_failure(
    target: ReadTarget, local: StripeSlice, protection: Scheme, failed: dict[int, StoreError]
) -> StoreError:
    lost = "; ".join(
        f"position {position} on dataserver {local.stripe.chunks[position].target}: {error}"
        for position, error in sorted(failed.items())
    )
    readable = len(local.stripe.chunks) - len(failed)
    return Unavailable(
        f"cannot read stripe {local.stripe_index} of {target.name()}: only {readable} of its "
        f"{len(local.stripe.chunks)} chunks are readable and {protection} needs "
        f"{protection.data_chunks}. Missing: {lost}. Bring those dataservers back to read it"
    )


def _read_failure(
    target: ReadTarget, piece: StripeSlice, errors: Sequence[StoreError]
) -> StoreError:
    details = "; ".join(str(error) for error in errors) or "the stripe has no copies"
    message = f"cannot read stripe {piece.stripe_index} of {target.name()}: {details}"
    if any(isinstance(error, ChecksumMismatch) for error in errors):
        return ChecksumMismatch(message)
    if errors and all(isinstance(error, NotFound) for error in errors):
        return NotFound(message)
    return Unavailable(message)
