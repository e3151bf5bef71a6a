"""Compare RocksDB settings for metadata shards: bytes per object, write and read rates.

Each variant is a RocksTuning (metaserver/rocks.py) applied to --shards
fresh databases in this process. The same --objects records of the dataset
key space, encoded as a commit encodes them, go to the shards in per-shard
batches: inline objects, or with --stripes ec:4+2 objects of that many
stripes. The script then counts every file of every database three times:
right after the writes (WAL included), after a flush and the compactions
RocksDB schedules itself, and after a full manual compaction. Random point
reads of existing keys run after the flush and after the full compaction.
No server and no gRPC take part, so the figures isolate the storage engine;
bench/metadata_scale.py measures the real path. Variants run in the order
given, and --repeat runs the whole list again, so drift of the machine's
load shows up as spread between repetitions.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import Row, median, new_report, progress
from metaload import KEY_SPACES
from rawrocks import RawShards, encoded_objects

from metaserver.rocks import MIB, RocksEnv, RocksTuning

BUCKET = "datasets"
KIB = 1 << 10
# RocksTuning fields of each variant, beside the defaults.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "lz4 above the last level": {"compression": "lz4"},
    "lz4 everywhere": {"compression": "lz4", "bottommost_compression": "lz4"},
    "blocks of 16 KiB": {"block_size_bytes": 16 * KIB},
    "zstd dictionary 16 KiB": {"zstd_dictionary_bytes": 16 * KIB},
    "no bloom filter": {"bloom_bits_per_key": 0},
    "optimize_filters_for_hits": {"optimize_filters_for_hits": True},
    "block cache 32 MiB": {"block_cache_bytes": 32 * MIB},
    "block cache 32 MiB, blocks of 16 KiB": {
        "block_cache_bytes": 32 * MIB,
        "block_size_bytes": 16 * KIB,
    },
    "write buffers 64 MiB": {"write_buffer_bytes": 64 * MIB},
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1_000_000, help="objects written")
    parser.add_argument("--shards", type=int, default=32, help="shard databases")
    parser.add_argument(
        "--batch-keys", type=int, default=32, help="objects per write batch of one shard"
    )
    parser.add_argument(
        "--sync", action="store_true", help="sync the WAL after every batch, as a metaserver does"
    )
    parser.add_argument(
        "--stripes",
        type=int,
        default=0,
        help="write ec:4+2 objects of this many 16 MiB stripes instead of inline objects",
    )
    parser.add_argument("--read-s", type=float, default=5.0, help="seconds of each read run")
    parser.add_argument("--repeat", type=int, default=1, help="passes over the variant list")
    parser.add_argument(
        "--variants", nargs="+", choices=sorted(VARIANTS), default=None, help="default: all"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="directory for the databases (removed after each variant)",
    )
    return parser.parse_args()


def run_variant(
    name: str, pairs: list[tuple[bytes, bytes]], args: argparse.Namespace
) -> dict[str, float]:
    """Write, settle and read one variant's shards; return its figures."""
    tuning = dataclasses.replace(RocksTuning(), **VARIANTS[name])
    root = Path(tempfile.mkdtemp(prefix="rocks-tuning-", dir=args.work_dir))
    shards = RawShards.create(root, RocksEnv(tuning), args.shards)
    try:
        space = KEY_SPACES["dataset"]
        started_cpu_s = time.process_time()
        writes = shards.put_batches(BUCKET, pairs, args.batch_keys, args.sync)
        figures = {"writes_per_s": writes.per_s, "writes_per_cpu_s": writes.per_cpu_s}
        figures["bytes_after_writes"] = shards.disk_bytes() / len(pairs)
        started_s = time.perf_counter()
        shards.settle()
        figures["settle_s"] = time.perf_counter() - started_s
        # Every thread of the process: the writes, flushes and compactions.
        figures["write_cpu_us_per_object"] = (
            (time.process_time() - started_cpu_s) / len(pairs) * 1e6
        )
        figures["bytes_settled"] = shards.disk_bytes() / len(pairs)
        tables = shards.table_properties()
        figures["index_bytes_settled"] = tables["index_block_bytes"] / len(pairs)
        figures["filter_bytes_settled"] = tables["filter_block_bytes"] / len(pairs)
        reads = shards.get_random(BUCKET, space, len(pairs), args.read_s, seed=1)
        figures["reads_per_cpu_s_settled"] = reads.per_cpu_s
        # Keys past the loaded ones: a commit of a new key reads one such first.
        misses = shards.get_random(BUCKET, space, len(pairs), args.read_s, seed=3, missing=True)
        figures["misses_per_cpu_s_settled"] = misses.per_cpu_s
        started_s = time.perf_counter()
        shards.compact()
        figures["compact_s"] = time.perf_counter() - started_s
        figures["bytes_compacted"] = shards.disk_bytes() / len(pairs)
        reads = shards.get_random(BUCKET, space, len(pairs), args.read_s, seed=2)
        figures["reads_per_cpu_s_compacted"] = reads.per_cpu_s
    finally:
        shards.close()
        shutil.rmtree(root, ignore_errors=True)
    return figures


def main() -> None:
    args = parse_args()
    names = args.variants or list(VARIANTS)
    report = new_report(
        "rocks_tuning", {**vars(args), "work_dir": str(args.work_dir)}, args.work_dir
    )
    progress(f"encoding {args.objects:,} records")
    pairs = encoded_objects(KEY_SPACES["dataset"], BUCKET, range(args.objects), args.stripes)
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    for repetition in range(args.repeat):
        for name in names:
            figures = run_variant(name, pairs, args)
            for figure, value in figures.items():
                samples[name].setdefault(figure, []).append(value)
            progress(
                f"{repetition + 1}/{args.repeat} {name}: "
                + ", ".join(f"{figure} {value:,.1f}" for figure, value in figures.items())
            )
    baseline = samples[names[0]]
    for name in names:
        for figure, unit in (
            ("bytes_settled", "bytes/object"),
            ("bytes_compacted", "bytes/object"),
            ("bytes_after_writes", "bytes/object"),
            ("index_bytes_settled", "bytes/object"),
            ("filter_bytes_settled", "bytes/object"),
            ("writes_per_cpu_s", "objects/CPU-s"),
            ("write_cpu_us_per_object", "CPU-us/object"),
            ("reads_per_cpu_s_settled", "reads/CPU-s"),
            ("misses_per_cpu_s_settled", "reads/CPU-s"),
            ("reads_per_cpu_s_compacted", "reads/CPU-s"),
        ):
            report.add(
                Row(f"{name}: {figure}", unit, samples[name][figure], names[0], baseline[figure])
            )
    report.details["samples"] = samples
    report.details["medians"] = {
        name: {figure: median(values) for figure, values in figures.items()}
        for name, figures in samples.items()
    }
    report.finish()


if __name__ == "__main__":
    main()
