"""(d) Listing: full-listing keys/s and page latency at 10k and at 1M keys.

Loads a small bucket (10,000 keys) and a large one (--keys, 1,000,000 by
default) with 0-byte objects through the real commit path, from several
loader processes with many AsyncClient tasks each. The loaded cluster stays
in --cluster-dir: a later run with --reuse loads only what is missing.

Then, with pages of 1000 keys, it measures the keys/s of a full listing of
each bucket and the latency of one page: the first page, and a middle page
reached with start_after. Samples of the two buckets alternate so that both
see the same machine load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import shutil
import time
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from benchlib import BENCH_DIR, Row, Target, git_commit, median, new_report, percentile, progress

from store import AsyncClient
from store.cluster import CLUSTER_FILE, LocalCluster
from store.errors import AlreadyExists, StoreError

MARKER_FILE = "bench-listing.json"
SMALL_BUCKET = "list-small"
LARGE_BUCKET = "list-large"
SMALL_KEYS = 10_000
LOAD_BATCH_KEYS = 10_000
PAGE_KEYS = 1000
SHARDS = 16
LISTING_TARGET = Target("min_value", 200_000)
LATENCY_TARGET = Target("max_ratio", 1.5)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys in the large bucket")
    parser.add_argument(
        "--cluster-dir",
        type=Path,
        default=BENCH_DIR / "results" / "listing-cluster",
        help="directory of the loaded cluster; kept after the run",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the keys already loaded in --cluster-dir and load only the missing ones "
        "(without it, an existing --cluster-dir is wiped first)",
    )
    parser.add_argument("--loaders", type=int, default=2, help="loader processes")
    parser.add_argument(
        "--load-concurrency", type=int, default=64, help="concurrent puts per loader process"
    )
    parser.add_argument("--repeat", type=int, default=3, help="full listings of each bucket")
    parser.add_argument("--page-samples", type=int, default=20, help="samples of each page latency")
    parser.add_argument(
        "--max-listing-s",
        type=float,
        default=600.0,
        help="stop a full listing after this many seconds (it is then reported as partial)",
    )
    return parser.parse_args()


def object_key(index: int) -> str:
    return f"key-{index:08d}"


# Loading.


async def _load_batch(address: str, bucket: str, first: int, end: int, concurrency: int) -> None:
    async with AsyncClient(address) as client:
        next_index = first

        async def worker() -> None:
            nonlocal next_index
            while next_index < end:
                index = next_index
                next_index += 1
                await client.put(bucket, object_key(index), b"")

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def load_batch(address: str, bucket: str, first: int, end: int, concurrency: int) -> int:
    """Put keys [first, end) into `bucket`; runs in a loader process."""
    asyncio.run(_load_batch(address, bucket, first, end, concurrency))
    return first


class Marker:
    """DIR/bench-listing.json: which batches of which bucket are fully loaded."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / MARKER_FILE
        self.record: dict[str, Any] = {"shards": SHARDS, "buckets": {}}
        if self.path.exists():
            self.record = json.loads(self.path.read_text())

    def done(self, bucket: str) -> set[int]:
        return set(self.record["buckets"].get(bucket, []))

    def add(self, bucket: str, first: int) -> None:
        batches = self.record["buckets"].setdefault(bucket, [])
        batches.append(first)
        self.record["commit"] = git_commit()
        temp = self.path.with_suffix(".tmp")
        temp.write_text(json.dumps(self.record) + "\n")
        temp.replace(self.path)


