"""(b) SDK PUT and GET of one large object (1 GiB by default) with one AsyncClient.

Each cluster size (1 and 4 dataservers) gets a fresh LocalCluster. Each
repetition first measures the raw grpcio stream ceiling and the disk's
O_DIRECT write and read throughput, which is the dataservers' I/O mode. Then
it measures put() from bytes, get() to bytes, get_into() a preallocated
bytearray and get_stream() of the same object. The ratios compare medians
of the SDK and of the baselines measured in the same run on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import MIB, Row, Target, disk_direct_mb_s, local_cluster, new_report, progress
from rawgrpc import RawClient, RawServer

from store import AsyncClient

BUCKET = "bench-large"
GET_TARGET = Target("min_ratio", 0.9)
PUT_TARGET = Target("min_ratio", 0.6)
FIGURES = (
    *("raw_download", "raw_upload", "disk_write", "disk_read"),
    *("put", "get", "get_into", "get_stream"),
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="object size in MiB")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of each figure")
    parser.add_argument(
        "--dataservers",
        type=int,
        nargs="+",
        default=[1, 4],
        help="cluster sizes to measure, one fresh cluster each",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="directory for the clusters' data (removed afterwards)",
    )
    return parser.parse_args()


async def get_stream_bytes(client: AsyncClient, key: str) -> int:
    received_bytes = 0
    async for piece in client.get_stream(BUCKET, key):
        received_bytes += len(piece)
    return received_bytes


@dataclass(slots=True)
class LargeRun:
    """The clients, data and directories that every repetition on one cluster uses."""

    client: AsyncClient
    raw: RawClient
    data: bytes
    buffer: bytearray
    work_dir: Path


async def measure_repetition(run: LargeRun, key: str, check: bool) -> dict[str, float]:
    """Measure every figure once, in MB/s; `check` also compares the bytes read back."""
    client, raw, data, buffer = run.client, run.raw, run.data, run.buffer
    size_bytes = len(data)
    result = {
        "raw_download": await raw.download_mb_s(size_bytes),
        "raw_upload": await raw.upload_mb_s(size_bytes),
    }
    result["disk_write"], result["disk_read"] = disk_direct_mb_s(run.work_dir, data)

    start_s = time.perf_counter()
    await client.put(BUCKET, key, data)
    result["put"] = size_bytes / (time.perf_counter() - start_s) / 1e6

    start_s = time.perf_counter()
    got = await client.get(BUCKET, key)
    result["get"] = size_bytes / (time.perf_counter() - start_s) / 1e6
    if len(got) != size_bytes or (check and got != data):
        raise RuntimeError(f"get of {key} returned different bytes ({len(got)} bytes)")
    del got

    start_s = time.perf_counter()
    copied_bytes = await client.get_into(BUCKET, key, buffer)
    result["get_into"] = size_bytes / (time.perf_counter() - start_s) / 1e6
    if copied_bytes != size_bytes or (check and buffer != data):
        raise RuntimeError(f"get_into of {key} returned different bytes ({copied_bytes} bytes)")

    start_s = time.perf_counter()
    streamed_bytes = await get_stream_bytes(client, key)
    result["get_stream"] = size_bytes / (time.perf_counter() - start_s) / 1e6
    if streamed_bytes != size_bytes:
        raise RuntimeError(f"get_stream of {key} returned {streamed_bytes} bytes")

    await client.delete(BUCKET, key)
    return result


async def measure_cluster(
    meta_address: str, raw_address: str, data: bytes, repeat: int, work_dir: Path
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    figures: dict[str, list[float]] = {name: [] for name in FIGURES}
    raw = RawClient(raw_address)
    try:
        async with AsyncClient(meta_address) as client:
            cluster_map = await client.cluster_map()
            await client.create_bucket(BUCKET)
            # Warm up the channels and the servers' buffers.
            await client.put(BUCKET, "warmup", data[: 64 * MIB])
            await client.get(BUCKET, "warmup")
            await raw.download_mb_s(64 * MIB)
            run = LargeRun(client, raw, data, bytearray(len(data)), work_dir)
            for repetition in range(repeat):
                result = await measure_repetition(run, f"object-{repetition}", repetition == 0)
                for name, value in result.items():
                    figures[name].append(value)
                progress(
                    f"repetition {repetition + 1}/{repeat}: "
                    + ", ".join(f"{name} {value:,.0f} MB/s" for name, value in result.items())
                )
    finally:
        await raw.close()
    settings = {
        "chunk_size_bytes": cluster_map.chunk_size_bytes,
        "default_scheme": cluster_map.default_scheme,
        "window_chunks": client.window_chunks,
    }
    return figures, settings


def add_rows(rows: list[Row], dataservers: int, figures: dict[str, list[float]], size: str) -> None:
    where = f"{size}, {dataservers} dataserver{'s' if dataservers > 1 else ''}"
    download = "raw stream download"
    reads = {
        "get": "get() to bytes",
        "get_into": "get_into() a bytearray",
        "get_stream": "get_stream()",
    }
    for name, text in reads.items():
        rows.append(
            Row(
                f"SDK {text}, {where}",
                "MB/s",
                figures[name],
                download,
                figures["raw_download"],
                GET_TARGET,
            )
        )
    put = f"SDK put() from bytes, {where}"
    rows.append(Row(put, "MB/s", figures["put"], download, figures["raw_download"], PUT_TARGET))
    rows.append(Row(put, "MB/s", figures["put"], "raw stream upload", figures["raw_upload"]))
    rows.append(
        Row(
            f"SDK get_into() a bytearray, {where}",
            "MB/s",
            figures["get_into"],
            "disk O_DIRECT read, 1 MiB at a time",
            figures["disk_read"],
        )
    )
    rows.append(
        Row(
            put,
            "MB/s",
            figures["put"],
            "disk O_DIRECT write + fsync, 1 MiB at a time",
            figures["disk_write"],
        )
    )


def main() -> None:
    args = parse_args()
    report = new_report("sdk_large", {**vars(args), "work_dir": str(args.work_dir)}, args.work_dir)
    size_text = f"{args.size_mib} MiB" if args.size_mib % 1024 else f"{args.size_mib // 1024} GiB"
    progress(f"generating {size_text} of random data")
    data = os.urandom(args.size_mib * MIB)
    with RawServer() as raw_server:
        for dataservers in args.dataservers:
            with local_cluster(args.work_dir, dataservers, "large") as cluster:
                figures, settings = asyncio.run(
                    measure_cluster(
                        cluster.meta_address, raw_server.address, data, args.repeat, args.work_dir
                    )
                )
            report.details[f"dataservers_{dataservers}"] = {"settings": settings, **figures}
            add_rows(report.rows, dataservers, figures, size_text)
    report.finish()


if __name__ == "__main__":
    main()
