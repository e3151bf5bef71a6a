"""Bad chunk reports in a shard's repair entries, on a real RocksDB shard.

A report may arrive while repair works on the same object, and finishing
or dropping that repair must keep the report for the next pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from metaserver import keys
from metaserver.repair_ops import (
    Replacement,
    commit_repair,
    drop_reports,
    queue_intent,
    queue_reports,
)
from metaserver.rocks import RocksEnv
from metaserver.shard import GroupView, Shard
from store._pb import common_pb2 as pb
from store._pb import meta_pb2
from store.layout import chunk_id, rebuilt_chunk_id

UPLOAD_ID = "0123456789abcdef0123456789abcdef"
BUCKET = "reports"
KEY = b"obj"
SERVERS = ["ds-a", "ds-b", "ds-c"]
CHUNK_BYTES = 1000
NOW_UNIX_NS = 10**18
INTENT_NS = 3600 * 10**9

Pair = tuple[bytes, str]


def object_record() -> pb.ObjectRecord:
    """Return a record of one 2+1 stripe with its chunks on ds-a, ds-b and ds-c."""
    record = pb.ObjectRecord(version_id=UPLOAD_ID, size_bytes=2 * CHUNK_BYTES)
    record.layout.chunk_size_bytes = CHUNK_BYTES
    stripe = record.layout.stripes.add(offset_bytes=0, length_bytes=2 * CHUNK_BYTES)
    for position, server in enumerate(SERVERS):
        stripe.chunks.add(
            chunk_id=chunk_id(UPLOAD_ID, 0, position), target=server, length_bytes=CHUNK_BYTES
        )
    return record


def report(position: int) -> meta_pb2.BadChunk:
    return meta_pb2.BadChunk(
        bucket=BUCKET,
        key=KEY,
        chunk_id=chunk_id(UPLOAD_ID, 0, position),
        dataserver_id=SERVERS[position],
        reason="corrupt",
    )


def pair(position: int) -> Pair:
    return chunk_id(UPLOAD_ID, 0, position), SERVERS[position]


def reported_pairs(shard: Shard) -> set[Pair]:
    """Return the (chunk id, dataserver id) pairs in the object's repair entry."""
    value = shard.db.get(keys.repair_key(BUCKET, KEY))
    if value is None:
        return set()
    entry = meta_pb2.RepairEntry.FromString(value)
    return {(chunk.chunk_id, chunk.dataserver_id) for chunk in entry.chunks}


def put_record(record: pb.ObjectRecord) -> Callable[[GroupView], None]:
    def run(view: GroupView) -> None:
        view.put(keys.object_key(BUCKET, KEY), keys.encode_object(record))

    return run


async def report_during_commit(path: Path) -> tuple[bool, set[Pair]]:
    """Commit a repair of report 0 after report 1 arrived, and return the result and entry."""
    shard = Shard(0, path, RocksEnv(), None)
    shard.start()
    try:
        record = object_record()
        await shard.submit("put", put_record(record))
        await shard.submit("report", queue_reports([report(0)], NOW_UNIX_NS))
        handled = frozenset(reported_pairs(shard))
        await shard.submit("report", queue_reports([report(1)], NOW_UNIX_NS))

        old = record.layout.stripes[0].chunks[0]
        new = pb.ChunkRef(
            chunk_id=rebuilt_chunk_id(old.chunk_id), target="ds-d", length_bytes=CHUNK_BYTES
        )
        intent = await shard.submit(
            "intent", queue_intent(shard, [new], NOW_UNIX_NS + INTENT_NS, "test repair")
        )
        replacements = [Replacement(0, 0, old, new)]
        commit = commit_repair(
            shard, BUCKET, KEY, UPLOAD_ID, replacements, intent, NOW_UNIX_NS, 0, 0, handled
        )
        applied = await shard.submit("commit", commit)
        return applied, reported_pairs(shard)
    finally:
        await shard.stop()


async def report_during_drop(path: Path) -> set[Pair]:
    """Drop the handled report 2 after report 1 arrived, and return the entry."""
    shard = Shard(0, path, RocksEnv(), None)
    shard.start()
    try:
        await shard.submit("put", put_record(object_record()))
        await shard.submit("report", queue_reports([report(2)], NOW_UNIX_NS))
        handled = frozenset(reported_pairs(shard))
        await shard.submit("report", queue_reports([report(1)], NOW_UNIX_NS))

        await shard.submit("drop", drop_reports(BUCKET, KEY, handled))
        return reported_pairs(shard)
    finally:
        await shard.stop()


def test_commit_keeps_later_report(tmp_path: Path) -> None:
    applied, left = asyncio.run(report_during_commit(tmp_path / "shard"))
    assert applied, "the repair was not committed"
    assert pair(0) not in left, "the repaired chunk is still reported"
    assert pair(1) in left, "the report that arrived during the repair was dropped"


def test_drop_keeps_later_report(tmp_path: Path) -> None:
    left = asyncio.run(report_during_drop(tmp_path / "shard"))
    assert left == {pair(1)}, f"expected only the later report to stay, found {left}"
