"""Loading buckets of small objects through the real commit path, resumably.

The listing and metadata benchmarks load their buckets here: batches of
LOAD_BATCH_KEYS keys go to loader processes, each putting its batch with
many AsyncClient tasks (the SDK coalesces their commits into CommitObjects
calls). DIR/bench-listing.json records the finished batches, so a run with
--reuse loads only the missing ones. A batch cut off by a crash is put
again whole, and putting an inline object again only replaces its record.

A key space names an object's key and body by index:

    listing   key-00001234, 0 bytes
    dataset   datasets/shard-00001/sample-0012345.json, a JSON line of
              25 to 64 bytes, 48 on average, such as
              {"id":12345,"label":368,"tag":"5d360479011b3f5a"}
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import git_commit, median, progress

from store import AsyncClient
from store.cluster import CLUSTER_FILE
from store.errors import AlreadyExists, ResourceExhausted, Unavailable

MARKER_FILE = "bench-listing.json"
LOAD_BATCH_KEYS = 10_000
# Samples per directory of the dataset key space.
DATASET_DIRECTORY_KEYS = 10_000
# The tag that pads a dataset body: 0 to this many hex digits.
DATASET_TAG_DIGITS_MAX = 29
# Attempts of one put that times out or meets an overloaded metaserver, and the pause
# before the second attempt (it grows linearly).
PUT_ATTEMPTS_MAX = 5
PUT_RETRY_PAUSE_S = 1.0


def listing_key(index: int) -> str:
    return f"key-{index:08d}"


def listing_body(index: int) -> bytes:
    return b""


def dataset_key(index: int) -> str:
    return f"datasets/shard-{index // DATASET_DIRECTORY_KEYS:05d}/sample-{index:07d}.json"


def dataset_body(index: int) -> bytes:
    """Return a JSON line; a hash of the index sets its label and its tag's length and digits."""
    digest = hashlib.blake2b(index.to_bytes(8, "little"), digest_size=16).hexdigest()
    tag_digits = int(digest[:2], 16) % (DATASET_TAG_DIGITS_MAX + 1)
    label = int(digest[2:5], 16) % 1000
    return f'{{"id":{index},"label":{label},"tag":"{digest[5 : 5 + tag_digits]}"}}'.encode()


@dataclass(frozen=True, slots=True)
class KeySpace:
    name: str
    key: Callable[[int], str]
    body: Callable[[int], bytes]


KEY_SPACES = {
    "listing": KeySpace("listing", listing_key, listing_body),
    "dataset": KeySpace("dataset", dataset_key, dataset_body),
}


def add_load_arguments(
    parser: argparse.ArgumentParser, cluster_dir: Path, load_concurrency: int
) -> None:
    """Add --cluster-dir, --reuse, --loaders and --load-concurrency to a benchmark's parser."""
    parser.add_argument(
        "--cluster-dir",
        type=Path,
        default=cluster_dir,
        help="directory of the loaded cluster; kept after the run",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the objects already loaded in --cluster-dir and load only the missing ones "
        "(without it, an existing --cluster-dir is wiped first)",
    )
    parser.add_argument("--loaders", type=int, default=2, help="loader processes")
    parser.add_argument(
        "--load-concurrency",
        type=int,
        default=load_concurrency,
        help="concurrent puts per loader process",
    )


# Loader processes.


async def _put_with_retries(
    client: AsyncClient, bucket: str, key: str, body: bytes, retried: list[str]
) -> None:
    """Put one object, again after a timeout or overload, at most PUT_ATTEMPTS_MAX times.

    Putting an inline object again only replaces its record, so a retry after a
    commit that did land is harmless. `retried` collects the errors retried.
    """
    for attempt in range(1, PUT_ATTEMPTS_MAX + 1):
        try:
            await client.put(bucket, key, body)
            return
        except (Unavailable, ResourceExhausted) as error:
            if attempt == PUT_ATTEMPTS_MAX:
                raise
            retried.append(f"{bucket}/{key}: {error}")
            await asyncio.sleep(PUT_RETRY_PAUSE_S * attempt)


