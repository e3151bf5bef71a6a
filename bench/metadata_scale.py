"""Metadata at scale: ingest, bytes on disk, stat and page latency with millions of objects.

Starts two metaserver processes with 32 of 64 shards each and no
dataservers. It loads a small bucket (10,000 objects) and a large one
(--objects) with small inline objects of the dataset key space
(bench/metaload.py) through the real commit path, from loader processes
with many AsyncClient tasks each. The loaded cluster stays in
--cluster-dir, and --reuse loads only the batches that are missing, so a
crashed run resumes.

Then it measures, each figure beside a baseline from the same run:

- ingest rate: objects/s over intervals of --interval-s, median, beside
  rocksdict writing the same records in-process in synced batches;
- bytes on disk per object: every file of every shard database (tables,
  WAL, MANIFEST, LOG, OPTIONS), right after the load with the metaservers
  still running, after a flush and the compactions RocksDB schedules
  itself, and after a full compaction at the end;
- stat ops/s of random existing keys from --stat-processes processes of
  --stat-concurrency tasks, beside rocksdict point reads of the same keys
  from the same databases (opened read-only) in this process;
- ListObjectsV2 page latency (1000 keys), first page and a middle page
  reached with start_after, in the large bucket beside the small one.

The metaservers run with --meta-scrub-interval-s 0: otherwise a restarted
metaserver starts a scrub pass over every object at once, and it would run
beside the measurements.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import grpc
from benchlib import (
    BENCH_DIR,
    RateSample,
    Row,
    Target,
    load_average,
    median,
    new_report,
    process_cpu_s,
    progress,
    run_async_load,
)
from listing import ListingBench, latency_details, page_rows
from metaload import (
    KEY_SPACES,
    LoadSettings,
    Marker,
    add_load_arguments,
    create_buckets,
    load_bucket,
    prepare_directory,
)
from rawrocks import RawShards, directory_bytes, encoded_objects

from metaserver.rocks import RocksEnv
from store import AsyncClient
from store._pb import meta_pb2, meta_pb2_grpc
from store.cluster import LocalCluster
from store.rpc import CHANNEL_OPTIONS

SMALL_BUCKET = "meta-small"
LARGE_BUCKET = "meta-large"
SMALL_OBJECTS = 10_000
SHARDS = 64
METASERVERS = 2
META_ARGS = ["--meta-scrub-interval-s", "0"]
BYTES_TARGET = Target("max_value", 300)
# A restarted metaserver's first repair pass reads every object record before it
# serves requests, so a start may take minutes with millions of objects.
START_TIMEOUT_S = 900.0
SPACE = KEY_SPACES["dataset"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--objects", type=int, default=10_000_000, help="objects in the large bucket"
    )
    add_load_arguments(parser, BENCH_DIR / "results" / "metadata-cluster", load_concurrency=512)
    parser.add_argument(
        "--interval-s", type=float, default=30.0, help="seconds per interval of the ingest rate"
    )
    parser.add_argument(
        "--baseline-objects",
        type=int,
        default=200_000,
        help="objects that the in-process rocksdict baseline writes per repetition",
    )
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of each rate")
    parser.add_argument("--stat-s", type=float, default=5.0, help="seconds of each stat run")
    parser.add_argument("--stat-processes", type=int, default=2, help="stat client processes")
    parser.add_argument(
        "--stat-concurrency", type=int, default=64, help="stat tasks per client process"
    )
    parser.add_argument("--page-samples", type=int, default=50, help="samples of each page")
    return parser.parse_args()


# The cluster.


def new_cluster(directory: Path) -> LocalCluster:
    return LocalCluster(
        directory, dataservers=0, shards=SHARDS, metaservers=METASERVERS, meta_args=META_ARGS
    )


def metaserver_status(address: str) -> meta_pb2.MetaserverStatus:
    with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = meta_pb2_grpc.MetaServiceStub(channel)
        status: meta_pb2.MetaserverStatus = stub.GetStatus(meta_pb2.GetStatusRequest(), timeout=30)
    return status


def start_cluster(directory: Path) -> tuple[LocalCluster, float]:
    """Start the cluster and wait until each metaserver finished its first repair pass.

    Returns the cluster and the seconds until then.
    """
    cluster = new_cluster(directory)
    started_s = time.perf_counter()
    started_unix_ms = int(time.time() * 1000)
    cluster.start(timeout_s=START_TIMEOUT_S)
    for process in cluster.metaservers:
        while metaserver_status(process.address).repair.last_pass_unix_ms < started_unix_ms:
            time.sleep(0.5)
    return cluster, time.perf_counter() - started_s


def metaserver_cpu_s(cluster: LocalCluster) -> float:
    return sum(process_cpu_s(process.pid) for process in cluster.metaservers)


def metaserver_rss_mib(cluster: LocalCluster) -> list[float]:
    """Return the resident memory of each metaserver process in MiB."""
    sizes = []
    for process in cluster.metaservers:
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(int(line.split()[1]) / 1024)
    return sizes


def commit_counts(cluster: LocalCluster) -> tuple[int, int]:
    """Return the commits and synced write batches of every shard since the start."""
    commits = sync_writes = 0
    for process in cluster.metaservers:
        for shard in metaserver_status(process.address).shards:
            commits += shard.commits
            sync_writes += shard.sync_writes
    return commits, sync_writes


def shard_databases(directory: Path, read_only: bool = False) -> RawShards:
    """Open the shard databases of every metaserver in this process."""
    per_metaserver = SHARDS // METASERVERS
    paths = {
        number: directory / f"meta-{number // per_metaserver}" / "shards" / f"{number:04d}"
        for number in range(SHARDS)
    }
    return RawShards(paths, RocksEnv(), SHARDS, read_only=read_only)


def shard_bytes(directory: Path) -> dict[str, int]:
    """Return the bytes of the files of every metaserver's shards by kind, and the total.

    The primary's system database (buckets, users, the cluster map) is not counted.
    """
    totals: dict[str, int] = {}
    for index in range(METASERVERS):
        for kind, size in directory_bytes(directory / f"meta-{index}" / "shards").items():
            totals[kind] = totals.get(kind, 0) + size
    return totals


def keep_bytes(
    directory: Path, objects: int, moment: str, figures: dict[str, list[float]]
) -> float:
    """Keep the bytes per object of every kind of file at `moment`; return the total."""
    for kind, size in shard_bytes(directory).items():
        figures[f"bytes_{moment}_{kind}"] = [size / objects]
    return figures[f"bytes_{moment}_total"][0]


# Loading.


def load(cluster: LocalCluster, directory: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Load both buckets; return the ingest rates and the metaservers' cost of the load."""
    address = cluster.meta_address
    asyncio.run(create_buckets(address, [SMALL_BUCKET, LARGE_BUCKET]))
    marker = Marker(directory, {"shards": SHARDS, "key_space": SPACE.name})
    settings = LoadSettings(args.loaders, args.load_concurrency, args.interval_s)
    cpu_before_s = metaserver_cpu_s(cluster)
    load_bucket(address, marker, SMALL_BUCKET, SPACE, SMALL_OBJECTS, settings)
    rates = load_bucket(address, marker, LARGE_BUCKET, SPACE, args.objects, settings)
    commits, sync_writes = commit_counts(cluster)
    result: dict[str, Any] = {"rates": rates, "commits": commits, "sync_writes": sync_writes}
    if commits:
        result["metaserver_cpu_us_per_commit"] = (
            (metaserver_cpu_s(cluster) - cpu_before_s) / commits * 1e6
        )
    return result


