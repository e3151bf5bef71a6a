"""Repair throughput of bench/erasure.py: rebuild the chunks of one SIGKILLed dataserver.

Each repetition starts a fresh cluster with short failure timeouts and the
repair throttle off, puts objects of 64 MiB into an ec:4+2 bucket, and reads
them all once with get_into() as the healthy baseline. It then SIGKILLs one
dataserver and times the repair from the moment the cluster map shows that
dataserver out until the metaserver's status counts one rebuilt chunk for
every chunk file the dataserver held. Afterwards the script checks that every
chunk has a file on a live dataserver, SIGKILLs two more dataservers, and
reads every object back against the CRC32C of the written bytes. Two more,
not one: ec:4+2 survives two lost dataservers even without repair, so only
a third loss shows that repair restored the stripes that lost a chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from typing import Any

from benchlib import GIB, MIB, Row, counting_log, local_cluster, process_cpu_s, progress

from store import AsyncClient
from store._pb import common_pb2 as pb
from store._pb import meta_pb2
from store.checksum import crc32c
from store.cluster import LocalCluster, ManagedProcess
from store.layout import chunk_position, split_chunk_id
from store.status import fetch_cluster_map, fetch_metaserver_status

REPAIR_SCHEME = "ec:4+2"
REPAIR_DATA_CHUNKS = 4
REPAIR_STRIPE_WIDTH = 6
# Dataservers killed after the repair, on top of the first one.
LATER_KILLS = 2
REPAIR_BUCKET = "bench-ec-repair"
OBJECT_MIB = 64
# A dataserver is out 3 s after its last heartbeat: 2 s to down, 1 s more to out. The
# margins stay wide because a 1 GiB read on 2 shared cores can delay a heartbeat.
FAILURE_ARGS = [
    *("--dataserver-suspect-s", "1.0"),
    *("--dataserver-timeout-s", "2.0"),
    *("--dataserver-out-s", "1.0"),
    *("--repair-interval-s", "0.2"),
    *("--repair-bandwidth-bytes-s", "0"),
    *("--gc-interval-s", "0.5"),
    *("--gc-delay-s", "0"),
]
HEARTBEAT_ARGS = ["--heartbeat-interval-s", "0.2"]
POLL_INTERVAL_S = 0.05
STATUS_TIMEOUT_S = 5.0
CLIENT_TIMEOUT_S = 120.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--repair-mib",
        type=int,
        default=1024,
        help=f"MiB of objects of {OBJECT_MIB} MiB to repair; a multiple of {OBJECT_MIB}",
    )
    parser.add_argument(
        "--repair-dataservers",
        type=int,
        default=7,
        help="dataservers of the repair cluster; ec:4+2 needs 6 left after the kill",
    )
    parser.add_argument(
        "--repair-timeout-s",
        type=float,
        default=300.0,
        help="seconds to wait for the out transition and for the repair, each",
    )


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.repair_mib < OBJECT_MIB or args.repair_mib % OBJECT_MIB:
        parser.error(f"--repair-mib {args.repair_mib} must be a multiple of {OBJECT_MIB}")
    # Repair never puts two chunks of a stripe on one dataserver, so the K + M chunks of
    # every stripe need K + M dataservers left after the kill.
    assert REPAIR_STRIPE_WIDTH - 1 - LATER_KILLS < REPAIR_DATA_CHUNKS, (
        "without repair, the later kills must leave fewer than K chunks"
    )
    if args.repair_dataservers < REPAIR_STRIPE_WIDTH + 1:
        parser.error(
            f"--repair-dataservers {args.repair_dataservers} is too few: {REPAIR_SCHEME} "
            f"needs {REPAIR_STRIPE_WIDTH} dataservers left after one is killed, so at least "
            f"{REPAIR_STRIPE_WIDTH + 1}"
        )


@dataclass(slots=True)
class StoredObject:
    key: str
    data: memoryview
    crc32c: int
    version_id: str = ""
    chunk_count: int = 0


def split_objects(data: bytes, total_mib: int) -> list[StoredObject]:
    """Cut the first `total_mib` MiB of `data` into objects of OBJECT_MIB each."""
    assert len(data) >= total_mib * MIB, "the random data is shorter than the repair set"
    view = memoryview(data)
    objects = []
    for index in range(total_mib // OBJECT_MIB):
        piece = view[index * OBJECT_MIB * MIB : (index + 1) * OBJECT_MIB * MIB]
        objects.append(StoredObject(f"object-{index:03d}", piece, crc32c(piece)))
    return objects


async def put_objects(meta_address: str, objects: list[StoredObject]) -> None:
    """Create the bucket, put every object and record its version id and chunk count."""
    async with AsyncClient(meta_address, timeout_s=CLIENT_TIMEOUT_S) as client:
        await client.create_bucket(REPAIR_BUCKET, scheme=REPAIR_SCHEME)
        for stored in objects:
            info = await client.put(REPAIR_BUCKET, stored.key, stored.data)
            if info.scheme != REPAIR_SCHEME:
                raise RuntimeError(f"{stored.key} was written with {info.scheme}")
            stored.version_id = info.version_id
            stored.chunk_count = info.chunk_count


async def read_objects(meta_address: str, objects: list[StoredObject]) -> float:
    """Read every object with get_into() on a new client; return MB/s of the reads alone.

    Each read must return the CRC32C of the written bytes; the checks run outside
    the timed calls.
    """
    buffer = bytearray(OBJECT_MIB * MIB)
    elapsed_s = 0.0
    async with AsyncClient(meta_address, timeout_s=CLIENT_TIMEOUT_S) as client:
        for stored in objects:
            start_s = time.perf_counter()
            copied_bytes = await client.get_into(REPAIR_BUCKET, stored.key, buffer)
            elapsed_s += time.perf_counter() - start_s
            checksum = crc32c(memoryview(buffer)[:copied_bytes])
            if copied_bytes != len(stored.data) or checksum != stored.crc32c:
                raise RuntimeError(
                    f"get_into of {stored.key} returned {copied_bytes} bytes with CRC32C "
                    f"{checksum:#010x}, expected {len(stored.data)} bytes with "
                    f"{stored.crc32c:#010x}"
                )
    return sum(len(stored.data) for stored in objects) / elapsed_s / 1e6


def stored_chunks(
    process: ManagedProcess, objects: list[StoredObject]
) -> set[tuple[str, int, int]]:
    """Return (version id, stripe, position) of each chunk file of the objects on a dataserver.

    A rebuilt chunk keeps the position of the lost one in the low byte of its id's
    position field, so chunk_position() names both the same.
    """
    versions = tuple(stored.version_id for stored in objects)
    found = set()
    for path in (process.directory / "chunks").glob("*/*"):
        if path.name.startswith(versions):
            chunk_id = bytes.fromhex(path.name)
            upload_id, stripe, _ = split_chunk_id(chunk_id)
            found.add((upload_id, stripe, chunk_position(chunk_id)))
    return found


def stripes_on_all(processes: list[ManagedProcess], objects: list[StoredObject]) -> int:
    """Count the stripes that have a chunk file on every one of `processes`."""
    common: set[tuple[str, int]] | None = None
    for process in processes:
        stripes = {(version, stripe) for version, stripe, _ in stored_chunks(process, objects)}
        common = stripes if common is None else common & stripes
    return len(common or ())


def dataserver_states(cluster: LocalCluster) -> dict[str, str]:
    """Return each dataserver's state in the cluster map, by dataserver id."""
    cluster_map = fetch_cluster_map([cluster.meta_address], STATUS_TIMEOUT_S)
    return {info.id: pb.DataserverState.Name(info.state) for info in cluster_map.dataservers}


