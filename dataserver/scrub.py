"""Scrub: read every chunk file at a throttled rate and verify its CRCs.

A pass walks the chunk files in chunk id order, which is the order of their
names under chunks/XX/. It reads each header and the data with O_DIRECT, one
piece at a time in a worker thread, and checks every block's CRC32C and the
whole-chunk CRC32C against the header. A chunk that fails:

1. moves to quarantine/<chunk id hex>, so reads get ChunkNotFound and decode
   around it, and it is never served again;
2. is logged at WARNING with its chunk id, bucket, key and reason;
3. is reported with ReportBadChunks to the metaserver of its object's shard,
   which queues the object for repair.

Reports that fail stay in the state file and are sent again when the next
pass starts. The state file (scrub.json) also contains the position of the
running pass, which is the last chunk id done. It is saved at most
STATE_SAVE_INTERVAL_S apart, so a restarted dataserver resumes the pass and
verifies again at most that many seconds of chunks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from dataserver.badchunks import BadChunkReport
from dataserver.chunkstore import Checksummer, ChunkStore, OpenChunk
from store._pb import common_pb2 as pb
from store.durable import write_file_atomic
from store.errors import ChecksumMismatch, ChunkNotFound
from store.limits import MIB
from store.throttle import Throttle

log = logging.getLogger(__name__)

STATE_FILE = "scrub.json"
# Bytes per read; the throttle lets at most one piece through ahead of the rate.
READ_PIECE_BYTES = 1 * MIB
STATE_SAVE_INTERVAL_S = 1.0
# Reports kept while the metaservers do not accept them; the oldest are dropped beyond.
MAX_PENDING_REPORTS = 10_000
# Errors that mean the disk cannot return a chunk's bytes. Errors of this process
# (EMFILE, ENOMEM) tell nothing about the chunk and are not in this set.
UNREADABLE_ERRNOS = frozenset({errno.EIO, errno.EBADMSG, errno.EUCLEAN})

T = TypeVar("T")


class Reporter(Protocol):
    async def send(self, reports: list[BadChunkReport]) -> list[BadChunkReport]:
        """Send the reports; return those that were not delivered."""
        ...

    async def close(self) -> None: ...


@dataclass
class ScrubState:
    """The contents of scrub.json: the running pass, the totals and the undelivered reports."""

    # Hex id of the last chunk done in the running pass; "" before its first chunk.
    position: str = ""
    # 0 while no pass runs.
    pass_started_unix_ms: int = 0
    pass_chunks: int = 0
    pass_bytes: int = 0
    pass_corrupt_chunks: int = 0
    last_pass_finished_unix_ms: int = 0
    scrubbed_chunks: int = 0
    scrubbed_bytes: int = 0
    corrupt_chunks: int = 0
    pending_reports: list[BadChunkReport] = field(default_factory=list)

    def to_json(self) -> bytes:
        record: dict[str, Any] = dataclasses.asdict(self)
        record["pending_reports"] = [report.to_json() for report in self.pending_reports]
        return json.dumps(record, indent=1).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> ScrubState:
        record = json.loads(data)
        names = {f.name for f in dataclasses.fields(cls)} - {"pending_reports"}
        state = cls(**{name: record[name] for name in names if name in record})
        state.pending_reports = [
            BadChunkReport.from_json(item) for item in record.get("pending_reports", [])
        ]
        return state


def load_state(path: os.PathLike[str]) -> ScrubState:
    """Read scrub.json; a missing or unreadable file starts from a new state."""
    try:
        with open(path, "rb") as file:
            return ScrubState.from_json(file.read())
    except FileNotFoundError:
        return ScrubState()
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("scrub state file %s is invalid (%s); starting a new scrub pass", path, exc)
        return ScrubState()


@dataclass(frozen=True, slots=True)
class Corruption:
    """A chunk file that failed verification."""

    chunk_id: bytes
    # The file found bad, so that a file that replaced it is not quarantined.
    inode: int
    # None when the header itself is unreadable.
    header: pb.ChunkFileHeader | None
    reason: str


def unix_ms() -> int:
    return int(time.time() * 1000)


class Scrubber:
    """Runs scrub passes over one ChunkStore, `interval_s` apart, until cancelled."""

    def __init__(
        self,
        store: ChunkStore,
        reporter: Reporter,
        bandwidth_bytes_s: float,
        interval_s: float,
    ) -> None:
        assert bandwidth_bytes_s > 0
        assert interval_s > 0
        self.store = store
        self.reporter = reporter
        self.bandwidth_bytes_s = bandwidth_bytes_s
        self.interval_s = interval_s
        self.state_path = store.root / STATE_FILE
        self.state = ScrubState()
        self._saved_s = 0.0
        self._reports_failed = False
        self._dropped_reports = 0
        # One thread, so the scrub keeps at most one read in flight beside the clients' reads.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scrub-io")

    async def _io(self, function: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    async def run(self) -> None:
        """Scrub pass after pass until cancelled; the position is saved when cancelled."""
        self.state = await self._io(load_state, self.state_path)
        if self.state.pass_started_unix_ms:
            log.info(
                "scrub pass resumed started_unix_ms=%d after_chunk=%s chunks_done=%d",
                self.state.pass_started_unix_ms,
                self.state.position or "-",
                self.state.pass_chunks,
            )
        try:
            while True:
                await self._wait_for_pass()
                await self._run_pass()
        except asyncio.CancelledError:
            # Synchronous on purpose: the loop is stopping and this write must land.
            self._save_now()
            raise
        except Exception:
            log.exception("[BUG] scrub stopped; restart the dataserver to scrub again")
            raise

    async def _wait_for_pass(self) -> None:
        """Sleep until the next pass is due and start it; return at once to resume a pass."""
        if self.state.pass_started_unix_ms:
            return
        due_unix_ms = self.state.last_pass_finished_unix_ms + int(self.interval_s * 1000)
        # Capped at the interval, so a wall clock set back does not postpone scrub.
        delay_s = min((due_unix_ms - unix_ms()) / 1000, self.interval_s)
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        self.state.pass_started_unix_ms = unix_ms()
        self.state.position = ""
        self.state.pass_chunks = self.state.pass_bytes = self.state.pass_corrupt_chunks = 0
        log.info(
            "scrub pass started started_unix_ms=%d bandwidth_bytes_s=%d",
            self.state.pass_started_unix_ms,
            self.bandwidth_bytes_s,
        )

    async def _run_pass(self) -> None:
        """Verify every chunk after the saved position, then finish the pass."""
        self._reports_failed = False
        await self._flush_reports()
        throttle = Throttle(self.bandwidth_bytes_s)
        for subdir in await self._io(self.store.list_subdirs):
            if subdir < self.state.position[:2]:
                continue
            for chunk_id in await self._io(self.store.list_chunk_ids, subdir):
                if chunk_id.hex() <= self.state.position:
                    continue
                await self._scrub_chunk(chunk_id, throttle)
                self.state.position = chunk_id.hex()
                await self._maybe_save()
        await self._finish_pass()

    async def _scrub_chunk(self, chunk_id: bytes, throttle: Throttle) -> None:
        try:
            length_bytes, corruption = await self._verify(chunk_id, throttle)
        except ChunkNotFound:
            return  # deleted by garbage collection since the directory was listed
        except OSError as exc:
            log.warning("scrub skipped chunk=%s until the next pass: %s", chunk_id.hex(), exc)
            return
        state = self.state
        state.pass_chunks += 1
        state.scrubbed_chunks += 1
        state.pass_bytes += length_bytes
        state.scrubbed_bytes += length_bytes
        if corruption is not None:
            await self._handle_corruption(corruption)

    async def _verify(self, chunk_id: bytes, throttle: Throttle) -> tuple[int, Corruption | None]:
        """Read one chunk and check its CRCs; return the data bytes read and any corruption.

        Raises ChunkNotFound when the file is gone, and OSError for errors that do
        not mean the chunk is bad.
        """
        try:
            chunk = await self._io(self.store.open_chunk, chunk_id)
        except ChecksumMismatch as error:
            return 0, await self._corruption(chunk_id, None, f"corrupt header: {error}")
        except OSError as exc:
            if exc.errno not in UNREADABLE_ERRNOS:
                raise
            return 0, await self._corruption(chunk_id, None, f"unreadable header: {exc}")
        try:
            delay_s = throttle.delay_s(chunk.data_offset)
            if delay_s:
                await asyncio.sleep(delay_s)
            reason = await self._verify_data(chunk, throttle)
            if reason is None:
                return chunk.header.length_bytes, None
            inode = os.fstat(chunk.fd).st_ino
            return chunk.header.length_bytes, Corruption(chunk_id, inode, chunk.header, reason)
        finally:
            chunk.close()

    async def _corruption(
        self, chunk_id: bytes, header: pb.ChunkFileHeader | None, reason: str
    ) -> Corruption:
        """Describe a chunk whose header failed; the file's inode comes from its path."""
        try:
            inode = (await self._io(os.stat, self.store.path_for(chunk_id))).st_ino
        except FileNotFoundError:
            raise ChunkNotFound(f"chunk {chunk_id.hex()} was deleted during scrub") from None
        return Corruption(chunk_id, inode, header, reason)

    async def _verify_data(self, chunk: OpenChunk, throttle: Throttle) -> str | None:
        """Read the chunk's data piece by piece at the throttled rate; return what is wrong."""
        header = chunk.header
        problem = check_header_shape(header, os.fstat(chunk.fd).st_size - chunk.data_offset)
        if problem is not None:
            return problem
        checksummer = Checksummer(header.block_size_bytes)
        for offset in range(0, header.length_bytes, READ_PIECE_BYTES):
            size = min(READ_PIECE_BYTES, header.length_bytes - offset)
            try:
                await self._io(self._read_piece, chunk, offset, size, checksummer)
            except ChecksumMismatch as error:
                return f"corrupt: {error}"
            except OSError as exc:
                if exc.errno not in UNREADABLE_ERRNOS:
                    raise
                return f"unreadable at offset {offset}: {exc}"
            delay_s = throttle.delay_s(size)
            if delay_s:
                await asyncio.sleep(delay_s)
        return compare_checksums(header, checksummer)

    def _read_piece(
        self, chunk: OpenChunk, offset_bytes: int, size_bytes: int, checksummer: Checksummer
    ) -> None:
        pieces = self.store.read_pieces(chunk, offset_bytes, size_bytes, size_bytes)
        assert len(pieces) == 1
        assert len(pieces[0]) == size_bytes
        checksummer.update(pieces[0])

    async def _handle_corruption(self, corruption: Corruption) -> None:
        """Quarantine a bad chunk, log it, and report it to its object's metaserver."""
        chunk_hex = corruption.chunk_id.hex()
        header = corruption.header
        if header is None:
            header = await self._io(self.store.salvage_header, corruption.chunk_id)
        moved = await self._io(self.store.quarantine, corruption.chunk_id, corruption.inode)
        if moved is None:
            log.info("corrupt chunk=%s was deleted or replaced before quarantine", chunk_hex)
            return

        self.state.pass_corrupt_chunks += 1
        self.state.corrupt_chunks += 1
        bucket = header.bucket if header is not None else "?"
        key = header.key.decode(errors="backslashreplace") if header is not None else "?"
        log.warning(
            "corrupt chunk quarantined chunk=%s bucket=%s key=%s reason=%s path=%s",
            chunk_hex,
            bucket,
            key,
            corruption.reason,
            moved,
        )

        if header is None:
            # NOTE: without bucket and key the object and its shard are unknown, so
            # only a metadata-side check that every chunk of an object exists (with
            # StatChunks) can find this chunk missing.
            log.warning("corrupt chunk=%s not reported: its header does not parse", chunk_hex)
        else:
            self._add_report(
                BadChunkReport(corruption.chunk_id, bucket, header.key, corruption.reason)
            )
            if not self._reports_failed:
                await self._flush_reports()
        await self._save()

    def _add_report(self, report: BadChunkReport) -> None:
        pending = self.state.pending_reports
        if len(pending) >= MAX_PENDING_REPORTS:
            dropped = pending.pop(0)
            self._dropped_reports += 1
            log.warning(
                "bad chunk report dropped chunk=%s bucket=%s: more than %d reports undelivered "
                "(%d dropped so far); only a metadata-side check of the object finds it now",
                dropped.chunk_id.hex(),
                dropped.bucket,
                MAX_PENDING_REPORTS,
                self._dropped_reports,
            )
        pending.append(report)
        assert len(pending) <= MAX_PENDING_REPORTS

    async def _flush_reports(self) -> None:
        """Send the undelivered reports; those that fail wait for the next pass."""
        if not self.state.pending_reports:
            return
        undelivered = await self.reporter.send(list(self.state.pending_reports))
        self.state.pending_reports = undelivered
        if undelivered:
            self._reports_failed = True
        await self._save()

    async def _finish_pass(self) -> None:
        state = self.state
        finished_unix_ms = unix_ms()
        log.info(
            "scrub pass finished started_unix_ms=%d chunks=%d bytes=%d corrupt=%d seconds=%.1f "
            "reports_undelivered=%d",
            state.pass_started_unix_ms,
            state.pass_chunks,
            state.pass_bytes,
            state.pass_corrupt_chunks,
            (finished_unix_ms - state.pass_started_unix_ms) / 1000,
            len(state.pending_reports),
        )
        state.last_pass_finished_unix_ms = finished_unix_ms
        state.pass_started_unix_ms = 0
        state.position = ""
        await self._save()

    async def _maybe_save(self) -> None:
        if time.monotonic() - self._saved_s >= STATE_SAVE_INTERVAL_S:
            await self._save()

    async def _save(self) -> None:
        await self._io(self._save_now)

    def _save_now(self) -> None:
        """Write scrub.json; a failure is logged, and the next save tries again."""
        try:
            write_file_atomic(self.state_path, self.state.to_json())
        except OSError as exc:
            log.warning("cannot save scrub state to %s: %s", self.state_path, exc)
        self._saved_s = time.monotonic()

    def fill_info(self, info: pb.DataserverInfo) -> None:
        """Copy the scrub totals and pass times into a heartbeat's DataserverInfo."""
        state = self.state
        info.scrubbed_chunks = state.scrubbed_chunks
        info.scrubbed_bytes = state.scrubbed_bytes
        info.corrupt_chunks = state.corrupt_chunks
        info.scrub_started_unix_ms = state.pass_started_unix_ms
        info.last_scrub_unix_ms = state.last_pass_finished_unix_ms

    def close(self) -> None:
        """Wait for the read in progress; call after the run task ended."""
        self._executor.shutdown(wait=True)


