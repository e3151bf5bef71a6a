"""Metadata shards driven in-process through rocksdict, with no server in between.

The baselines of bench/metadata_scale.py and the comparisons of
bench/rocks_tuning.py and bench/repair_scan.py use it. Object records are
encoded as a metaserver's commit encodes them and written in batches to
shard databases opened with metaserver.rocks options. They are read back
with random point reads, and the files of every database are counted.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import rocksdict
from metaload import KeySpace

from metaserver import keys
from metaserver.rocks import RocksEnv
from store._pb import common_pb2 as pb
from store.checksum import crc32c
from store.layout import chunk_id, new_upload_id
from store.shardmap import shard_of
from store.upload import chunk_etag

# The layout of chunked records: ec:4+2 with 4 MiB chunks.
EC_DATA_CHUNKS = 4
EC_PARITY_CHUNKS = 2
EC_CHUNK_BYTES = 4 << 20
# Seconds between polls while waiting for background compactions.
COMPACTION_POLL_S = 0.2
COMPACTION_WAIT_S_MAX = 600.0


def object_record(body: bytes, now_unix_ns: int) -> pb.ObjectRecord:
    """Return the record that a commit of an inline `body` stores, put with SDK defaults.

    The SDK's record_of sets size, ETag (the MD5), inline data and CRC32C; the shard's
    commit adds the version id and both times.
    """
    record = pb.ObjectRecord(size_bytes=len(body), etag=hashlib.md5(body).hexdigest())
    record.is_inline = True
    record.inline_data = body
    record.inline_crc32c = crc32c(body)
    record.version_id = new_upload_id()
    record.modified_unix_ns = now_unix_ns
    record.created_unix_ns = now_unix_ns
    return record


def chunked_record(
    stripes: int, now_unix_ns: int, dataserver_ids: list[str], chooser: random.Random
) -> pb.ObjectRecord:
    """Return the record of an ec:4+2 object of `stripes` full stripes of 4 MiB chunks.

    Its chunks sit on dataservers drawn from `dataserver_ids`, and its CRC32Cs are
    random, as the SDK and a commit would store them.
    """
    upload_id = new_upload_id()
    layout = pb.Layout(chunk_size_bytes=EC_CHUNK_BYTES, replicas=1)
    layout.data_chunks, layout.parity_chunks = EC_DATA_CHUNKS, EC_PARITY_CHUNKS
    stripe_bytes = EC_CHUNK_BYTES * EC_DATA_CHUNKS
    for index in range(stripes):
        stripe = layout.stripes.add(offset_bytes=index * stripe_bytes, length_bytes=stripe_bytes)
        targets = chooser.sample(dataserver_ids, EC_DATA_CHUNKS + EC_PARITY_CHUNKS)
        for position, target in enumerate(targets):
            stripe.chunks.add(
                chunk_id=chunk_id(upload_id, index, position),
                target=target,
                length_bytes=EC_CHUNK_BYTES,
                crc32c=chooser.getrandbits(32),
            )
    record = pb.ObjectRecord(size_bytes=stripes * stripe_bytes, etag=chunk_etag(layout))
    record.layout.CopyFrom(layout)
    record.version_id = upload_id
    record.modified_unix_ns = record.created_unix_ns = now_unix_ns
    return record


def dataserver_ids(count: int, seed: int = 0) -> list[str]:
    """Return `count` dataserver ids in the form dataservers choose ("ds-" and 12 hex digits)."""
    chooser = random.Random(seed)
    return [f"ds-{chooser.getrandbits(48):012x}" for _ in range(count)]


def encoded_objects(
    space: KeySpace,
    bucket: str,
    indices: Iterable[int],
    stripes: int = 0,
    dataservers: list[str] | None = None,
) -> list[tuple[bytes, bytes]]:
    """Return the (database key, value) pairs of objects of a key space, in index order.

    With `stripes`, each object is an ec:4+2 object of that many stripes on
    `dataservers` (default: 1000 of them) instead of the key space's inline body.
    """
    chooser = random.Random(stripes)
    targets = dataservers or dataserver_ids(1000)
    pairs = []
    for index in indices:
        now_unix_ns = time.time_ns()
        if stripes:
            record = chunked_record(stripes, now_unix_ns, targets, chooser)
        else:
            record = object_record(space.body(index), now_unix_ns)
        key = keys.object_key(bucket, space.key(index).encode())
        pairs.append((key, keys.encode_object(record)))
    return pairs


@dataclass(frozen=True, slots=True)
class RawRate:
    """Operations done in-process, the wall time and the CPU time they took."""

    operations: int
    elapsed_s: float
    cpu_s: float

    @property
    def per_s(self) -> float:
        return self.operations / self.elapsed_s

    @property
    def per_cpu_s(self) -> float:
        """Operations per CPU-second: steadier than `per_s` when other work shares the cores."""
        return self.operations / self.cpu_s


def file_kind(name: str) -> str:
    """Return what a file of a RocksDB directory is: table, wal, info_log or other."""
    if name.endswith(".sst"):
        return "table"
    if name.endswith(".log"):
        return "wal"
    if name == "LOG" or name.startswith("LOG.old."):
        return "info_log"
    return "other"


def directory_bytes(path: Path) -> dict[str, int]:
    """Return the bytes of every file under `path` by file_kind, and their sum as "total".

    RocksDB writes a new info LOG and OPTIONS file at every open, so "info_log" and
    "other" grow with the number of opens and not with the data.
    """
    sizes = {"table": 0, "wal": 0, "info_log": 0, "other": 0}
    for item in path.rglob("*"):
        if item.is_file():
            sizes[file_kind(item.name)] += item.stat().st_size
    sizes["total"] = sum(sizes.values())
    return sizes


# Fields of RocksDB's aggregated table properties that the benchmarks report.
TABLE_PROPERTIES = {
    "# entries": "entries",
    "raw key size": "raw_key_bytes",
    "raw value size": "raw_value_bytes",
    "data block size": "data_block_bytes",
    "filter block size": "filter_block_bytes",
}
INDEX_PROPERTY_PREFIX = "index block size"


def table_properties(db: rocksdict.Rdict) -> dict[str, int]:
    """Return the entries and block sizes summed over every table of `db`."""
    text = db.property_value("rocksdb.aggregated-table-properties") or ""
    found = {name: 0 for name in [*TABLE_PROPERTIES.values(), "index_block_bytes"]}
    for item in text.split(";"):
        name, _, value = item.strip().partition("=")
        if name in TABLE_PROPERTIES:
            found[TABLE_PROPERTIES[name]] = int(value)
        elif name.startswith(INDEX_PROPERTY_PREFIX):
            found["index_block_bytes"] = int(value)
    return found


def wait_compactions(db: rocksdict.Rdict) -> None:
    """Wait until `db` has no flush or compaction running or pending."""
    deadline_s = time.monotonic() + COMPACTION_WAIT_S_MAX
    names = (
        "rocksdb.compaction-pending",
        "rocksdb.num-running-compactions",
        "rocksdb.num-running-flushes",
        "rocksdb.mem-table-flush-pending",
    )
    while any(db.property_int_value(name) for name in names):
        if time.monotonic() > deadline_s:
            raise TimeoutError(f"compactions of {db.path()} still run after {deadline_s}s")
        time.sleep(COMPACTION_POLL_S)


class RawShards:
    """Shard databases opened in this process and routed by shard_of, as a metaserver does.

    `paths` maps each shard number to its database directory; reads and writes of a
    key whose shard is not among them raise KeyError.
    """

    def __init__(
        self, paths: dict[int, Path], env: RocksEnv, shard_count: int, read_only: bool = False
    ) -> None:
        self.paths = paths
        self.shard_count = shard_count
        self.dbs: dict[int, rocksdict.Rdict] = {}
        for number, path in paths.items():
            if read_only:
                self.dbs[number] = rocksdict.Rdict(
                    str(path), env.options(), access_type=rocksdict.AccessType.read_only()
                )
            else:
                self.dbs[number] = env.open(path)

    @classmethod
    def create(cls, root: Path, env: RocksEnv, shard_count: int) -> RawShards:
        """Open (or create) every shard under `root`, named as a metaserver names them."""
        return cls({n: root / f"{n:04d}" for n in range(shard_count)}, env, shard_count)

    def close(self) -> None:
        for db in self.dbs.values():
            db.close()

    def shard(self, bucket: str, key: str) -> rocksdict.Rdict:
        return self.dbs[shard_of(bucket, key.encode(), self.shard_count)]

    def put_batches(
        self,
        bucket: str,
        pairs: list[tuple[bytes, bytes]],
        batch_keys: int,
        sync: bool,
        threads: int = 1,
    ) -> RawRate:
        """Write the pairs in per-shard batches of `batch_keys`; the CPU time is the process's.

        With `sync`, each batch is written unsynced and the WAL then synced with
        flush_wal(True), as a shard's writer does. With several `threads`, each
        writes whole shards, so one shard's batches stay in order.
        """
        by_shard: dict[int, list[tuple[bytes, bytes]]] = {}
        prefix_bytes = len(keys.bucket_prefix(bucket))
        for key, value in pairs:
            number = shard_of(bucket, key[prefix_bytes:], self.shard_count)
            by_shard.setdefault(number, []).append((key, value))

        def write_shard(number: int) -> None:
            db = self.dbs[number]
            shard_pairs = by_shard[number]
            for first in range(0, len(shard_pairs), batch_keys):
                batch = rocksdict.WriteBatch(raw_mode=True)
                for key, value in shard_pairs[first : first + batch_keys]:
                    batch.put(key, value)
                db.write(batch)
                if sync:
                    db.flush_wal(True)

        start_s = time.perf_counter()
        start_cpu_s = time.process_time()
        if threads == 1:
            for number in by_shard:
                write_shard(number)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(write_shard, by_shard))
        return RawRate(len(pairs), time.perf_counter() - start_s, time.process_time() - start_cpu_s)

    def get_random(
        self,
        bucket: str,
        space: KeySpace,
        key_count: int,
        duration_s: float,
        seed: int,
        missing: bool = False,
    ) -> RawRate:
        """Read random objects 0 .. key_count-1 for `duration_s` in this thread.

        Every object must exist, so a read that finds none raises. With `missing`,
        read objects key_count .. 2*key_count-1 instead, which must not exist.
        """
        first = key_count if missing else 0
        chooser = random.Random(seed)
        reads = 0
        start_s = time.perf_counter()
        start_cpu_s = time.thread_time()
        end_s = start_s + duration_s
        while time.perf_counter() < end_s:
            for _ in range(100):
                name = space.key(first + chooser.randrange(key_count))
                found = self.shard(bucket, name).get(keys.object_key(bucket, name.encode()))
                if (found is None) != missing:
                    raise LookupError(
                        f"{bucket}/{name} found={found is not None}, missing={missing}"
                    )
            reads += 100
        return RawRate(reads, time.perf_counter() - start_s, time.thread_time() - start_cpu_s)

    def settle(self) -> None:
        """Flush every memtable and wait for the compactions RocksDB schedules on its own."""
        for db in self.dbs.values():
            db.flush(True)
        for db in self.dbs.values():
            wait_compactions(db)

    def compact(self) -> None:
        """Rewrite every table of every database, the last level too, and wait for it.

        Without `force`, a manual compaction leaves alone the last level's tables,
        which may have arrived there by trivial moves and so never got its compression.
        """
        options = rocksdict.CompactOptions()
        options.set_bottommost_level_compaction(rocksdict.BottommostLevelCompaction.force())
        for db in self.dbs.values():
            db.compact_range(None, None, options)
        for db in self.dbs.values():
            wait_compactions(db)

    def table_properties(self) -> dict[str, int]:
        """Return table_properties summed over every shard."""
        totals: dict[str, int] = {}
        for db in self.dbs.values():
            for name, value in table_properties(db).items():
                totals[name] = totals.get(name, 0) + value
        return totals

    def disk_bytes(self) -> int:
        return sum(directory_bytes(path)["total"] for path in self.paths.values())