async def _load_batch(
    address: str, bucket: str, space: KeySpace, first: int, end: int, concurrency: int
) -> list[str]:
    retried: list[str] = []
    async with AsyncClient(address) as client:
        next_index = first

        async def worker() -> None:
            nonlocal next_index
            while next_index < end:
                index = next_index
                next_index += 1
                await _put_with_retries(
                    client, bucket, space.key(index), space.body(index), retried
                )

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return retried


def load_batch(
    address: str, bucket: str, space_name: str, first: int, end: int, concurrency: int
) -> tuple[int, list[str]]:
    """Put objects [first, end) of a key space into `bucket`; runs in a loader process.

    Returns `first` and the errors of the puts that were retried.
    """
    space = KEY_SPACES[space_name]
    retried = asyncio.run(_load_batch(address, bucket, space, first, end, concurrency))
    return first, retried


class Marker:
    """DIR/bench-listing.json: which batches of which bucket are fully loaded, and how fast."""

    def __init__(self, directory: Path, layout: dict[str, Any]) -> None:
        self.path = directory / MARKER_FILE
        self.record: dict[str, Any] = {**layout, "buckets": {}, "intervals": {}}
        if self.path.exists():
            self.record = json.loads(self.path.read_text())
            self.record.setdefault("intervals", {})
            self._check_layout(layout)

    def _check_layout(self, layout: dict[str, Any]) -> None:
        for name, expected in layout.items():
            stored = self.record.get(name)
            if stored is not None and stored != expected:
                raise SystemExit(
                    f"{self.path} was loaded with {name}={stored}, not {expected}; pass the "
                    "settings of the earlier run, or drop --reuse to load it again"
                )

    def done(self, bucket: str) -> set[int]:
        return set(self.record["buckets"].get(bucket, []))

    def intervals(self, bucket: str) -> list[list[float]]:
        """Return the [keys, seconds] of every timed interval of earlier loads of `bucket`."""
        return list(self.record["intervals"].get(bucket, []))

    def add(self, bucket: str, first: int, intervals: list[list[float]], retries: int) -> None:
        """Record the batch starting at `first` as loaded, and the intervals timed so far."""
        self.record["buckets"].setdefault(bucket, []).append(first)
        self.record["retried_puts"] = self.record.get("retried_puts", 0) + retries
        self.set_intervals(bucket, intervals)

    def set_intervals(self, bucket: str, intervals: list[list[float]]) -> None:
        self.record["intervals"][bucket] = intervals
        self.record["commit"] = git_commit()
        temp = self.path.with_suffix(".tmp")
        temp.write_text(json.dumps(self.record) + "\n")
        temp.replace(self.path)


@dataclass(slots=True)
class LoadSettings:
    loaders: int
    concurrency: int
    # Length of the intervals over which the ingest rate is taken.
    interval_s: float = 30.0


@dataclass(slots=True)
class IngestClock:
    """Cuts a load into intervals of at least `interval_s` and keeps [keys, seconds] of each."""

    interval_s: float
    intervals: list[list[float]] = field(default_factory=list)
    _keys: int = 0
    _started_s: float = field(default_factory=time.perf_counter)

    def count(self, keys: int) -> None:
        self._keys += keys
        elapsed_s = time.perf_counter() - self._started_s
        if elapsed_s >= self.interval_s:
            self.intervals.append([self._keys, elapsed_s])
            self._keys = 0
            self._started_s = time.perf_counter()

    def close(self) -> None:
        """Keep the last, shorter interval if it lasted at least a quarter of `interval_s`."""
        elapsed_s = time.perf_counter() - self._started_s
        if self._keys and elapsed_s >= self.interval_s / 4:
            self.intervals.append([self._keys, elapsed_s])


def interval_rates(intervals: list[list[float]]) -> list[float]:
    return [keys / seconds for keys, seconds in intervals if seconds > 0]


