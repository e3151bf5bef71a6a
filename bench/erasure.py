"""Erasure coding: codec throughput, a degraded 1 GiB GET, CPU per GiB written, and repair.

Four parts, each repeated `--repeat` times, reported as medians:

1. `store.erasure.codec` encodes and decodes stripes of K chunks of 4 MiB for
   4+2, 8+3 and 2+1 in this process, beside a copy of the same stripe into a
   preallocated bytearray (the memory copy rate). Decoding rebuilds one lost
   data chunk, and M lost data chunks, from exactly K survivors.
2. One AsyncClient reads a 1 GiB object of an ec:4+2 bucket on 6 dataservers
   with get_into() and get_stream(), healthy and then with the dataserver that
   stores data chunk 0 of stripe 0 killed with SIGKILL. Every read is checked
   against the CRC32C of the written bytes, and the count of decoded chunk
   ranges must be 0 healthy and one per stripe that lost a data chunk degraded.
3. put() of 1 GiB from bytes into ec:4+2 and rep:3 buckets on 6 dataservers:
   MB/s, and the CPU seconds per GiB of the client process and of the
   dataservers (from /proc/PID/stat).
4. Repair of the chunks of one SIGKILLed dataserver of an ec:4+2 bucket with
   the throttle off, beside a healthy get_into() of the same objects on the
   same cluster (bench/erasure_repair.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import (
    GIB,
    MIB,
    Row,
    Target,
    counting_log,
    local_cluster,
    new_report,
    process_cpu_s,
    progress,
)
from erasure_repair import add_arguments, add_repair_rows, check_arguments, measure_repairs

from store import AsyncClient
from store.checksum import crc32c
from store.cluster import LocalCluster, ManagedProcess
from store.erasure import codec
from store.layout import split_chunk_id
from store.memory import tune_malloc
from store.types import ObjectInfo

SCHEMES = ((4, 2), (8, 3), (2, 1))
DEGRADED_TARGET = Target("min_ratio", 0.7)
GET_SCHEME = (4, 2)
GET_BUCKET = "bench-ec-get"
WRITE_SCHEMES = ("ec:4+2", "rep:3")
DATASERVERS = 6
# Each codec measurement stops at whichever bound it reaches first.
MAX_CODEC_ITERATIONS = 10_000
# store.download logs this once per chunk range it rebuilds by decoding.
DEGRADED_READ_MESSAGE = "degraded read"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of each figure")
    parser.add_argument(
        "--size-mib", type=int, default=1024, help="object size in MiB for the GET and the put"
    )
    parser.add_argument(
        "--codec-chunk-mib", type=int, default=4, help="chunk size in MiB for the codec figures"
    )
    parser.add_argument(
        "--codec-seconds",
        type=float,
        default=0.5,
        help="minimum seconds of each codec measurement (repeated calls on the same stripe)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="directory for the clusters' data (removed afterwards)",
    )
    add_arguments(parser)
    args = parser.parse_args()
    if args.repeat < 1 or args.size_mib < 1 or args.codec_chunk_mib < 1:
        parser.error("--repeat, --size-mib and --codec-chunk-mib must be at least 1")
    check_arguments(parser, args)
    return args


def scheme_name(data_chunks: int, parity_chunks: int) -> str:
    return f"ec:{data_chunks}+{parity_chunks}"


# 1. Codec throughput.


def rate_mb_s(action: Callable[[], object], size_bytes: int, min_seconds: float) -> float:
    """Call `action` until `min_seconds` pass; return `size_bytes` per call in MB/s.

    One untimed call first lets the allocator settle on the buffer sizes.
    """
    action()
    calls = 0
    start_s = time.perf_counter()
    elapsed_s = 0.0
    while calls < MAX_CODEC_ITERATIONS and (calls == 0 or elapsed_s < min_seconds):
        action()
        calls += 1
        elapsed_s = time.perf_counter() - start_s
    return calls * size_bytes / elapsed_s / 1e6


def measure_codec(
    data_chunks: int, parity_chunks: int, chunk_bytes: int, min_seconds: float
) -> dict[str, float]:
    """Measure the copy, encode and both decode rates of one scheme once, in stripe MB/s."""
    coder = codec(data_chunks, parity_chunks)
    stripe_bytes = data_chunks * chunk_bytes
    stripe = os.urandom(stripe_bytes)
    target = bytearray(stripe_bytes)
    chunks = coder.encode(stripe)
    assert len(chunks) == data_chunks + parity_chunks

    def copy() -> None:
        target[:] = stripe

    def decode(lost: list[int]) -> Callable[[], object]:
        # A degraded read passes exactly K survivors, the data chunks first.
        positions = [p for p in range(data_chunks + parity_chunks) if p not in lost]
        survivors = {position: chunks[position] for position in positions[:data_chunks]}
        rebuilt = coder.decode(survivors, lost)
        for position in lost:
            if rebuilt[position] != chunks[position]:
                raise RuntimeError(
                    f"{scheme_name(data_chunks, parity_chunks)} decoded chunk {position} "
                    f"from positions {sorted(survivors)} differs from the encoded chunk"
                )
        return lambda: coder.decode(survivors, lost)

    result = {
        "copy": rate_mb_s(copy, stripe_bytes, min_seconds),
        "encode": rate_mb_s(lambda: coder.encode(stripe), stripe_bytes, min_seconds),
        "decode_one": rate_mb_s(decode([0]), stripe_bytes, min_seconds),
    }
    if parity_chunks > 1:
        lost = list(range(parity_chunks))
        result["decode_m"] = rate_mb_s(decode(lost), stripe_bytes, min_seconds)
    return result


def measure_codecs(args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    figures: dict[str, dict[str, list[float]]] = {}
    for repetition in range(args.repeat):
        for data_chunks, parity_chunks in SCHEMES:
            name = scheme_name(data_chunks, parity_chunks)
            result = measure_codec(
                data_chunks, parity_chunks, args.codec_chunk_mib * MIB, args.codec_seconds
            )
            for figure, value in result.items():
                figures.setdefault(name, {}).setdefault(figure, []).append(value)
            progress(
                f"codec {name} repetition {repetition + 1}/{args.repeat}: "
                + ", ".join(f"{figure} {value:,.0f} MB/s" for figure, value in result.items())
            )
    return figures


def add_codec_rows(
    rows: list[Row], figures: dict[str, dict[str, list[float]]], chunk_mib: int
) -> None:
    for data_chunks, parity_chunks in SCHEMES:
        name = scheme_name(data_chunks, parity_chunks)
        scheme = figures[name]
        copy = f"bytearray copy of the {data_chunks * chunk_mib} MiB stripe"
        texts = {
            "encode": f"encode {name}, {chunk_mib} MiB chunks",
            "decode_one": f"decode {name}, 1 lost data chunk",
        }
        # With M = 1 the second decode figure would repeat the first.
        if parity_chunks > 1:
            texts["decode_m"] = f"decode {name}, {parity_chunks} lost data chunks"
        for figure, text in texts.items():
            rows.append(Row(text, "MB/s", scheme[figure], copy, scheme["copy"]))


# 2. Healthy and degraded GET.


def upload_chunks(process: ManagedProcess, upload_id: str) -> list[tuple[int, int]]:
    """Return (stripe, position) of each chunk file of one upload on a dataserver.

    A chunk file is named by the hex of its chunk id, which starts with the
    upload id, and a committed object's version id is its upload id.
    """
    found = []
    for path in (process.directory / "chunks").glob(f"*/{upload_id}*"):
        _, stripe, position = split_chunk_id(bytes.fromhex(path.name))
        found.append((stripe, position))
    return found


def chunk_holder(cluster: LocalCluster, upload_id: str, stripe: int, position: int) -> int:
    """Return the index of the dataserver that stores one chunk of an upload."""
    for index, process in enumerate(cluster.dataservers):
        if (stripe, position) in upload_chunks(process, upload_id):
            return index
    raise RuntimeError(f"no dataserver stores stripe {stripe} position {position} of {upload_id}")


@dataclass(slots=True)
class CpuMeter:
    """CPU seconds of this process and of the running dataservers during a `with` block."""

    cluster: LocalCluster
    client_s: float = 0.0
    dataservers_s: float = 0.0

    def __enter__(self) -> CpuMeter:
        self.client_s = -time.process_time()
        self.dataservers_s = -dataservers_cpu_s(self.cluster)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.client_s += time.process_time()
        self.dataservers_s += dataservers_cpu_s(self.cluster)


def dataservers_cpu_s(cluster: LocalCluster) -> float:
    """Return the CPU seconds the running dataservers used so far; killed ones count 0."""
    return sum(process_cpu_s(p.pid) for p in cluster.dataservers if p.alive())


def metaservers_cpu_s(cluster: LocalCluster) -> float:
    return sum(process_cpu_s(p.pid) for p in cluster.metaservers)


async def read_into(client: AsyncClient, key: str, buffer: bytearray) -> float:
    """Return the MB/s of one get_into() of the whole object into `buffer`."""
    start_s = time.perf_counter()
    copied_bytes = await client.get_into(GET_BUCKET, key, buffer)
    mb_s = copied_bytes / (time.perf_counter() - start_s) / 1e6
    if copied_bytes != len(buffer):
        raise RuntimeError(f"get_into of {key} copied {copied_bytes} of {len(buffer)} bytes")
    return mb_s


async def read_stream(client: AsyncClient, key: str, size_bytes: int) -> tuple[float, int]:
    """Return the MB/s of one get_stream() and the CRC32C of what it yielded.

    The CRC32C runs inside the timed loop, at about 20 GB/s, so the stream's
    bytes need not be kept.
    """
    checksum = 0
    received_bytes = 0
    start_s = time.perf_counter()
    async for piece in client.get_stream(GET_BUCKET, key):
        checksum = crc32c(piece, checksum)
        received_bytes += len(piece)
    mb_s = received_bytes / (time.perf_counter() - start_s) / 1e6
    if received_bytes != size_bytes:
        raise RuntimeError(f"get_stream of {key} yielded {received_bytes} of {size_bytes} bytes")
    return mb_s, checksum


@dataclass(slots=True)
class ReadCheck:
    """The expected result of each read: the object's CRC32C and the chunk ranges decoded."""

    crc32c: int
    decoded_ranges: int


