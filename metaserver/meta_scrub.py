"""Metadata scrub: check that every chunk a layout names exists on its dataserver.

Dataservers scrub the chunks they store. This pass finds the opposite fault,
a chunk the metadata needs that is gone or differs (a lost file, a wiped
disk, a header that no longer parses). It walks this metaserver's objects
in key order, asks each dataserver about its chunks in batches with
StatChunks, which reads only the chunk headers, and queues any object with
a missing or different chunk for repair. Chunks on dataservers that are not
up are left to repair's own handling of lost dataservers.

The position of each shard's walk is stored in the shard, so a restarted
metaserver resumes where it stopped. Checks are spread out to stay under
`chunks_per_s`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import grpc

from metaserver import keys
from metaserver.follower import PrimaryLink
from metaserver.membership import Membership
from metaserver.repair_ops import queue_reports
from metaserver.shard import GroupView, Shard, ShardCursor
from store._pb import common_pb2 as pb
from store._pb import data_pb2, meta_pb2
from store.channels import ChannelPool
from store.rpc import error_from_rpc

log = logging.getLogger(__name__)

# Objects checked per batch, and the StatChunks calls of a batch go out together.
BATCH_OBJECTS = 256
RPC_TIMEOUT_S = 30.0


@dataclass(slots=True)
class MetaScrubSettings:
    # Seconds between the starts of full passes; 0 disables the scrub.
    interval_s: float = 86400.0
    chunks_per_s: float = 20_000.0


@dataclass(slots=True)
class MetaScrubCounters:
    checked_chunks: int = 0
    bad_chunks: int = 0
    passes: int = 0


class MetaScrubber:
    def __init__(
        self,
        shards: Mapping[int, Shard],
        cluster: Membership | PrimaryLink,
        settings: MetaScrubSettings,
        wake_repair: Callable[[], None] | None = None,
    ) -> None:
        self._served = shards
        self.cluster = cluster
        self.settings = settings
        self.counters = MetaScrubCounters()
        self._channels = ChannelPool()
        self._wake_repair = wake_repair

    @property
    def shards(self) -> list[Shard]:
        """The shards served now: shards move between metaservers."""
        return [shard for shard in self._served.values() if not shard.retired]

    async def close(self) -> None:
        await self._channels.close()

    async def run(self) -> None:
        if self.settings.interval_s <= 0:
            return
        while True:
            started_s = time.monotonic()
            try:
                await self.run_pass()
            except Exception:
                log.exception("[BUG] metadata scrub pass failed")
            await asyncio.sleep(max(self.settings.interval_s - (time.monotonic() - started_s), 0))

    async def run_pass(self) -> None:
        """Check every object of every shard once, resuming each shard where it stopped."""
        for shard in self.shards:
            while await self._check_batch(shard):
                pass
        self.counters.passes += 1
        log.info(
            "metadata scrub pass done checked_chunks=%d bad_chunks=%d",
            self.counters.checked_chunks,
            self.counters.bad_chunks,
        )

    async def _check_batch(self, shard: Shard) -> bool:
        """Check the next batch of a shard's objects; return False once the walk wrapped."""
        start = shard.get(keys.SCRUB_CURSOR_KEY) or b""
        cursor = ShardCursor(shard.db, keys.OBJECT_TAG, b"", start)
        if start and cursor.current() == start:
            cursor.advance()
        records: list[tuple[bytes, pb.ObjectRecord]] = []
        while (suffix := cursor.current()) is not None and len(records) < BATCH_OBJECTS:
            records.append((suffix, keys.decode_object(cursor.payload())))
            cursor.advance()
        # An open iterator pins the database's files and keeps it open after a close,
        # so it must not live across the waits below.
        del cursor
        if not records:
            await shard.submit("meta_scrub_cursor", _set_cursor(b""))
            return False

        started_s = time.monotonic()
        chunk_total = await self._check(shard, records)
        await shard.submit("meta_scrub_cursor", _set_cursor(records[-1][0]))
        budget_s = chunk_total / self.settings.chunks_per_s if self.settings.chunks_per_s else 0
        await asyncio.sleep(max(budget_s - (time.monotonic() - started_s), 0))
        return True

    async def _check(self, shard: Shard, records: list[tuple[bytes, pb.ObjectRecord]]) -> int:
        """Ask the dataservers about the records' chunks and queue objects that lack one."""
        servers = {d.id: d for d in self.cluster.cluster_map().dataservers}
        by_target: dict[str, list[tuple[bytes, pb.ChunkRef]]] = defaultdict(list)
        for suffix, record in records:
            for stripe in record.layout.stripes:
                for chunk in stripe.chunks:
                    info = servers.get(chunk.target)
                    if info is not None and info.state == pb.DATASERVER_STATE_UP:
                        by_target[chunk.target].append((suffix, chunk))
        results = await asyncio.gather(
            *(self._stat(servers[t], refs) for t, refs in by_target.items())
        )
        reports = [report for found in results for report in found]
        self.counters.checked_chunks += sum(len(refs) for refs in by_target.values())
        if reports:
            self.counters.bad_chunks += len(reports)
            queued = await shard.submit(
                "meta_scrub_reports", queue_reports(reports, time.time_ns())
            )
            for report in reports:
                log.warning(
                    "metadata scrub found a bad chunk shard=%d object=%s/%r chunk=%s "
                    "dataserver=%s: %s",
                    shard.number,
                    report.bucket,
                    report.key,
                    report.chunk_id.hex(),
                    report.dataserver_id,
                    report.reason,
                )
            if queued and self._wake_repair is not None:
                self._wake_repair()
        return sum(len(refs) for refs in by_target.values())

    async def _stat(
        self, info: pb.DataserverInfo, refs: list[tuple[bytes, pb.ChunkRef]]
    ) -> list[meta_pb2.BadChunk]:
        request = data_pb2.StatChunksRequest(chunk_ids=[chunk.chunk_id for _, chunk in refs])
        try:
            reply = await self._channels.data(info.address).StatChunks(
                request, timeout=RPC_TIMEOUT_S
            )
        except grpc.RpcError as exc:
            # Repair deals with dataservers that stay unreachable; this pass moves on.
            log.warning(
                "metadata scrub skipped dataserver=%s: %s",
                info.id,
                error_from_rpc(exc, f"StatChunks on {info.address}"),
            )
            return []
        reports = []
        for (suffix, chunk), stat in zip(refs, reply.chunks, strict=True):
            reason = _problem(chunk, stat)
            if reason:
                bucket, key = keys.split_name(suffix)
                reports.append(
                    meta_pb2.BadChunk(
                        bucket=bucket,
                        key=key,
                        chunk_id=chunk.chunk_id,
                        dataserver_id=chunk.target,
                        reason=f"{reason} (metadata scrub)",
                    )
                )
        return reports


def _problem(chunk: pb.ChunkRef, stat: data_pb2.ChunkStat) -> str:
    """Describe how a stored chunk differs from its layout entry, or return ""."""
    if not stat.exists:
        return "missing"
    if stat.length_bytes != chunk.length_bytes:
        return f"stored length {stat.length_bytes}, layout says {chunk.length_bytes}"
    if stat.crc32c != chunk.crc32c:
        return f"stored CRC32C {stat.crc32c:#010x}, layout says {chunk.crc32c:#010x}"
    return ""


def _set_cursor(position: bytes) -> Callable[[GroupView], None]:
    def run(view: GroupView) -> None:
        view.put(keys.SCRUB_CURSOR_KEY, position)

    return run
