"""Background repair: rebuild the chunks of stripes that lost some, for this metaserver's shards.

A chunk needs rebuilding when its dataserver is out (down for longer than
the out timeout) or gone from the cluster map, or when a reader or a
scrubber reported it missing or corrupt (stored under the "R" tag). Each
pass collects such objects, most damaged stripes first, and for each one:

1. reads K surviving chunks of every damaged stripe (one copy for
   replication), checking their CRC32Cs, and decodes the lost chunks;
2. records the new chunks as garbage due after `intent_s`, then writes them
   to dataservers chosen by placement, under new chunk ids;
3. swaps the new chunks into the layout in one shard batch, which also
   removes that garbage entry and queues the lost chunks for deletion. If the
   object changed meanwhile, the new chunks become due for deletion instead.

Nothing is lost when the process dies at any step, because the layout
changes only in step 3. The next pass finds unfinished work again, and the
chunks of a repair that never finished are deleted once their entry comes due.
Repair traffic (bytes read plus written) is held under `bandwidth_bytes_s`.

NOTE: parts of multipart uploads that are not completed yet are not
repaired; a part that loses more chunks than its scheme tolerates before
completion makes the completed object unreadable in that range.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from metaserver import keys
from metaserver.follower import PrimaryLink
from metaserver.membership import Membership
from metaserver.meta_scrub import MetaScrubber
from metaserver.repair_ops import (
    Replacement,
    commit_repair,
    drop_reports,
    queue_intent,
)
from metaserver.repair_plan import Balancer, Move, PassState, count_chunks, plan_moves
from metaserver.shard import Shard, ShardCursor
from store._pb import common_pb2 as pb
from store._pb import meta_pb2
from store.checksum import crc32c
from store.clustermap import ClusterView
from store.connection import Connection, Deadline
from store.download import Reader, ReadTarget
from store.erasure import codec
from store.errors import StoreError, Unavailable
from store.layout import StripeSlice, rebuilt_chunk_id, split_chunk_id
from store.names import display_key
from store.placement import (
    domains_of,
    eligible_dataservers,
    interleave_domains,
    rank_dataservers,
    replacement_target,
)
from store.scheme import of_layout
from store.throttle import Throttle
from store.upload import chunk_messages, write_chunk

log = logging.getLogger(__name__)

# Records a scan reads between yields to the event loop (a few milliseconds of work).
SCAN_BATCH_RECORDS = 1000


@dataclass(slots=True)
class RepairSettings:
    interval_s: float = 5.0
    # Bytes read and written per second by repair; 0 means no limit.
    # NOTE: repair shares the metaserver's process, and pyeclib holds the GIL while it
    # decodes, so unthrottled repair slows metadata requests. Reading two stripes of each
    # of four objects at once stalled status calls for seconds in a benchmark.
    bandwidth_bytes_s: int = 64 * 1024 * 1024
    chunk_timeout_s: float = 60.0
    # Chunks written by a repair that has not committed are deleted after this long. A
    # repair that takes more than half of it is abandoned.
    intent_s: float = 3600.0
    # Objects repaired per shard and pass, so one pass stays short.
    max_objects_per_pass: int = 256
    # Objects repaired at once; different objects never share a shard batch.
    parallel_objects: int = 4


@dataclass(slots=True)
class RepairCounters:
    repaired_chunks: int = 0
    repaired_bytes: int = 0
    moved_chunks: int = 0
    moved_bytes: int = 0
    failures: int = 0
    queued_objects: int = 0
    unrecoverable_stripes: int = 0
    rate_bytes_s: float = 0.0
    last_pass_unix_ms: int = 0


@dataclass(order=True, slots=True)
class RepairItem:
    """An object to repair; items that lost more chunks of one stripe sort first."""

    sort_key: int
    bucket: str = field(compare=False)
    key: bytes = field(compare=False)
    shard: Shard = field(compare=False)
    # (chunk id, dataserver id) pairs reported bad.
    reported: frozenset[tuple[bytes, str]] = field(compare=False)
    # The version the scan planned for and its moves; None for reported objects, planned
    # when they are repaired.
    version_id: str = field(default="", compare=False)
    plan: dict[int, dict[int, Move]] | None = field(default=None, compare=False)


def priority(plan: dict[int, dict[int, Move]]) -> int:
    """Return a sort key: stripes missing more chunks first, then copies, then balancing."""
    worst = max(sum(m.rebuild for m in moves.values()) for moves in plan.values())
    copies = any(
        not m.rebuild and m.target is None for moves in plan.values() for m in moves.values()
    )
    return -(worst * 2 + copies)


class Repairer:
    def __init__(
        self,
        shards: Mapping[int, Shard],
        cluster: Membership | PrimaryLink,
        settings: RepairSettings,
        gc_delay_s: float,
    ) -> None:
        self._served = shards
        self.cluster = cluster
        self.settings = settings
        self.gc_delay_ns = int(gc_delay_s * 1e9)
        self.counters = RepairCounters()
        self.throttle = (
            Throttle(settings.bandwidth_bytes_s) if settings.bandwidth_bytes_s > 0 else None
        )
        self._wakeup = asyncio.Event()
        self._connection: Connection | None = None
        self._reader: Reader | None = None
        # Set by the metaserver so that the status includes the metadata scrub's figures.
        self.scrubber: MetaScrubber | None = None
        # The out, draining and eligible dataservers for which a full scan found nothing
        # left to do.
        self._clean_for: tuple[frozenset[str], frozenset[str], tuple[str, ...]] | None = None

    @property
    def shards(self) -> list[Shard]:
        """The shards served now: shards move between metaservers."""
        return [shard for shard in self._served.values() if not shard.retired]

    def start(self, address: str) -> None:
        """Open the data path; `address` is this metaserver's, though no call goes there."""
        self._connection = Connection([address])
        self._reader = Reader(self._connection, 1, self.settings.chunk_timeout_s)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def _spend(self, size_bytes: int) -> None:
        if self.throttle is not None:
            await self.throttle.spend(size_bytes)

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            try:
                await self.run_pass()
            except Exception:
                log.exception("[BUG] repair pass failed")
            try:
                await asyncio.wait_for(self._wakeup.wait(), self.settings.interval_s)
            except TimeoutError:
                pass
            self._wakeup.clear()

    # Finding work.

    async def run_pass(self) -> None:
        state = PassState.of(ClusterView(self.cluster.cluster_map()))
        eligible = sorted(
            info.id
            for info in state.view.map.dataservers
            if info.state == pb.DATASERVER_STATE_UP and not info.draining
        )
        signature = (state.lost, state.draining, tuple(eligible))
        scan = signature != self._clean_for
        items: list[RepairItem] = []
        for shard in self.shards:
            items += self._reported(shard)
        if scan:
            items += await self._scan(state, eligible)
        self.counters.queued_objects = len(items)
        self.counters.last_pass_unix_ms = int(time.time() * 1000)
        if not items:
            if scan:
                self._clean_for = signature
            return

        items = _one_per_object(items)
        self.counters.queued_objects = len(items)
        # Read once per pass: the entries that matter were queued before it, since a pass
        # repairs each object once and other objects' chunks have other ids.
        queued = {shard.number: _queued_refs(shard) for shard in {i.shard for i in items}}
        started_s = time.monotonic()
        moved_before = self.counters.repaired_bytes + self.counters.moved_bytes
        slots = asyncio.Semaphore(self.settings.parallel_objects)

        async def repair(item: RepairItem) -> None:
            async with slots:
                if await self._repair_object(item, state, queued[item.shard.number]):
                    self.counters.queued_objects -= 1

        await asyncio.gather(*(repair(item) for item in items))
        moved = self.counters.repaired_bytes + self.counters.moved_bytes - moved_before
        if moved:
            self.counters.rate_bytes_s = moved / max(time.monotonic() - started_s, 1e-6)

    def _reported(self, shard: Shard) -> list[RepairItem]:
        items: list[RepairItem] = []
        cursor = ShardCursor(shard.db, keys.REPAIR_TAG, b"", b"")
        while (suffix := cursor.current()) is not None:
            if len(items) >= self.settings.max_objects_per_pass:
                break
            bucket, key = keys.split_name(suffix)
            entry = meta_pb2.RepairEntry.FromString(cursor.payload())
            reported = frozenset((c.chunk_id, c.dataserver_id) for c in entry.chunks)
            items.append(RepairItem(-2 * len(reported), bucket, key, shard, reported))
            cursor.advance()
        return items

    async def _scan(self, state: PassState, eligible: list[str]) -> list[RepairItem]:
        """Plan the moves of objects with chunks that are lost, draining or worth balancing.

        The scan reads every object record, so it yields to the event loop every
        SCAN_BATCH_RECORDS records: requests go on being served during it.
        """
        balancer = None
        if len(eligible) >= 2:
            counts = await self._count_chunks(eligible)
            balancer = Balancer(counts, domains_of(state.view.map))
        items: list[RepairItem] = []
        limit = self.settings.max_objects_per_pass * len(self.shards)
        scanned = 0
        for shard in self.shards:
            cursor = ShardCursor(shard.db, keys.OBJECT_TAG, b"", b"")
            while (suffix := cursor.current()) is not None and len(items) < limit:
                record = keys.decode_object(cursor.payload())
                plan = plan_moves(record, state, frozenset(), balancer)
                if plan:
                    bucket, key = keys.split_name(suffix)
                    item = RepairItem(priority(plan), bucket, key, shard, frozenset())
                    item.version_id = record.version_id
                    item.plan = plan
                    items.append(item)
                cursor.advance()
                scanned += 1
                if scanned % SCAN_BATCH_RECORDS == 0:
                    await asyncio.sleep(0)
        return items

    async def _count_chunks(self, eligible: list[str]) -> dict[str, int]:
        """Count the chunks this metaserver's layouts place on each eligible dataserver."""
        counts = dict.fromkeys(eligible, 0)
        for shard in self.shards:
            records = shard.records()
            while batch := list(itertools.islice(records, SCAN_BATCH_RECORDS)):
                for target, count in count_chunks(batch, eligible).items():
                    counts[target] += count
                await asyncio.sleep(0)
        return counts

    # Repairing one object.

    async def _repair_object(
        self, item: RepairItem, state: PassState, queued: set[tuple[bytes, str]]
    ) -> bool:
        """Repair one object; return True when it needs nothing more."""
        name = f"{item.bucket}/{display_key(item.key)}"
        record = await item.shard.get_object(item.bucket, item.key)
        if record is None or record.is_inline:
            await item.shard.submit(
                "repair_drop", drop_reports(item.bucket, item.key, item.reported)
            )
            return True
        plan = item.plan
        if plan is None or record.version_id != item.version_id:
            plan = plan_moves(record, state, item.reported, None)
        if not plan:
            await item.shard.submit(
                "repair_drop", drop_reports(item.bucket, item.key, item.reported)
            )
            return True
        try:
            written = await self._rebuild(record, item, state.view, plan, queued)
        except StoreError as error:
            self.counters.failures += 1
            log.warning("repair failed object=%s version=%s: %s", name, record.version_id, error)
            return False
        if written is None:
            return False
        replacements, intent = written
        return await self._commit(record, item, replacements, intent, plan)

    async def _rebuild(
        self,
        record: pb.ObjectRecord,
        item: RepairItem,
        view: ClusterView,
        plan: dict[int, dict[int, Move]],
        queued: set[tuple[bytes, str]],
    ) -> tuple[list[Replacement], int] | None:
        """Rebuild or copy every planned chunk that can be, and write it to its new place.

        Returns the replacements and the sequence of their garbage entry, or None when
        no planned chunk could be read or decoded.
        """
        assert self._connection is not None
        target = ReadTarget(item.bucket, item.key, record)
        contents: list[tuple[int, int, bytes]] = []
        for stripe_index, moves in sorted(plan.items()):
            found = await self._stripe_contents(target, view, stripe_index, moves)
            contents += [(stripe_index, position, data) for position, data in sorted(found.items())]
        if not contents:
            return None

        replacements = self._place(record, view, contents, plan, queued)
        intent = await item.shard.submit(
            "repair_intent",
            queue_intent(
                item.shard,
                [r.new for r in replacements],
                time.time_ns() + int(self.settings.intent_s * 1e9),
                f"unfinished repair of {target.name()}",
            ),
        )
        deadline = Deadline(self.settings.chunk_timeout_s * 2, f"repair of {target.name()}")
        written = 0
        try:
            for replacement, (_, _, data) in zip(replacements, contents, strict=True):
                await self._spend(len(data))
                header = pb.ChunkFileHeader(
                    chunk_id=replacement.new.chunk_id,
                    upload_id=split_chunk_id(replacement.new.chunk_id)[0],
                    bucket=item.bucket,
                    key=item.key,
                    stripe_index=replacement.stripe_index,
                    length_bytes=len(data),
                    crc32c=replacement.new.crc32c,
                )
                await write_chunk(
                    self._connection,
                    view,
                    replacement.new.target,
                    header,
                    chunk_messages(data),
                    deadline.remaining_s(self.settings.chunk_timeout_s),
                )
                written += 1
        except StoreError:
            if written:
                await self._discard(item, replacements[:written], target.name())
            raise
        return replacements, intent

    async def _discard(
        self, item: RepairItem, replacements: Sequence[Replacement], name: str
    ) -> None:
        """Queue the chunks a failed repair wrote for deletion now.

        This attempt never commits them, and their writes returned, so no write of
        theirs is still running. The repair's own entry stays as it was, for the
        chunk whose write failed and may still land.
        """
        await item.shard.submit(
            "repair_discard",
            queue_intent(
                item.shard,
                [r.new for r in replacements],
                time.time_ns(),
                f"chunks written by a failed repair of {name}",
            ),
        )

    def _place(
        self,
        record: pb.ObjectRecord,
        view: ClusterView,
        contents: list[tuple[int, int, bytes]],
        plan: dict[int, dict[int, Move]],
        queued: set[tuple[bytes, str]],
    ) -> list[Replacement]:
        """Choose a dataserver and a new chunk id for each chunk to write.

        The id skips generations that a queued deletion names on the same dataserver,
        such as the chunks of a repair that a crash cut short: that deletion would
        otherwise remove the new chunk once it comes due.
        """
        domains = domains_of(view.map)
        ranking = interleave_domains(
            rank_dataservers(eligible_dataservers(view.map, 0), record.version_id), domains
        )
        chosen: dict[int, list[str]] = {}
        replacements = []
        for stripe_index, position, data in contents:
            stripe = record.layout.stripes[stripe_index]
            moving = plan[stripe_index]
            kept = [c.target for p, c in enumerate(stripe.chunks) if p not in moving]
            taken = kept + chosen.setdefault(stripe_index, [])
            server = moving[position].target or replacement_target(
                ranking, stripe_index, taken, [stripe.chunks[p].target for p in moving], domains
            )
            if server is None:
                raise Unavailable(
                    f"no dataserver can take chunk {position} of stripe {stripe_index}: every "
                    "eligible dataserver already holds a chunk of it; add dataservers"
                )
            chosen[stripe_index].append(server)
            old = stripe.chunks[position]
            chunk_id = rebuilt_chunk_id(old.chunk_id)
            while (chunk_id, server) in queued or chunk_id == old.chunk_id:
                chunk_id = rebuilt_chunk_id(chunk_id)
            new = pb.ChunkRef(
                chunk_id=chunk_id,
                target=server,
                length_bytes=len(data),
                crc32c=crc32c(data),
            )
            if new.crc32c != old.crc32c:
                raise Unavailable(
                    f"rebuilt chunk {old.chunk_id.hex()} of stripe {stripe_index} has CRC32C "
                    f"{new.crc32c:#010x}, not {old.crc32c:#010x}; the surviving chunks disagree"
                )
            replacements.append(Replacement(stripe_index, position, old, new))
        return replacements

    async def _stripe_contents(
        self, target: ReadTarget, view: ClusterView, stripe_index: int, moves: dict[int, Move]
    ) -> dict[int, bytes]:
        """Return the bytes of each planned chunk of a stripe that could be read or decoded.

        A chunk to copy is read as it is; if that fails it is decoded like a lost one.
        """
        stripe = target.record.layout.stripes[stripe_index]
        protection = of_layout(target.record.layout)
        read: dict[int, bytes] = {}
        lost = [p for p, move in moves.items() if move.rebuild]
        for position in (p for p, move in moves.items() if not move.rebuild):
            data = await self._read_whole(target, view, stripe_index, position)
            if data is None:
                lost.append(position)
            else:
                read[position] = data
        result = dict(read)
        if not lost:
            return result

        needed = protection.data_chunks if protection.erasure_coded else 1
        candidates = [p for p in range(len(stripe.chunks)) if p not in lost and p not in read]
        candidates.sort(key=lambda p: (view.read_rank(stripe.chunks[p].target), p))
        while len(read) < needed and candidates:
            # Read as many chunks at once as are still needed.
            batch = candidates[: needed - len(read)]
            candidates = candidates[len(batch) :]
            found = await asyncio.gather(
                *(self._read_whole(target, view, stripe_index, p) for p in batch)
            )
            read.update((p, data) for p, data in zip(batch, found, strict=True) if data is not None)
        if len(read) < needed:
            self.counters.unrecoverable_stripes += 1
            log.error(
                "cannot repair stripe %d of %s: %d of %d chunks readable, %s needs %d",
                stripe_index,
                target.name(),
                len(read),
                len(stripe.chunks),
                protection,
                needed,
            )
            return result
        if protection.erasure_coded:
            coder = codec(protection.data_chunks, protection.parity_chunks)
            result.update(await asyncio.to_thread(coder.decode, read, lost))
        else:
            copy = next(iter(read.values()))
            result.update(dict.fromkeys(lost, copy))
        return result

    async def _read_whole(
        self, target: ReadTarget, view: ClusterView, stripe_index: int, position: int
    ) -> bytes | None:
        """Return one whole chunk, CRC-checked, or None when it cannot be read."""
        assert self._reader is not None
        stripe = target.record.layout.stripes[stripe_index]
        chunk = stripe.chunks[position]
        piece = StripeSlice(stripe_index, stripe, 0, chunk.length_bytes)
        deadline = Deadline(self.settings.chunk_timeout_s, f"repair read of {target.name()}")
        try:
            parts = await self._reader.read_chunk(view, target, piece, chunk, deadline, None)
        except StoreError as error:
            log.warning(
                "repair read failed object=%s stripe=%d position=%d: %s",
                target.name(),
                stripe_index,
                position,
                error,
            )
            return None
        await self._spend(chunk.length_bytes)
        return b"".join(parts)

    async def _commit(
        self,
        record: pb.ObjectRecord,
        item: RepairItem,
        replacements: Sequence[Replacement],
        intent: int,
        plan: dict[int, dict[int, Move]],
    ) -> bool:
        name = f"{item.bucket}/{display_key(item.key)}"
        applied = await item.shard.submit(
            "repair_commit",
            commit_repair(
                item.shard,
                item.bucket,
                item.key,
                record.version_id,
                replacements,
                intent,
                time.time_ns(),
                self.gc_delay_ns,
                int(self.settings.intent_s * 1e9) // 2,
                item.reported,
            ),
        )
        if not applied:
            log.info(
                "repair of %s abandoned: the object changed while it was rebuilt, or the "
                "repair outlasted half of its %.0fs limit",
                name,
                self.settings.intent_s,
            )
            return False
        size = sum(r.new.length_bytes for r in replacements)
        for replacement in replacements:
            if plan[replacement.stripe_index][replacement.position].rebuild:
                self.counters.repaired_chunks += 1
                self.counters.repaired_bytes += replacement.new.length_bytes
            else:
                self.counters.moved_chunks += 1
                self.counters.moved_bytes += replacement.new.length_bytes
        log.info(
            "repaired object=%s version=%s chunks=%d bytes=%d moves=%s",
            name,
            record.version_id,
            len(replacements),
            size,
            ", ".join(f"{r.old.target}->{r.new.target}" for r in replacements),
        )
        return True

    def status(self) -> meta_pb2.RepairStatus:
        counters = self.counters
        scrub = self.scrubber.counters if self.scrubber is not None else None
        return meta_pb2.RepairStatus(
            queued_objects=counters.queued_objects,
            repaired_chunks=counters.repaired_chunks,
            repaired_bytes=counters.repaired_bytes,
            rate_bytes_s=counters.rate_bytes_s,
            failures=counters.failures,
            unrecoverable_stripes=counters.unrecoverable_stripes,
            last_pass_unix_ms=counters.last_pass_unix_ms,
            bandwidth_bytes_s=self.settings.bandwidth_bytes_s,
            moved_chunks=counters.moved_chunks,
            moved_bytes=counters.moved_bytes,
            scrub_checked_chunks=scrub.checked_chunks if scrub else 0,
            scrub_bad_chunks=scrub.bad_chunks if scrub else 0,
            scrub_passes=scrub.passes if scrub else 0,
        )


def _one_per_object(items: list[RepairItem]) -> list[RepairItem]:
    """Sort items by priority and keep one per object, merging what was reported for it.

    Two repairs of one object at once could write the same chunk id to the same
    dataserver, and the one that loses the commit would then delete the other's chunk.
    """
    merged: dict[tuple[int, str, bytes], RepairItem] = {}
    for item in sorted(items):
        name = (item.shard.number, item.bucket, item.key)
        first = merged.get(name)
        if first is None:
            merged[name] = item
        elif item.reported:
            # A plan made without the reports could miss a reported chunk: plan again.
            first.reported = first.reported | item.reported
            first.plan = None
    return list(merged.values())


def _queued_refs(shard: Shard) -> set[tuple[bytes, str]]:
    """Return (chunk id, dataserver id) of every chunk the shard's GC queue will delete."""
    refs: set[tuple[bytes, str]] = set()
    cursor = ShardCursor(shard.db, keys.GC_TAG, b"", b"")
    while cursor.current() is not None:
        entry = pb.GcEntry.FromString(cursor.payload())
        refs.update((chunk.chunk_id, chunk.target) for chunk in entry.chunks)
        cursor.advance()
    return refs