async def measure_reads(
    cluster: LocalCluster, key: str, buffer: bytearray, expected: ReadCheck
) -> dict[str, float]:
    """Read the object with get_into() and get_stream() on a new client; check bytes and decodes.

    A new client starts with a fresh cluster map and fresh channels, so its map
    shows a restarted dataserver as up, and its first read from a killed one fails.
    """
    result = {}
    gib = len(buffer) / GIB
    async with AsyncClient(cluster.meta_address) as client:
        for method in ("get_into", "get_stream"):
            with counting_log("store.download") as read_log, CpuMeter(cluster) as cpu:
                if method == "get_into":
                    mb_s = await read_into(client, key, buffer)
                else:
                    mb_s, checksum = await read_stream(client, key, len(buffer))
            if method == "get_into":
                checksum = crc32c(buffer)
            if checksum != expected.crc32c:
                raise RuntimeError(
                    f"{method} of {key} read bytes with CRC32C {checksum:#010x}, "
                    f"expected {expected.crc32c:#010x}"
                )
            decoded_ranges = read_log.counts.get(DEGRADED_READ_MESSAGE, 0)
            if decoded_ranges != expected.decoded_ranges:
                raise RuntimeError(
                    f"{method} of {key} decoded {decoded_ranges} chunk ranges, "
                    f"expected {expected.decoded_ranges}"
                )
            result[method] = mb_s
            result[f"{method}_client_cpu_s_per_gib"] = cpu.client_s / gib
            result[f"{method}_dataserver_cpu_s_per_gib"] = cpu.dataservers_s / gib
    return result