def load_bucket(
    address: str,
    marker: Marker,
    bucket: str,
    space: KeySpace,
    key_count: int,
    settings: LoadSettings,
) -> list[float]:
    """Load objects 0 .. key_count-1 into `bucket`, skipping the batches already done.

    Returns the ingest rate (objects/s) of every interval of this load and of the
    earlier loads the marker recorded. A batch that fails stops the load at once:
    the batches not started yet are cancelled, and the marker keeps those done.
    """
    done = marker.done(bucket)
    if any(first >= key_count for first in done):
        raise SystemExit(
            f"{bucket} in {marker.path.parent} contains more than {key_count:,} keys; pass the "
            "key count of the earlier run, or drop --reuse to load it again"
        )
    batches = [b for b in range(0, key_count, LOAD_BATCH_KEYS) if b not in done]
    earlier = marker.intervals(bucket)
    if not batches:
        progress(f"{bucket}: all {key_count:,} keys already loaded")
        return interval_rates(earlier)
    missing = sum(min(LOAD_BATCH_KEYS, key_count - first) for first in batches)
    progress(
        f"{bucket}: loading {missing:,} of {key_count:,} keys with {settings.loaders} "
        f"processes of {settings.concurrency} tasks"
    )
    clock = IngestClock(settings.interval_s)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(settings.loaders, mp_context=context) as pool:
        futures = [
            pool.submit(
                load_batch,
                address,
                bucket,
                space.name,
                first,
                min(first + LOAD_BATCH_KEYS, key_count),
                settings.concurrency,
            )
            for first in batches
        ]
        try:
            _collect_batches(futures, marker, bucket, (key_count, missing), earlier, clock)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    clock.close()
    marker.set_intervals(bucket, earlier + clock.intervals)
    return interval_rates(earlier + clock.intervals)


def _collect_batches(
    futures: list[Future[tuple[int, list[str]]]],
    marker: Marker,
    bucket: str,
    counts: tuple[int, int],
    earlier: list[list[float]],
    clock: IngestClock,
) -> None:
    """Record each batch in the marker as it finishes and print the progress.

    `counts` is the bucket's key count and the keys this load puts.
    """
    key_count, missing = counts
    start_s = time.perf_counter()
    loaded = 0
    for future in as_completed(futures):
        first, retried = future.result()
        batch_keys = min(LOAD_BATCH_KEYS, key_count - first)
        clock.count(batch_keys)
        marker.add(bucket, first, earlier + clock.intervals, len(retried))
        for error in retried[:3]:
            progress(f"WARNING: a put was retried after: {error}")
        loaded += batch_keys
        rate = loaded / (time.perf_counter() - start_s)
        eta_s = (missing - loaded) / rate if rate else float("inf")
        progress(
            f"{bucket}: {loaded:,}/{missing:,} keys loaded, {rate:,.0f} puts/s "
            f"(interval median {median(interval_rates(clock.intervals)):,.0f}), "
            f"about {eta_s:,.0f}s left"
        )


def prepare_directory(cluster_dir: Path, reuse: bool) -> Path:
    """Create the cluster directory and return its absolute path.

    An earlier loaded cluster in it is wiped unless `reuse` is set, and a directory
    that contains anything else is never touched.
    """
    directory = cluster_dir.resolve()
    if directory.exists() and not reuse:
        _remove_loaded_cluster(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _remove_loaded_cluster(directory: Path) -> None:
    ours = (directory / MARKER_FILE).exists() or (directory / CLUSTER_FILE).exists()
    if not ours and any(directory.iterdir()):
        raise SystemExit(
            f"--cluster-dir {directory} is not empty and contains no {MARKER_FILE}; "
            "pass a new or empty directory"
        )
    progress(f"removing the earlier loaded cluster in {directory}")
    shutil.rmtree(directory)


async def create_buckets(address: str, buckets: list[str]) -> None:
    async with AsyncClient(address) as client:
        for bucket in buckets:
            try:
                await client.create_bucket(bucket)
            except AlreadyExists:
                pass