def check_header_shape(header: pb.ChunkFileHeader, data_bytes: int) -> str | None:
    """Return what is wrong with a header's length and block list, or None."""
    length = header.length_bytes
    if data_bytes != length:
        return f"corrupt: the file holds {data_bytes} data bytes, the header says {length}"
    block = header.block_size_bytes
    if block <= 0:
        return f"corrupt: the header has block size {block}"
    block_count = (length + block - 1) // block
    if block_count != len(header.block_crc32c):
        return (
            f"corrupt: the header has {len(header.block_crc32c)} block CRCs for "
            f"{block_count} blocks of {block} bytes"
        )
    return None


def compare_checksums(header: pb.ChunkFileHeader, checksummer: Checksummer) -> str | None:
    """Return which block CRC or whole-chunk CRC differs from the header, or None."""
    block_crcs = checksummer.finish()
    assert len(block_crcs) == len(header.block_crc32c)
    for index, (got, want) in enumerate(zip(block_crcs, header.block_crc32c, strict=True)):
        if got != want:
            offset = index * header.block_size_bytes
            return (
                f"corrupt: block {index} at offset {offset} has CRC32C {got:#010x}, "
                f"the header has {want:#010x}"
            )
    if checksummer.crc != header.crc32c:
        return (
            f"corrupt: the data has CRC32C {checksummer.crc:#010x}, "
            f"the header has {header.crc32c:#010x}"
        )
    return None