def load_bucket(
    address: str, marker: Marker, bucket: str, key_count: int, args: argparse.Namespace
) -> None:
    """Load keys 0 .. key_count-1 into `bucket`, skipping batches the marker lists as done."""
    done = marker.done(bucket)
    if any(first >= key_count for first in done):
        raise SystemExit(
            f"{bucket} in {marker.path.parent} contains more than {key_count:,} keys; pass the "
            "--keys of the earlier run, or drop --reuse to load it again"
        )
    batches = [b for b in range(0, key_count, LOAD_BATCH_KEYS) if b not in done]
    if not batches:
        progress(f"{bucket}: all {key_count:,} keys already loaded")
        return
    missing = sum(min(LOAD_BATCH_KEYS, key_count - b) for b in batches)
    progress(f"{bucket}: loading {missing:,} of {key_count:,} keys with {args.loaders} processes")
    start_s = time.perf_counter()
    loaded = 0
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.loaders, mp_context=context) as pool:
        futures: list[Future[int]] = [
            pool.submit(
                load_batch,
                address,
                bucket,
                first,
                min(first + LOAD_BATCH_KEYS, key_count),
                args.load_concurrency,
            )
            for first in batches
        ]
        for future in as_completed(futures):
            first = future.result()
            marker.add(bucket, first)
            loaded += min(LOAD_BATCH_KEYS, key_count - first)
            rate = loaded / (time.perf_counter() - start_s)
            eta_s = (missing - loaded) / rate if rate else float("inf")
            progress(
                f"{bucket}: {loaded:,}/{missing:,} keys loaded, {rate:,.0f} puts/s, "
                f"about {eta_s:,.0f}s left"
            )


def prepare_directory(directory: Path, reuse: bool) -> None:
    """Wipe an earlier listing cluster unless reusing it; never touch another directory."""
    if not directory.exists() or reuse:
        return
    ours = (directory / MARKER_FILE).exists() or (directory / CLUSTER_FILE).exists()
    if not ours and any(directory.iterdir()):
        raise SystemExit(
            f"--cluster-dir {directory} is not empty and contains no {MARKER_FILE}; "
            "pass a new or empty directory"
        )
    progress(f"removing the earlier listing cluster in {directory}")
    shutil.rmtree(directory)


async def create_buckets(address: str) -> None:
    async with AsyncClient(address) as client:
        for bucket in (SMALL_BUCKET, LARGE_BUCKET):
            try:
                await client.create_bucket(bucket)
            except AlreadyExists:
                pass


# Measuring.