# Baselines.


def raw_ingest(directory: Path, batch_keys: int, args: argparse.Namespace) -> list[float]:
    """Write --baseline-objects records in-process, --repeat times; return objects/s.

    Like one metaserver: 32 shard databases, each written by its own thread in
    synced batches of `batch_keys`, the mean group size the load reached.
    """
    per_metaserver = SHARDS // METASERVERS
    pairs = encoded_objects(SPACE, LARGE_BUCKET, range(args.baseline_objects))
    rates = []
    for repetition in range(args.repeat):
        root = directory / "baseline" / f"ingest-{repetition}"
        shards = RawShards.create(root, RocksEnv(), per_metaserver)
        try:
            rate = shards.put_batches(LARGE_BUCKET, pairs, batch_keys, True, per_metaserver)
            rates.append(rate.per_s)
        finally:
            shards.close()
            shutil.rmtree(root, ignore_errors=True)
    progress(f"rocksdict synced batches of {batch_keys}: {median(rates):,.0f} objects/s")
    return rates


# Stat.


async def _stat_run(
    address: str, key_count: int, concurrency: int, duration_s: float, start_unix_s: float
) -> RateSample:
    chooser = random.Random()
    async with AsyncClient(address) as client:
        await client.stat(LARGE_BUCKET, SPACE.key(0))
        await asyncio.sleep(max(start_unix_s - time.time(), 0))

        async def stat(worker: int, index: int) -> object:
            return await client.stat(LARGE_BUCKET, SPACE.key(chooser.randrange(key_count)))

        return await run_async_load(stat, concurrency, duration_s)


