"""Shard operations of repair: queueing reported chunks and swapping rebuilt chunks in.

Each function returns an operation for `Shard.submit`, so it runs in the
shard's writer and its effects are durable together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from metaserver import keys
from metaserver.objects import load_object, object_name, queue_garbage
from metaserver.shard import GroupView, Shard
from store._pb import common_pb2 as pb
from store._pb import meta_pb2


@dataclass(frozen=True, slots=True)
class Replacement:
    """A rebuilt chunk that takes the place of a lost one in a layout."""

    stripe_index: int
    position: int
    old: pb.ChunkRef
    new: pb.ChunkRef


def queue_reports(
    reports: Sequence[meta_pb2.BadChunk], now_unix_ns: int
) -> Callable[[GroupView], int]:
    """Queue objects whose layout names a reported chunk; return how many were queued."""

    def run(view: GroupView) -> int:
        queued = 0
        for report in reports:
            record = load_object(view, report.bucket, report.key)
            if record is None or not _names(record, report.chunk_id, report.dataserver_id):
                continue
            entry_key = keys.repair_key(report.bucket, report.key)
            value = view.get(entry_key)
            entry = (
                meta_pb2.RepairEntry() if value is None else meta_pb2.RepairEntry.FromString(value)
            )
            if any(
                c.chunk_id == report.chunk_id and c.dataserver_id == report.dataserver_id
                for c in entry.chunks
            ):
                continue
            entry.chunks.append(report)
            entry.queued_unix_ns = now_unix_ns
            view.put(entry_key, entry.SerializeToString())
            queued += 1
        return queued

    return run


def _names(record: pb.ObjectRecord, chunk_id: bytes, dataserver_id: str) -> bool:
    return any(
        chunk.chunk_id == chunk_id and chunk.target == dataserver_id
        for stripe in record.layout.stripes
        for chunk in stripe.chunks
    )


def queue_intent(
    shard: Shard, chunks: Sequence[pb.ChunkRef], not_before_unix_ns: int, reason: str
) -> Callable[[GroupView], int]:
    """Queue chunks about to be written for deletion later; return the entry's sequence.

    A repair that finishes removes the entry in the same batch as the layout change,
    so only the chunks of a repair that died are ever deleted.
    """

    def run(view: GroupView) -> int:
        sequence = shard.allocate_gc_sequence()
        entry = pb.GcEntry(not_before_unix_ns=not_before_unix_ns, reason=reason)
        entry.chunks.extend(chunks)
        view.put(keys.gc_key(sequence), entry.SerializeToString())
        return sequence

    return run


def commit_repair(
    shard: Shard,
    bucket: str,
    key: bytes,
    version_id: str,
    replacements: Sequence[Replacement],
    intent_sequence: int,
    now_unix_ns: int,
    gc_delay_ns: int,
    min_intent_left_ns: int,
    handled: frozenset[tuple[bytes, str]],
) -> Callable[[GroupView], bool]:
    """Swap rebuilt chunks into the object's layout if it still names the lost ones.

    The reports in `handled` leave the object's repair entry, and so do reports of
    the replaced chunks, but reports that arrived during the repair stay in it.
    Returns False, and makes the new chunks due for deletion now, when the object
    was overwritten, deleted or changed while it was being repaired. It also returns
    False when the garbage entry of the new chunks comes due within
    `min_intent_left_ns`, because the collector might delete them after the commit.
    """
    name = object_name(bucket, key)

    def run(view: GroupView) -> bool:
        record = load_object(view, bucket, key)
        intent_key = keys.gc_key(intent_sequence)
        intent = view.get(intent_key)
        if intent is None:
            return False
        left_ns = pb.GcEntry.FromString(intent).not_before_unix_ns - now_unix_ns
        if (
            left_ns < min_intent_left_ns
            or record is None
            or record.version_id != version_id
            or not _unchanged(record, replacements)
        ):
            entry = pb.GcEntry(
                not_before_unix_ns=now_unix_ns, reason=f"repair of {name} lost a race"
            )
            entry.chunks.extend(r.new for r in replacements)
            view.put(intent_key, entry.SerializeToString())
            return False
        for replacement in replacements:
            chunk = record.layout.stripes[replacement.stripe_index].chunks[replacement.position]
            chunk.CopyFrom(replacement.new)
        view.put(keys.object_key(bucket, key), keys.encode_object(record))
        view.delete(intent_key)
        _drop_handled(view, bucket, key, record, handled)
        queue_garbage(
            view,
            shard,
            [r.old for r in replacements],
            (),
            now_unix_ns + gc_delay_ns,
            f"chunks of {name} replaced by repair",
        )
        return True

    return run


def _unchanged(record: pb.ObjectRecord, replacements: Sequence[Replacement]) -> bool:
    stripes = record.layout.stripes
    for replacement in replacements:
        if replacement.stripe_index >= len(stripes):
            return False
        chunks = stripes[replacement.stripe_index].chunks
        if replacement.position >= len(chunks) or chunks[replacement.position] != replacement.old:
            return False
    return True


def drop_reports(
    bucket: str, key: bytes, handled: frozenset[tuple[bytes, str]]
) -> Callable[[GroupView], None]:
    """Remove the handled reports of an object that needs no repair, or no longer exists."""

    def run(view: GroupView) -> None:
        _drop_handled(view, bucket, key, load_object(view, bucket, key), handled)

    return run


def _drop_handled(
    view: GroupView,
    bucket: str,
    key: bytes,
    record: pb.ObjectRecord | None,
    handled: frozenset[tuple[bytes, str]],
) -> None:
    """Remove from an object's repair entry the reports that `handled` names, and stale ones.

    Reports queued while the repair ran are kept, so the next pass repairs their
    chunks. A stale report names a chunk that the layout no longer has.
    """
    entry_key = keys.repair_key(bucket, key)
    value = view.get(entry_key)
    if value is None:
        return
    entry = meta_pb2.RepairEntry.FromString(value)
    remaining = [
        chunk
        for chunk in entry.chunks
        if (chunk.chunk_id, chunk.dataserver_id) not in handled
        and record is not None
        and _names(record, chunk.chunk_id, chunk.dataserver_id)
    ]
    if not remaining:
        view.delete(entry_key)
        return
    if len(remaining) < len(entry.chunks):
        del entry.chunks[:]
        entry.chunks.extend(remaining)
        view.put(entry_key, entry.SerializeToString())