def wait_until_out(cluster: LocalCluster, victim: ManagedProcess, timeout_s: float) -> float:
    """Poll the cluster map until `victim` is out; return time.monotonic() when seen."""
    deadline_s = time.monotonic() + timeout_s
    expected = pb.DataserverState.Name(pb.DATASERVER_STATE_OUT)
    while time.monotonic() < deadline_s:
        if dataserver_states(cluster).get(victim.server_id) == expected:
            return time.monotonic()
        time.sleep(POLL_INTERVAL_S)
    raise RuntimeError(
        f"{victim.name} was not marked out within {timeout_s}s of its SIGKILL; "
        f"states: {dataserver_states(cluster)}"
    )


@dataclass(slots=True)
class RepairTiming:
    """When the status first counted a rebuilt chunk and when it counted all of them."""

    first_chunk_s: float
    done_s: float
    status: meta_pb2.RepairStatus


def wait_for_repair(cluster: LocalCluster, lost_chunks: int, timeout_s: float) -> RepairTiming:
    """Poll the metaserver's status until it counts `lost_chunks` rebuilt chunks.

    The counters rise when a repaired object's new layout commits, so the first
    count comes after the first object's stripes were rebuilt.
    """
    deadline_s = time.monotonic() + timeout_s
    first_chunk_s = 0.0
    while time.monotonic() < deadline_s:
        status = fetch_metaserver_status(cluster.meta_address, STATUS_TIMEOUT_S).repair
        now_s = time.monotonic()
        if status.repaired_chunks and not first_chunk_s:
            first_chunk_s = now_s
        if status.repaired_chunks >= lost_chunks:
            return RepairTiming(first_chunk_s, now_s, status)
        if status.unrecoverable_stripes:
            break
        time.sleep(POLL_INTERVAL_S)
    raise RuntimeError(
        f"repair did not rebuild {lost_chunks} chunks within {timeout_s}s; status: "
        f"{' '.join(str(status).split())}; last failure in the metaserver's log: "
        f"{last_repair_failure(cluster.metaservers[0])}"
    )