async def write_get_object(meta_address: str, data: bytes) -> ObjectInfo:
    """Create the ec:4+2 bucket and put the object into it."""
    async with AsyncClient(meta_address) as client:
        scheme = scheme_name(*GET_SCHEME)
        await client.create_bucket(GET_BUCKET, scheme=scheme)
        info = await client.put(GET_BUCKET, "object", data)
    if info.scheme != scheme:
        raise RuntimeError(f"the object was written with {info.scheme}, expected {scheme}")
    return info


def measure_gets(
    args: argparse.Namespace, data: bytes, details: dict[str, Any]
) -> dict[str, list[float]]:
    """Measure healthy and degraded reads on one fresh cluster, the victim restarted each time."""
    figures: dict[str, list[float]] = {}
    expected_crc = crc32c(data)
    buffer = bytearray(len(data))
    with local_cluster(args.work_dir, DATASERVERS, "erasure-get") as cluster:
        info = asyncio.run(write_get_object(cluster.meta_address, data))
        victim = cluster.dataservers[chunk_holder(cluster, info.version_id, 0, 0)]
        lost = upload_chunks(victim, info.version_id)
        degraded_stripes = sum(1 for _, position in lost if position < GET_SCHEME[0])
        details["get"] = {
            "chunk_size_bytes": info.chunk_size_bytes,
            "stripes": info.stripe_count,
            "victim": victim.name,
            "victim_chunks": len(lost),
            "stripes_decoded_per_read": degraded_stripes,
        }
        progress(
            f"{victim.name} holds {len(lost)} chunks of the object, data chunks of "
            f"{degraded_stripes} stripes"
        )
        for repetition in range(args.repeat):
            healthy = asyncio.run(
                measure_reads(cluster, "object", buffer, ReadCheck(expected_crc, 0))
            )
            victim.kill()
            degraded = asyncio.run(
                measure_reads(cluster, "object", buffer, ReadCheck(expected_crc, degraded_stripes))
            )
            cluster.restart(victim)
            for name in healthy:
                figures.setdefault(f"healthy_{name}", []).append(healthy[name])
                figures.setdefault(f"degraded_{name}", []).append(degraded[name])
            progress(
                f"GET repetition {repetition + 1}/{args.repeat}: "
                f"healthy get_into {healthy['get_into']:,.0f} MB/s, "
                f"get_stream {healthy['get_stream']:,.0f} MB/s; "
                f"degraded get_into {degraded['get_into']:,.0f} MB/s, "
                f"get_stream {degraded['get_stream']:,.0f} MB/s"
            )
    return figures