class ListingBench:
    """Full listings and page latencies of the two buckets; failed listings are counted."""

    def __init__(self, client: AsyncClient, large_keys: int) -> None:
        self.client = client
        self.buckets = {"small": (SMALL_BUCKET, SMALL_KEYS), "large": (LARGE_BUCKET, large_keys)}
        self.figures: dict[str, list[float]] = {}
        self.errors: list[str] = []

    def _keep(self, name: str, value: float) -> None:
        self.figures.setdefault(name, []).append(value)

    def _error(self, what: str, error: StoreError) -> None:
        progress(f"ERROR: {what} failed: {error}")
        self.errors.append(f"{what}: {error}")

    async def full_listing(self, bucket: str, max_s: float) -> tuple[int, float]:
        """List every key in pages of PAGE_KEYS; return the keys seen and the seconds taken."""
        keys = 0
        start_s = time.perf_counter()
        try:
            async for page in self.client.iter_pages(bucket, max_keys=PAGE_KEYS):
                keys += len(page.entries)
                if time.perf_counter() - start_s > max_s:
                    progress(f"{bucket}: full listing stopped after {max_s}s at {keys:,} keys")
                    break
        except StoreError as error:
            self._error(f"full listing of {bucket} after {keys:,} keys", error)
        return keys, time.perf_counter() - start_s

    async def full_listings(self, repeat: int, max_s: float) -> None:
        for repetition in range(repeat):
            for size, (bucket, key_count) in self.buckets.items():
                keys, elapsed_s = await self.full_listing(bucket, max_s)
                if keys != key_count:
                    progress(f"WARNING: {bucket}: listed {keys:,} keys, expected {key_count:,}")
                self._keep(f"{size}_keys_per_s", keys / elapsed_s)
                self._keep(f"{size}_keys_listed", keys)
            progress(
                f"full listing {repetition + 1}/{repeat}: "
                f"small {self.figures['small_keys_per_s'][-1]:,.0f} keys/s, "
                f"large {self.figures['large_keys_per_s'][-1]:,.0f} keys/s"
            )

    async def page(self, size: str, page: str, start_after: str) -> None:
        """Time one page of PAGE_KEYS keys and keep its latency and the keys it held."""
        bucket = self.buckets[size][0]
        start_s = time.perf_counter()
        try:
            listed = await self.client.list(bucket, start_after=start_after, max_keys=PAGE_KEYS)
        except StoreError as error:
            self._error(f"{page} page of {bucket}", error)
            self._keep(f"{size}_{page}_page_keys", 0)
            return
        self._keep(f"{size}_{page}_page_ms", (time.perf_counter() - start_s) * 1000)
        self._keep(f"{size}_{page}_page_keys", len(listed.entries))

    async def pages(self, samples: int) -> None:
        for _ in range(samples):
            for size, (_, key_count) in self.buckets.items():
                await self.page(size, "first", "")
                await self.page(size, "middle", object_key(key_count // 2))
        for name, values in self.figures.items():
            if name.endswith("_page_keys") and min(values) != PAGE_KEYS:
                progress(
                    f"WARNING: {name}: pages held {min(values):.0f} to {max(values):.0f} keys, "
                    f"expected {PAGE_KEYS}"
                )


async def measure(address: str, large_keys: int, args: argparse.Namespace) -> ListingBench:
    async with AsyncClient(address) as client:
        bench = ListingBench(client, large_keys)
        await bench.page("large", "first", "")
        bench.figures.clear()
        bench.errors.clear()
        await bench.full_listings(args.repeat, args.max_listing_s)
        await bench.pages(args.page_samples)
    return bench


def build_rows(figures: dict[str, list[float]], large_keys: int) -> list[Row]:
    """Return the timing rows, plus rows that check how many keys each listing returned."""
    names = {"large": f"{large_keys:,} keys", "small": f"{SMALL_KEYS:,} keys"}
    counts = {"large": large_keys, "small": SMALL_KEYS}
    rows = [
        Row(
            f"full listing, {names['large']}, pages of {PAGE_KEYS}",
            "keys/s",
            figures.get("large_keys_per_s", []),
            f"full listing, {names['small']}",
            figures.get("small_keys_per_s", []),
            LISTING_TARGET,
        ),
        Row(
            f"full listing, {names['small']}, pages of {PAGE_KEYS}",
            "keys/s",
            figures.get("small_keys_per_s", []),
            target=LISTING_TARGET,
        ),
    ]
    for page in ("first", "middle"):
        rows.append(
            Row(
                f"{page} page of {PAGE_KEYS} latency, {names['large']}",
                "ms",
                figures.get(f"large_{page}_page_ms", []),
                f"{page} page, {names['small']}",
                figures.get(f"small_{page}_page_ms", []),
                LATENCY_TARGET,
            )
        )
    for size, name in names.items():
        rows.append(
            Row(
                f"keys returned by a full listing, {name}",
                "keys",
                figures.get(f"{size}_keys_listed", []),
                target=Target("min_value", counts[size]),
            )
        )
        for page in ("first", "middle"):
            rows.append(
                Row(
                    f"keys in the {page} page, {name}",
                    "keys",
                    figures.get(f"{size}_{page}_page_keys", []),
                    target=Target("min_value", PAGE_KEYS),
                )
            )
    return rows


def latency_details(figures: dict[str, list[float]]) -> dict[str, Any]:
    details: dict[str, Any] = {"samples": figures}
    for name, values in figures.items():
        if name.endswith("_ms"):
            details[f"{name}_p50"] = median(values)
            details[f"{name}_p90"] = percentile(values, 0.9)
    return details


def main() -> None:
    args = parse_args()
    directory = args.cluster_dir.resolve()
    prepare_directory(directory, args.reuse)
    directory.mkdir(parents=True, exist_ok=True)
    settings = {**vars(args), "cluster_dir": str(directory), "shards": SHARDS}
    report = new_report("listing", settings, directory)
    cluster = LocalCluster(directory, dataservers=0, shards=SHARDS)
    progress(f"starting the listing cluster in {directory}")
    cluster.start()
    try:
        asyncio.run(create_buckets(cluster.meta_address))
        marker = Marker(directory)
        load_bucket(cluster.meta_address, marker, SMALL_BUCKET, SMALL_KEYS, args)
        load_bucket(cluster.meta_address, marker, LARGE_BUCKET, args.keys, args)
        bench = asyncio.run(measure(cluster.meta_address, args.keys, args))
    finally:
        cluster.stop()
    report.rows.extend(build_rows(bench.figures, args.keys))
    report.details.update(latency_details(bench.figures))
    report.details["errors"] = bench.errors
    report.finish()


if __name__ == "__main__":
    main()