def last_repair_failure(metaserver: ManagedProcess) -> str:
    """Return the metaserver's last "repair failed" log line, since the cluster is removed."""
    lines = metaserver.log_path.read_text(errors="replace").splitlines()
    failures = [line for line in lines if "repair failed" in line]
    return failures[-1] if failures else "none"


def check_chunks_live(
    cluster: LocalCluster, victim: ManagedProcess, objects: list[StoredObject]
) -> None:
    """Raise unless every chunk of every object has a file on a live dataserver."""
    live: set[tuple[str, int, int]] = set()
    for process in cluster.dataservers:
        if process is not victim:
            live |= stored_chunks(process, objects)
    expected = sum(stored.chunk_count for stored in objects)
    if len(live) != expected:
        raise RuntimeError(
            f"after the repair, live dataservers hold {len(live)} of the {expected} chunks"
        )


def measure_repair_once(args: argparse.Namespace, objects: list[StoredObject]) -> dict[str, Any]:
    """Run one repetition on a fresh cluster; return its figures."""
    options = {"meta_args": FAILURE_ARGS, "data_args": HEARTBEAT_ARGS}
    with local_cluster(args.work_dir, args.repair_dataservers, "erasure-repair", **options) as (
        cluster
    ):
        asyncio.run(put_objects(cluster.meta_address, objects))
        healthy_mb_s = asyncio.run(read_objects(cluster.meta_address, objects))

        # 1. Kill one dataserver and wait until the map shows it out. Without repair, the
        # stripes with a chunk on it and on both later victims would become unreadable.
        victim, *later_victims = cluster.dataservers[: 1 + LATER_KILLS]
        lost_chunks = len(stored_chunks(victim, objects))
        exposed_stripes = stripes_on_all([victim, *later_victims], objects)
        killed_s = time.monotonic()
        victim.kill()
        out_s = wait_until_out(cluster, victim, args.repair_timeout_s)
        metaserver = cluster.metaservers[0]
        metaserver_cpu_before_s = process_cpu_s(metaserver.pid)

        # 2. Time the repair until the status counts every lost chunk rebuilt.
        timing = wait_for_repair(cluster, lost_chunks, args.repair_timeout_s)
        # This includes serving the status and map polls, 20 of each per second.
        metaserver_cpu_s = process_cpu_s(metaserver.pid) - metaserver_cpu_before_s
        states = dataserver_states(cluster)

        # 3. Check that protection is back: every chunk on a live dataserver, and every
        # object readable with two more dataservers killed.
        check_chunks_live(cluster, victim, objects)
        for process in later_victims:
            process.kill()
        with counting_log("store.download") as read_log:
            after_mb_s = asyncio.run(read_objects(cluster.meta_address, objects))

    status = timing.status
    repair_s = timing.done_s - out_s
    return {
        "healthy_get_into_mb_s": healthy_mb_s,
        "rebuilt_mb_s": status.repaired_bytes / repair_s / 1e6,
        # NOTE: derived, not counted: repair reads K chunks per stripe that lost one, and
        # more only when a read fails, which the metaserver logs as "repair read failed".
        "read_mb_s": REPAIR_DATA_CHUNKS * status.repaired_bytes / repair_s / 1e6,
        "repair_s": repair_s,
        "kill_to_out_s": out_s - killed_s,
        "out_to_first_commit_s": timing.first_chunk_s - out_s,
        "lost_chunks": lost_chunks,
        "repaired_chunks": status.repaired_chunks,
        "repaired_bytes": status.repaired_bytes,
        "moved_chunks": status.moved_chunks,
        "repair_failures": status.failures,
        "metaserver_cpu_s_per_gib_rebuilt": metaserver_cpu_s / (status.repaired_bytes / GIB),
        "stripes_unreadable_without_repair": exposed_stripes,
        "get_into_after_repair_and_2_kills_mb_s": after_mb_s,
        "decoded_ranges_after_repair_and_2_kills": read_log.counts.get("degraded read", 0),
        "states_after_repair": states,
    }


