"""Garbage collection: deletes replaced, deleted and abandoned chunks on the dataservers.

Entries are written by the operations that create garbage, in the same write
batch, so nothing is forgotten across a crash. Each pass: expire upload
sessions older than the grace period (turning them into entries), then send
due entries to the dataservers and remove what they confirmed. An entry for
a dataserver that is down stays queued and is retried on the next pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import grpc

from metaserver import keys, objects
from metaserver.follower import PrimaryLink
from metaserver.membership import Membership
from metaserver.shard import Shard, ShardCursor
from store._pb import common_pb2 as pb
from store._pb import data_pb2
from store.channels import ChannelPool

log = logging.getLogger(__name__)

# Upper bounds per shard and pass, so one pass stays short.
MAX_ENTRIES_PER_PASS = 256
MAX_UPLOADS_PER_PASS = 1024


@dataclass(slots=True)
class GcSettings:
    interval_s: float = 5.0
    # Replaced chunks wait this long so that readers holding the old layout can finish.
    delay_s: float = 60.0
    # Uploads not committed within this time are abandoned and their chunks deleted.
    upload_grace_s: float = 3600.0
    # Delay before repeating the deletion of an abandoned upload or of the chunks a
    # writer moved off a failed dataserver, longer than a chunk write.
    upload_settle_s: float = 60.0
    rpc_timeout_s: float = 10.0


@dataclass(slots=True)
class GcCounters:
    chunks_deleted: int = 0
    uploads_expired: int = 0
    entries_done: int = 0
    failures: int = 0


class GarbageCollector:
    def __init__(
        self,
        shards: Mapping[int, Shard],
        membership: Membership | PrimaryLink,
        settings: GcSettings,
    ) -> None:
        self._served = shards
        self.membership = membership
        self.settings = settings
        self.counters = GcCounters()
        self._channels = ChannelPool()
        self._wakeup = asyncio.Event()

    @property
    def shards(self) -> list[Shard]:
        """The shards served now: shards move between metaservers."""
        return [shard for shard in self._served.values() if not shard.retired]

    async def run(self) -> None:
        while True:
            try:
                await self.run_pass()
            except Exception:
                log.exception("[BUG] garbage collection pass failed")
            try:
                await asyncio.wait_for(self._wakeup.wait(), self.settings.interval_s)
            except TimeoutError:
                pass
            self._wakeup.clear()

    def wake(self) -> None:
        """Start the next pass now instead of after the interval."""
        self._wakeup.set()

    async def run_pass(self) -> None:
        for shard in self.shards:
            await self._expire_uploads(shard)
            await self._collect(shard)

    async def _expire_uploads(self, shard: Shard) -> None:
        now_ns = time.time_ns()
        cutoff_ns = now_ns - int(self.settings.upload_grace_s * 1e9)
        expired: list[str] = []
        cursor = ShardCursor(shard.db, keys.UPLOAD_TAG, b"", b"")
        while cursor.current() is not None and len(expired) < MAX_UPLOADS_PER_PASS:
            session = pb.UploadSession.FromString(cursor.payload())
            if session.created_unix_ns <= cutoff_ns:
                expired.append(session.upload_id)
            cursor.advance()
        del cursor  # an open iterator pins the database's files across the waits below
        for upload_id in expired:
            if await shard.submit(
                "expire_upload", objects.expire_upload(shard, upload_id, cutoff_ns, now_ns)
            ):
                self.counters.uploads_expired += 1
                log.info(
                    "upload expired shard=%d upload=%s after %.0fs grace",
                    shard.number,
                    upload_id,
                    self.settings.upload_grace_s,
                )

    async def _collect(self, shard: Shard) -> None:
        now_ns = time.time_ns()
        cursor = ShardCursor(shard.db, keys.GC_TAG, b"", b"")
        due: list[tuple[int, pb.GcEntry]] = []
        while (suffix := cursor.current()) is not None and len(due) < MAX_ENTRIES_PER_PASS:
            entry = pb.GcEntry.FromString(cursor.payload())
            if entry.not_before_unix_ns <= now_ns:
                due.append((keys.gc_sequence(keys.GC_TAG + suffix), entry))
            cursor.advance()
        del cursor
        for sequence, entry in due:
            remaining = await self._delete_entry(shard, sequence, entry)
            await shard.submit("finish_garbage", objects.finish_garbage(sequence, remaining))
            if remaining is None:
                self.counters.entries_done += 1

    async def _delete_entry(
        self, shard: Shard, sequence: int, entry: pb.GcEntry
    ) -> pb.GcEntry | None:
        """Send one entry's deletions; return what is left to retry, or None when done."""
        by_target: dict[str, list[pb.ChunkRef]] = defaultdict(list)
        for chunk in entry.chunks:
            by_target[chunk.target].append(chunk)
        remaining = pb.GcEntry(
            not_before_unix_ns=entry.not_before_unix_ns, reason=entry.reason, repeats=entry.repeats
        )

        for target, chunks in by_target.items():
            request = data_pb2.DeleteChunksRequest(chunk_ids=[c.chunk_id for c in chunks])
            if not await self._send(target, request, shard, sequence):
                remaining.chunks.extend(chunks)

        if entry.upload_ids:
            request = data_pb2.DeleteChunksRequest(upload_ids=entry.upload_ids)
            results = await asyncio.gather(
                *(
                    self._send(target, request, shard, sequence)
                    for target in self.membership.dataservers
                )
            )
            if not all(results):
                remaining.upload_ids.extend(entry.upload_ids)

        if remaining.chunks or remaining.upload_ids:
            return remaining
        if entry.repeats > 0:
            settle_ns = int(self.settings.upload_settle_s * 1e9)
            return pb.GcEntry(
                chunks=entry.chunks,
                upload_ids=entry.upload_ids,
                not_before_unix_ns=time.time_ns() + settle_ns,
                reason=entry.reason,
                repeats=entry.repeats - 1,
            )
        log.debug(
            "gc entry done shard=%d sequence=%d reason=%s", shard.number, sequence, entry.reason
        )
        return None

    async def _send(
        self, target: str, request: data_pb2.DeleteChunksRequest, shard: Shard, sequence: int
    ) -> bool:
        info = self.membership.dataservers.get(target)
        if info is None:
            # The dataserver was removed from the cluster; its chunks went with it.
            return True
        if info.state != pb.DATASERVER_STATE_UP:
            return False
        try:
            reply = await self._channels.data(info.address).DeleteChunks(
                request, timeout=self.settings.rpc_timeout_s
            )
        except grpc.RpcError as exc:
            self.counters.failures += 1
            log.warning(
                "gc delete failed shard=%d sequence=%d dataserver=%s: %s",
                shard.number,
                sequence,
                target,
                exc,
            )
            return False
        self.counters.chunks_deleted += reply.deleted
        return True

    async def close(self) -> None:
        await self._channels.close()