def add_get_rows(rows: list[Row], figures: dict[str, list[float]], size: str) -> None:
    where = f"{size}, {scheme_name(*GET_SCHEME)}, {DATASERVERS} dataservers"
    for method, text in (("get_into", "get_into() a bytearray"), ("get_stream", "get_stream()")):
        rows.append(
            Row(
                f"{text}, {where}, 1 dataserver killed",
                "MB/s",
                figures[f"degraded_{method}"],
                f"{text}, healthy, same cluster",
                figures[f"healthy_{method}"],
                DEGRADED_TARGET,
            )
        )
    for role, processes in (("client", "client"), ("dataserver", "dataservers")):
        name = f"get_into_{role}_cpu_s_per_gib"
        rows.append(
            Row(
                f"CPU per GiB read, {processes}, get_into(), {where}, 1 dataserver killed",
                "CPU s/GiB",
                figures[f"degraded_{name}"],
                "the same, healthy",
                figures[f"healthy_{name}"],
            )
        )


# 3. CPU per GiB written.


async def measure_put(
    client: AsyncClient, cluster: LocalCluster, bucket: str, key: str, data: bytes
) -> dict[str, float]:
    """Put `data` once; return MB/s and CPU seconds per GiB of the client and the servers."""
    gib = len(data) / GIB
    metaserver_before_s = metaservers_cpu_s(cluster)
    with CpuMeter(cluster) as cpu:
        start_s = time.perf_counter()
        await client.put(bucket, key, data)
        elapsed_s = time.perf_counter() - start_s
    metaserver_s = metaservers_cpu_s(cluster) - metaserver_before_s
    return {
        "mb_s": len(data) / elapsed_s / 1e6,
        "client_cpu_s_per_gib": cpu.client_s / gib,
        "dataserver_cpu_s_per_gib": cpu.dataservers_s / gib,
        "metaserver_cpu_s_per_gib": metaserver_s / gib,
        "total_cpu_s_per_gib": (cpu.client_s + cpu.dataservers_s) / gib,
    }