def measure_repairs(args: argparse.Namespace, data: bytes) -> dict[str, list[Any]]:
    """Measure `args.repeat` repairs, each on a fresh cluster; return every figure's list."""
    objects = split_objects(data, args.repair_mib)
    figures: dict[str, list[Any]] = {}
    for repetition in range(args.repeat):
        result = measure_repair_once(args, objects)
        for name, value in result.items():
            figures.setdefault(name, []).append(value)
        progress(
            f"repair repetition {repetition + 1}/{args.repeat}: {result['lost_chunks']} chunks "
            f"rebuilt in {result['repair_s']:.1f} s, {result['rebuilt_mb_s']:,.0f} MB/s "
            f"written and {result['read_mb_s']:,.0f} MB/s read; healthy get_into "
            f"{result['healthy_get_into_mb_s']:,.0f} MB/s; out {result['kill_to_out_s']:.1f} s "
            "after the SIGKILL"
        )
    return figures


def add_repair_rows(rows: list[Row], figures: dict[str, list[Any]], dataservers: int) -> None:
    size_mib = sum(figures["repaired_bytes"]) // len(figures["repaired_bytes"]) // MIB
    where = f"{REPAIR_SCHEME}, {dataservers} dataservers, 1 killed, throttle off"
    baseline = f"get_into() of the same {OBJECT_MIB} MiB objects, healthy, same cluster"
    rows.append(
        Row(
            f"repair, rebuilt chunk bytes written (about {size_mib} MiB), {where}",
            "MB/s",
            figures["rebuilt_mb_s"],
            baseline,
            figures["healthy_get_into_mb_s"],
        )
    )
    rows.append(
        Row(
            f"repair, chunk bytes read ({REPAIR_DATA_CHUNKS} per rebuilt chunk), {where}",
            "MB/s",
            figures["read_mb_s"],
            baseline,
            figures["healthy_get_into_mb_s"],
        )
    )