def stat_run(
    address: str, key_count: int, concurrency: int, duration_s: float, start_unix_s: float
) -> RateSample:
    """Stat random objects of the large bucket from `start_unix_s` on; runs in a client process."""
    return asyncio.run(_stat_run(address, key_count, concurrency, duration_s, start_unix_s))


class StatBench:
    """Store stats from client processes, alternating with in-process rocksdict reads."""

    def __init__(self, cluster: LocalCluster, directory: Path, args: argparse.Namespace) -> None:
        self.cluster = cluster
        self.args = args
        self.raw = shard_databases(directory, read_only=True)
        self.figures: dict[str, list[float]] = {}

    def _keep(self, name: str, value: float) -> None:
        self.figures.setdefault(name, []).append(value)

    def run(self) -> None:
        args = self.args
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.stat_processes, mp_context=context) as pool:
            for repetition in range(args.repeat):
                self._store_run(pool)
                self._raw_run(seed=repetition)
                store_per_s = self.figures["stat_per_s"][-1]
                raw_per_s = self.figures["raw_reads_per_s"][-1]
                progress(
                    f"stat {repetition + 1}/{args.repeat}: store {store_per_s:,.0f}/s, "
                    f"rocksdict {raw_per_s:,.0f}/s"
                )
        self.raw.close()

    def _store_run(self, pool: ProcessPoolExecutor) -> None:
        args = self.args
        start_unix_s = time.time() + 3.0
        futures = [
            pool.submit(
                stat_run,
                self.cluster.meta_address,
                args.objects,
                args.stat_concurrency,
                args.stat_s,
                start_unix_s,
            )
            for _ in range(args.stat_processes)
        ]
        cpu_before_s = metaserver_cpu_s(self.cluster)
        samples = [future.result() for future in futures]
        cpu_s = metaserver_cpu_s(self.cluster) - cpu_before_s
        operations = sum(sample.ops for sample in samples)
        self._keep("stat_per_s", operations / max(sample.elapsed_s for sample in samples))
        self._keep("stat_latency_ms_p50", median([s.latency_ms_p50 for s in samples]))
        # The worse of the client processes' 99th percentiles.
        self._keep("stat_latency_ms_p99", max(s.latency_ms_p99 for s in samples))
        # Includes the seconds the clients spent connecting before the timed window.
        self._keep("metaserver_cpu_us_per_stat", cpu_s / operations * 1e6)

    def _raw_run(self, seed: int) -> None:
        rate = self.raw.get_random(LARGE_BUCKET, SPACE, self.args.objects, self.args.stat_s, seed)
        self._keep("raw_reads_per_s", rate.per_s)
        self._keep("raw_reads_per_cpu_s", rate.per_cpu_s)


# Listing.


async def measure_pages(address: str, args: argparse.Namespace) -> dict[str, list[float]]:
    buckets = {"small": (SMALL_BUCKET, SMALL_OBJECTS), "large": (LARGE_BUCKET, args.objects)}
    async with AsyncClient(address) as client:
        bench = ListingBench(client, buckets, SPACE.key)
        await bench.page("large", "first", "")
        bench.figures.clear()
        await bench.pages(args.page_samples)
    if bench.errors:
        progress(f"ERROR: {len(bench.errors)} listings failed: {bench.errors[:3]}")
    return bench.figures


# Report.


def byte_rows(figures: dict[str, list[float]]) -> list[Row]:
    """Return the rows of bytes per object: by kind of file at three moments, and by block."""
    rows = [
        Row(
            "metadata on disk after the load settled (flush + compactions)",
            "bytes/object",
            figures["bytes_settled_total"],
            target=BYTES_TARGET,
        )
    ]
    moments = {
        "settled": "settled",
        "live": "right after the load, metaservers running",
        "compacted": "after a full compaction",
    }
    for moment, text in moments.items():
        for kind in ("total", "table", "wal", "info_log", "other"):
            if moment != "settled" or kind != "total":
                rows.append(
                    Row(
                        f"metadata on disk {text}: {kind}",
                        "bytes/object",
                        figures[f"bytes_{moment}_{kind}"],
                    )
                )
    for name in ("data_block_bytes", "index_block_bytes", "filter_block_bytes"):
        text = name.replace("_", " ")
        rows.append(Row(f"settled tables: {text}", "bytes/object", figures[f"settled_{name}"]))
    return rows


