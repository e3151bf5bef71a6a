"""python -m store.demo: load a running cluster with real files and verify every byte.

    python -m store.demo --dir .store-dev [--concurrency 32] [--big-gib 1]

The demo connects to the cluster recorded in DIR/cluster.json. It uploads every
regular file of this interpreter's standard library with bounded concurrency, but
leaves out site-packages and dist-packages because they contain third-party
packages. It then generates one large random file under DIR and uploads it, lists
the bucket and checks the key set, and reads every object back to compare it with
its local file. It prints the write and read rates and each dataserver's chunk
count, and exits with status 1 on any mismatch. When the cluster has an S3
gateway, the aws CLI then uploads a few standard-library packages and the big
file through it, downloads them again and compares every byte (store.demo_s3).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from store import status as cluster_status
from store._pb import common_pb2 as pb
from store.client import AsyncClient
from store.demo_files import (
    FileScan,
    LocalFile,
    first_difference,
    generate_random_file,
    scan_files,
    stdlib_root,
)
from store.demo_s3 import S3DemoFailure, run_s3_demo
from store.discovery import DEFAULT_CLUSTER_DIR, read_meta_addresses
from store.errors import AlreadyExists, StoreError
from store.limits import GIB, MAX_LIST_KEYS
from store.log import setup_logging
from store.tables import format_bytes, format_table

log = logging.getLogger("store.demo")

T = TypeVar("T")

DEFAULT_BUCKET = "demo"
DEFAULT_CONCURRENCY = 32
DEFAULT_BIG_GIB = 1.0
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_BIG_TIMEOUT_S = 900.0
SMALL_KEY_PREFIX = b"stdlib/"
BIG_KEY = b"big/random.bin"
BIG_FILE_NAME = "demo-random.bin"
# How long to wait for a heartbeat that reports the chunk counts after the writes.
HEARTBEAT_WAIT_S = 5.0
MAX_MISMATCHES_SHOWN = 10


class DemoFailure(Exception):
    """The data read back differs from what was written."""


@dataclass(frozen=True, slots=True)
class Rate:
    phase: str
    objects: int
    size_bytes: int
    seconds: float

    @property
    def megabytes_per_s(self) -> float:
        return self.size_bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        text = (
            f"{self.phase}: {self.objects} object{'s' if self.objects != 1 else ''}, "
            f"{format_bytes(self.size_bytes)} in {self.seconds:.1f} s = "
            f"{self.megabytes_per_s:.1f} MB/s"
        )
        if self.objects > 1 and self.seconds > 0:
            text += f", {self.objects / self.seconds:.0f} objects/s"
        return text


@dataclass
class DemoResult:
    rates: list[Rate] = field(default_factory=list)
    expected_chunks: int = 0
    writes_done_unix_ms: int = 0


# Concurrency.


async def for_each(
    items: Sequence[T], concurrency: int, work: Callable[[T], Awaitable[None]]
) -> None:
    """Run `work` on every item with at most `concurrency` running; stop at the first error."""
    iterator = iter(items)

    async def worker() -> None:
        for item in iterator:
            await work(item)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(concurrency, len(items))):
                group.create_task(worker())
    except ExceptionGroup as errors:
        raise errors.exceptions[0] from None


# Phases.


async def prepare_bucket(client: AsyncClient, bucket: str, args: argparse.Namespace) -> None:
    """Create the bucket, or empty it when a previous run left objects in it."""
    try:
        info = await client.create_bucket(bucket, timeout_s=args.timeout_s)
        print(f"bucket {bucket}: created, objects protected by {info.scheme}")
        return
    except AlreadyExists:
        pass
    keys = [
        entry.key.encode("utf-8", "surrogateescape")
        async for page in client.iter_pages(bucket, timeout_s=args.timeout_s)
        for entry in page.entries
    ]

    async def delete(key: bytes) -> None:
        await client.delete(bucket, key, timeout_s=args.timeout_s)

    await for_each(keys, args.concurrency, delete)
    print(f"bucket {bucket}: exists; deleted {len(keys)} objects of an earlier run")


async def upload_files(
    client: AsyncClient, bucket: str, files: list[LocalFile], args: argparse.Namespace
) -> tuple[Rate, int]:
    """Upload every file; return the rate and the number of chunks written."""
    chunks = 0

    async def put(local: LocalFile) -> None:
        nonlocal chunks
        info = await client.put_file(bucket, local.key, local.path, timeout_s=args.timeout_s)
        if info.size_bytes != local.size_bytes:
            raise DemoFailure(
                f"{local.path} has {local.size_bytes} bytes but its object has "
                f"{info.size_bytes}; did the file change during the demo?"
            )
        chunks += info.chunk_count

    started_s = time.perf_counter()
    await for_each(files, args.concurrency, put)
    seconds = time.perf_counter() - started_s
    size_bytes = sum(f.size_bytes for f in files)
    return Rate("write small files", len(files), size_bytes, seconds), chunks


async def upload_big(
    client: AsyncClient, bucket: str, path: Path, args: argparse.Namespace
) -> tuple[Rate, int]:
    started_s = time.perf_counter()
    info = await client.put_file(bucket, BIG_KEY, path, timeout_s=args.big_timeout_s)
    seconds = time.perf_counter() - started_s
    return Rate("write big file", 1, info.size_bytes, seconds), info.chunk_count


async def check_listing(
    client: AsyncClient, bucket: str, expected: dict[bytes, int], args: argparse.Namespace
) -> int:
    """List the bucket page by page and check it contains exactly the expected keys and sizes."""
    listed: dict[bytes, int] = {}
    duplicates: list[bytes] = []
    pages = 0
    max_pages = len(expected) // MAX_LIST_KEYS + 10
    async for page in client.iter_pages(bucket, timeout_s=args.timeout_s):
        pages += 1
        if pages > max_pages:
            raise DemoFailure(f"the listing of {bucket} did not end after {max_pages} pages")
        for entry in page.entries:
            key = entry.key.encode("utf-8", "surrogateescape")
            if key in listed:
                duplicates.append(key)
            listed[key] = entry.size_bytes
    problems = _listing_problems(expected, listed, duplicates)
    if problems:
        raise DemoFailure(
            f"the listing of {bucket} does not match the upload: " + "; ".join(problems)
        )
    return pages


def _listing_problems(
    expected: dict[bytes, int], listed: dict[bytes, int], duplicates: list[bytes]
) -> list[str]:
    problems = []
    missing = sorted(expected.keys() - listed.keys())
    unexpected = sorted(listed.keys() - expected.keys())
    wrong_size = sorted(k for k in expected.keys() & listed.keys() if expected[k] != listed[k])
    for label, keys in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("listed with the wrong size", wrong_size),
        ("listed twice", duplicates),
    ):
        if keys:
            problems.append(f"{len(keys)} keys {label}, such as {keys[:3]}")
    return problems


async def verify_files(
    client: AsyncClient, bucket: str, files: list[LocalFile], args: argparse.Namespace
) -> Rate:
    """Read every object back in parallel and compare it with its local file."""
    mismatches: list[str] = []

    async def verify(local: LocalFile) -> None:
        data = await client.get(bucket, local.key, timeout_s=args.timeout_s)
        expected = await asyncio.to_thread(local.path.read_bytes)
        if data != expected:
            offset = first_difference(expected, data)
            mismatches.append(
                f"{local.key!r}: {len(data)} bytes read, {len(expected)} expected, "
                f"first difference at byte {offset}"
            )

    started_s = time.perf_counter()
    await for_each(files, args.concurrency, verify)
    seconds = time.perf_counter() - started_s
    if mismatches:
        examples = "; ".join(mismatches[:MAX_MISMATCHES_SHOWN])
        raise DemoFailure(
            f"{len(mismatches)} of {len(files)} objects differ from their files: {examples}"
        )
    return Rate("read small files", len(files), sum(f.size_bytes for f in files), seconds)


async def verify_big(
    client: AsyncClient, bucket: str, path: Path, size_bytes: int, args: argparse.Namespace
) -> Rate:
    """Stream the big object and compare each piece with the same range of the local file."""
    offset = 0
    started_s = time.perf_counter()
    stream = client.get_stream(bucket, BIG_KEY, timeout_s=args.big_timeout_s)
    with path.open("rb") as local:
        async with contextlib.aclosing(stream) as pieces:  # type: ignore[type-var]
            async for piece in pieces:
                expected = await asyncio.to_thread(local.read, len(piece))
                if piece != expected:
                    at = offset + first_difference(expected, piece)
                    raise DemoFailure(f"{BIG_KEY!r} differs from {path} at byte {at}")
                offset += len(piece)
    seconds = time.perf_counter() - started_s
    if offset != size_bytes:
        raise DemoFailure(f"{BIG_KEY!r} returned {offset} bytes; {path} has {size_bytes}")
    return Rate("read big file", 1, size_bytes, seconds)


# The run.


async def run(args: argparse.Namespace, address: str, scan: FileScan, big_path: Path) -> DemoResult:
    result = DemoResult()
    bucket = args.bucket
    async with AsyncClient(address, timeout_s=args.timeout_s) as client:
        cluster_map = await client.cluster_map()
        up = sum(1 for d in cluster_map.dataservers if d.state == pb.DATASERVER_STATE_UP)
        print(
            f"cluster: metaserver {address}, {up} dataservers up, default scheme "
            f"{cluster_map.default_scheme or 'auto'}"
        )
        await prepare_bucket(client, bucket, args)

        rate, chunks = await upload_files(client, bucket, scan.files, args)
        result.rates.append(rate)
        print(rate.describe() + f" ({args.concurrency} concurrent puts)", flush=True)

        big_size_bytes = int(args.big_gib * GIB)
        print(
            f"generating {format_bytes(big_size_bytes)} of random bytes in {big_path} ...",
            flush=True,
        )
        generate_s = await asyncio.to_thread(generate_random_file, big_path, big_size_bytes)
        print(f"generated in {generate_s:.1f} s (not counted in the write rate)")
        rate, big_chunks = await upload_big(client, bucket, big_path, args)
        result.rates.append(rate)
        print(rate.describe(), flush=True)
        result.expected_chunks = chunks + big_chunks
        result.writes_done_unix_ms = int(time.time() * 1000)

        expected = {f.key: f.size_bytes for f in scan.files}
        expected[BIG_KEY] = big_size_bytes
        pages = await check_listing(client, bucket, expected, args)
        print(f"listing: {len(expected)} keys in {pages} pages match the uploaded keys and sizes")

        rate = await verify_files(client, bucket, scan.files, args)
        result.rates.append(rate)
        print(rate.describe() + " (every byte compared with the local file)", flush=True)
        rate = await verify_big(client, bucket, big_path, big_size_bytes, args)
        result.rates.append(rate)
        print(rate.describe() + " (streamed, every byte compared with the local file)")
    return result


def wait_for_chunk_counts(address: str, after_unix_ms: int, timeout_s: float) -> dict[str, Any]:
    """Return the cluster status once every up dataserver heartbeated after `after_unix_ms`."""
    deadline_s = time.monotonic() + HEARTBEAT_WAIT_S
    while True:
        status = cluster_status.collect_status(address, timeout_s)
        up = [d for d in status["dataservers"] if d["state"] == "up"]
        if all(d["last_heartbeat_unix_ms"] > after_unix_ms for d in up):
            return status
        if time.monotonic() > deadline_s:
            log.warning(
                "chunk counts may be stale: no fresh heartbeat within %ss", HEARTBEAT_WAIT_S
            )
            return status
        time.sleep(0.2)


def print_summary(result: DemoResult, status: dict[str, Any]) -> None:
    rows = [
        [
            r.phase,
            r.objects,
            format_bytes(r.size_bytes),
            f"{r.seconds:.1f}",
            f"{r.megabytes_per_s:.1f}",
        ]
        for r in result.rates
    ]
    print()
    print(
        format_table(
            ["PHASE", "OBJECTS", "BYTES", "SECONDS", "MB/S"], rows, right_columns={2, 3, 4}
        )
    )
    print()
    dataservers = status["dataservers"]
    rows = [
        [d["id"], d["address"], d["state"], d["chunk_count"], format_bytes(d["used_bytes"])]
        for d in dataservers
    ]
    print(
        format_table(["DATASERVER", "ADDRESS", "STATE", "CHUNKS", "USED"], rows, right_columns={4})
    )
    total = sum(d["chunk_count"] for d in dataservers)
    print(
        f"{total} chunks on {len(dataservers)} dataservers; this run's objects use "
        f"{result.expected_chunks} (chunks of deleted objects stay until garbage collection)"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m store.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    parser.add_argument("--dir", type=Path, default=DEFAULT_CLUSTER_DIR, help="cluster directory")
    parser.add_argument(
        "--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="puts and gets in flight"
    )
    parser.add_argument(
        "--big-gib", type=float, default=DEFAULT_BIG_GIB, help="size of the big file in GiB"
    )
    parser.add_argument("--bucket", default=DEFAULT_BUCKET, help="bucket to fill (emptied first)")
    parser.add_argument(
        "--timeout-s",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help="seconds each small-file request may take",
    )
    parser.add_argument(
        "--big-timeout-s",
        type=float,
        default=DEFAULT_BIG_TIMEOUT_S,
        help="seconds the big file's upload, and separately its download, may take",
    )
    parser.add_argument("--log-level", default="warning", help="log level of the SDK")

    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error(f"--concurrency {args.concurrency} must be at least 1")
    if not args.big_gib > 0:
        parser.error(f"--big-gib {args.big_gib} must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.log_level)
    big_path = args.dir / BIG_FILE_NAME
    try:
        address = ",".join(read_meta_addresses(args.dir))
        scan = scan_files(stdlib_root(), SMALL_KEY_PREFIX)
        print(
            f"standard library {scan.root}: {len(scan.files)} files, "
            f"{format_bytes(scan.size_bytes)}; {scan.unreadable} unreadable files skipped"
        )
        result = asyncio.run(run(args, address, scan, big_path))
        status = wait_for_chunk_counts(address, result.writes_done_unix_ms, args.timeout_s)
        for phase, objects, size_bytes, seconds in run_s3_demo(args.dir, scan.root, big_path):
            result.rates.append(Rate(phase, objects, size_bytes, seconds))
        print_summary(result, status)
    except (StoreError, DemoFailure, S3DemoFailure) as error:
        print(f"demo: FAILED: {error}", file=sys.stderr)
        if big_path.exists():
            print(f"demo: kept {big_path} for inspection", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        big_path.unlink(missing_ok=True)
        sys.exit(130)
    big_path.unlink(missing_ok=True)
    print("demo: OK, every object matches its local file")


if __name__ == "__main__":
    main()
