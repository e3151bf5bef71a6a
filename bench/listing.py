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
import time
from collections.abc import Callable
from typing import Any

from benchlib import BENCH_DIR, Row, Target, median, new_report, percentile, progress
from metaload import (
    KEY_SPACES,
    LoadSettings,
    Marker,
    add_load_arguments,
    create_buckets,
    listing_key,
    load_bucket,
    prepare_directory,
)

from store import AsyncClient
from store.cluster import LocalCluster
from store.errors import StoreError

SMALL_BUCKET = "list-small"
LARGE_BUCKET = "list-large"
SMALL_KEYS = 10_000
PAGE_KEYS = 1000
SHARDS = 16
LISTING_TARGET = Target("min_value", 200_000)
LATENCY_TARGET = Target("max_ratio", 1.5)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys in the large bucket")
    add_load_arguments(parser, BENCH_DIR / "results" / "listing-cluster", load_concurrency=64)
    parser.add_argument("--repeat", type=int, default=3, help="full listings of each bucket")
    parser.add_argument("--page-samples", type=int, default=20, help="samples of each page latency")
    parser.add_argument(
        "--max-listing-s",
        type=float,
        default=600.0,
        help="stop a full listing after this many seconds (it is then reported as partial)",
    )
    return parser.parse_args()


# Measuring.


class ListingBench:
    """Full listings and page latencies of a small and a large bucket; failures are counted.

    `buckets` maps "small" and "large" to (bucket, key count), and `key` names object
    `index` of either bucket.
    """

    def __init__(
        self, client: AsyncClient, buckets: dict[str, tuple[str, int]], key: Callable[[int], str]
    ) -> None:
        self.client = client
        self.buckets = buckets
        self.key = key
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
                await self.page(size, "middle", self.key(key_count // 2))
        for name, values in self.figures.items():
            if name.endswith("_page_keys") and min(values) != PAGE_KEYS:
                progress(
                    f"WARNING: {name}: pages held {min(values):.0f} to {max(values):.0f} keys, "
                    f"expected {PAGE_KEYS}"
                )


async def measure(address: str, large_keys: int, args: argparse.Namespace) -> ListingBench:
    buckets = {"small": (SMALL_BUCKET, SMALL_KEYS), "large": (LARGE_BUCKET, large_keys)}
    async with AsyncClient(address) as client:
        bench = ListingBench(client, buckets, listing_key)
        await bench.page("large", "first", "")
        bench.figures.clear()
        bench.errors.clear()
        await bench.full_listings(args.repeat, args.max_listing_s)
        await bench.pages(args.page_samples)
    return bench


def page_rows(figures: dict[str, list[float]], names: dict[str, str]) -> list[Row]:
    """Return the page latency rows of the large bucket beside the small one.

    Rows that check that every page held PAGE_KEYS keys follow. `names` maps
    "large" and "small" to the text that names each bucket in the rows.
    """
    rows = [
        Row(
            f"{page} page of {PAGE_KEYS} latency, {names['large']}",
            "ms",
            figures.get(f"large_{page}_page_ms", []),
            f"{page} page, {names['small']}",
            figures.get(f"small_{page}_page_ms", []),
            LATENCY_TARGET,
        )
        for page in ("first", "middle")
    ]
    for size, name in names.items():
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
        *page_rows(figures, names),
    ]
    for size, name in names.items():
        rows.append(
            Row(
                f"keys returned by a full listing, {name}",
                "keys",
                figures.get(f"{size}_keys_listed", []),
                target=Target("min_value", counts[size]),
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
    directory = prepare_directory(args.cluster_dir, args.reuse)
    settings = {**vars(args), "cluster_dir": str(directory), "shards": SHARDS}
    report = new_report("listing", settings, directory)
    cluster = LocalCluster(directory, dataservers=0, shards=SHARDS)
    progress(f"starting the listing cluster in {directory}")
    cluster.start()
    space = KEY_SPACES["listing"]
    load_settings = LoadSettings(args.loaders, args.load_concurrency)
    try:
        asyncio.run(create_buckets(cluster.meta_address, [SMALL_BUCKET, LARGE_BUCKET]))
        marker = Marker(directory, {"shards": SHARDS, "key_space": space.name})
        load_bucket(cluster.meta_address, marker, SMALL_BUCKET, space, SMALL_KEYS, load_settings)
        load_bucket(cluster.meta_address, marker, LARGE_BUCKET, space, args.keys, load_settings)
        bench = asyncio.run(measure(cluster.meta_address, args.keys, args))
    finally:
        cluster.stop()
    report.rows.extend(build_rows(bench.figures, args.keys))
    report.details.update(latency_details(bench.figures))
    report.details["errors"] = bench.errors
    report.finish()


if __name__ == "__main__":
    main()