def build_rows(figures: dict[str, list[float]], args: argparse.Namespace) -> list[Row]:
    large = f"{args.objects:,} objects"
    small = f"{SMALL_OBJECTS:,} objects"
    rows = [
        Row(
            f"ingest through the commit path, {large} (median of intervals)",
            "objects/s",
            figures["ingest_per_s"],
            "rocksdict in-process, synced batches",
            figures["raw_ingest_per_s"],
        ),
        *byte_rows(figures),
        Row(
            f"stat of random existing keys, {large}",
            "ops/s",
            figures["stat_per_s"],
            "rocksdict get in-process, 1 thread",
            figures["raw_reads_per_s"],
        ),
    ]
    rows += page_rows(figures, {"large": large, "small": small})
    return rows


def settle(directory: Path, objects: int, figures: dict[str, list[float]]) -> None:
    """Flush and let RocksDB compact every shard in this process; keep bytes/object."""
    started_s = time.perf_counter()
    shards = shard_databases(directory)
    try:
        shards.settle()
        tables = shards.table_properties()
    finally:
        shards.close()
    figures["settle_s"] = [time.perf_counter() - started_s]
    for name in ("data_block_bytes", "index_block_bytes", "filter_block_bytes"):
        figures[f"settled_{name}"] = [tables[name] / objects]
    settled = keep_bytes(directory, objects, "settled", figures)
    progress(f"bytes/object settled: {settled:.1f}")


def compact(directory: Path, objects: int, figures: dict[str, list[float]]) -> None:
    """Compact every shard fully in this process; keep bytes/object."""
    shards = shard_databases(directory)
    try:
        shards.compact()
    finally:
        shards.close()
    compacted = keep_bytes(directory, objects, "compacted", figures)
    progress(f"bytes/object after a full compaction: {compacted:.1f}")


def load_phase(
    directory: Path, objects: int, args: argparse.Namespace, figures: dict[str, list[float]]
) -> dict[str, Any]:
    """Load the buckets, measure the rocksdict ingest baseline and settle the shards."""
    details: dict[str, Any] = {}
    cluster, _ = start_cluster(directory)
    try:
        loaded = load(cluster, directory, args)
        details["load_average_after_load"] = load_average()
        live = keep_bytes(directory, objects, "live", figures)
        details["metaserver_rss_mib_after_load"] = metaserver_rss_mib(cluster)
        progress(f"bytes/object right after the load: {live:.1f}")
    finally:
        cluster.stop()
    figures["ingest_per_s"] = loaded.pop("rates")
    details["load"] = loaded
    # A reused, fully loaded cluster committed nothing in this run.
    group_keys = (
        max(round(loaded["commits"] / loaded["sync_writes"]), 1) if loaded["commits"] else 3
    )
    figures["raw_ingest_per_s"] = raw_ingest(directory, group_keys, args)
    details["raw_ingest_batch_keys"] = group_keys
    settle(directory, objects, figures)
    return details


def measure_phase(
    directory: Path, args: argparse.Namespace, figures: dict[str, list[float]]
) -> dict[str, Any]:
    """Restart the cluster, then measure stats and pages."""
    details: dict[str, Any] = {}
    cluster, details["restart_s"] = start_cluster(directory)
    progress(f"cluster restarted in {details['restart_s']:.1f}s (first repair pass included)")
    try:
        stats = StatBench(cluster, directory, args)
        stats.run()
        figures.update(stats.figures)
        figures.update(asyncio.run(measure_pages(cluster.meta_address, args)))
        details["load_average_after_measurements"] = load_average()
        details["metaserver_rss_mib_after_measurements"] = metaserver_rss_mib(cluster)
    finally:
        cluster.stop()
    return details


def main() -> None:
    args = parse_args()
    directory = prepare_directory(args.cluster_dir, args.reuse)
    settings = {**vars(args), "cluster_dir": str(directory), "shards": SHARDS}
    settings["metaservers"] = METASERVERS
    report = new_report("metadata_scale", settings, directory)
    objects = args.objects + SMALL_OBJECTS
    figures: dict[str, list[float]] = {}
    report.details.update(load_phase(directory, objects, args, figures))
    report.details.update(measure_phase(directory, args, figures))
    compact(directory, objects, figures)
    report.rows.extend(build_rows(figures, args))
    report.details.update(latency_details(figures))
    report.finish()


if __name__ == "__main__":
    main()