async def measure_put_repetitions(
    cluster: LocalCluster, data: bytes, repeat: int
) -> dict[str, dict[str, list[float]]]:
    """Put into each scheme's bucket `repeat` times, alternating which scheme goes first."""
    figures: dict[str, dict[str, list[float]]] = {scheme: {} for scheme in WRITE_SCHEMES}
    buckets = {scheme: "bench-" + scheme.replace(":", "-").replace("+", "-") for scheme in figures}
    async with AsyncClient(cluster.meta_address) as client:
        for scheme, bucket in buckets.items():
            await client.create_bucket(bucket, scheme=scheme)
            # Warm up the channels and the servers' buffers.
            await client.put(bucket, "warmup", data[: 64 * MIB])
        for repetition in range(repeat):
            order = WRITE_SCHEMES if repetition % 2 == 0 else WRITE_SCHEMES[::-1]
            for scheme in order:
                result = await measure_put(
                    client, cluster, buckets[scheme], f"object-{repetition}", data
                )
                for name, value in result.items():
                    figures[scheme].setdefault(name, []).append(value)
                progress(
                    f"put {scheme} repetition {repetition + 1}/{repeat}: "
                    f"{result['mb_s']:,.0f} MB/s, CPU s/GiB client "
                    f"{result['client_cpu_s_per_gib']:.2f} + dataservers "
                    f"{result['dataserver_cpu_s_per_gib']:.2f}"
                )
    return figures


def add_put_rows(rows: list[Row], figures: dict[str, dict[str, list[float]]], size: str) -> None:
    coded, replicated = (figures[scheme] for scheme in WRITE_SCHEMES)
    where = f"put() of {size} from bytes, {DATASERVERS} dataservers"
    cpu_rows = {
        "total_cpu_s_per_gib": "client + dataservers",
        "client_cpu_s_per_gib": "client",
        "dataserver_cpu_s_per_gib": "dataservers",
    }
    for name, processes in cpu_rows.items():
        rows.append(
            Row(
                f"CPU per GiB written, {processes}, {WRITE_SCHEMES[0]}, {where}",
                "CPU s/GiB",
                coded[name],
                f"the same with {WRITE_SCHEMES[1]}",
                replicated[name],
            )
        )
    rows.append(
        Row(
            f"{where}, {WRITE_SCHEMES[0]}",
            "MB/s",
            coded["mb_s"],
            f"the same with {WRITE_SCHEMES[1]}",
            replicated["mb_s"],
        )
    )


def main() -> None:
    args = parse_args()
    # Every store process and client raises the same allocator thresholds. Without them,
    # each 4 MiB buffer that pyeclib returns is a fresh mmap() that page-faults when touched.
    tune_malloc()
    report = new_report("erasure", {**vars(args), "work_dir": str(args.work_dir)}, args.work_dir)
    size_text = f"{args.size_mib} MiB" if args.size_mib % 1024 else f"{args.size_mib // 1024} GiB"

    codec_figures = measure_codecs(args)
    report.details["codec"] = codec_figures
    add_codec_rows(report.rows, codec_figures, args.codec_chunk_mib)

    progress(f"generating {max(args.size_mib, args.repair_mib)} MiB of random data")
    random_data = os.urandom(max(args.size_mib, args.repair_mib) * MIB)
    data = random_data[: args.size_mib * MIB]
    get_figures = measure_gets(args, data, report.details)
    report.details["get"].update(get_figures)
    add_get_rows(report.rows, get_figures, size_text)

    with local_cluster(args.work_dir, DATASERVERS, "erasure-put") as cluster:
        put_figures = asyncio.run(measure_put_repetitions(cluster, data, args.repeat))
    report.details["put"] = put_figures
    add_put_rows(report.rows, put_figures, size_text)

    repair_figures = measure_repairs(args, random_data)
    report.details["repair"] = repair_figures
    add_repair_rows(report.rows, repair_figures, args.repair_dataservers)
    report.finish()


if __name__ == "__main__":
    main()
