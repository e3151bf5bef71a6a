"""Failures injected into real processes while clients read and write.

Dataservers and the metaserver are killed with SIGKILL, chunk files are
corrupted or deleted on disk, and dataserver disks fill up. Every
acknowledged write must read back, and repair, scrub and drain must bring
the cluster back to full protection with one chunk file per layout chunk.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator

import pytest

import store
from store.cluster import LocalCluster, ManagedProcess
from store.status import fetch_metaserver_status

from .support import (
    CHUNK_SIZE_BYTES,
    MIB,
    ClusterFactory,
    chunk_data_offset,
    chunk_files,
    flip_byte,
    make_data,
    mounted_tmpfs,
    temp_files,
    wait_until,
)
from .test_degraded import check_reads, chunk_name, holder
from .test_node_changes import chunk_counts, layouts_total, run_load, wait_drained
from .test_repair import (
    FAST_FAILURES,
    FAST_HEARTBEAT,
    REPAIR_WAIT_S,
    chunks_only_on,
    put_objects,
    repair_counters,
)
from .test_scrub import FAST_SCRUB_ARGS, quarantined

CHUNK = CHUNK_SIZE_BYTES
LOAD_JOIN_TIMEOUT_S = 60.0
# A rebuilt chunk keeps its position in the low byte of the id's position field and
# counts generations in the high byte, so the first rebuild adds 1 << 8.
FIRST_GENERATION = 1 << 8


def holds_chunk(cluster: LocalCluster, name: str) -> bool:
    """Return whether any dataserver has a chunk file of that name under chunks/."""
    return any(
        name in {path.name for path in chunk_files(process)} for process in cluster.dataservers
    )


def test_kill_m_dataservers_under_load(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(dataservers=5, meta_args=FAST_FAILURES, data_args=FAST_HEARTBEAT)
    with store.Client(cluster.meta_address, timeout_s=30) as client:
        client.create_bucket("load", scheme="ec:2+1")
        objects = put_objects(client, "load", 4)
        victim = holder(cluster, client.stat("load", "obj-0").version_id, 0, 0)[0]
        survivors = [p for p in cluster.dataservers if p is not victim]

        stop = threading.Event()
        errors: list[str] = []
        acknowledged: dict[str, bytes] = {}
        load = threading.Thread(
            target=run_load, args=(cluster.meta_address, "load", stop, errors, acknowledged)
        )
        load.start()
        try:
            wait_until(lambda: len(acknowledged) >= 3, 20, "the load to write 3 objects")
            victim.kill()
            written_before_kill = len(acknowledged)
            for key, data in objects.items():
                assert client.get("load", key) == data, f"{key} differs with {victim.name} dead"

            # The load keeps going while the victim turns suspect, down and out, and
            # while repair rebuilds its chunks.
            wait_until(
                lambda: len(acknowledged) >= written_before_kill + 10,
                30,
                f"the load to write 10 objects after {victim.name} was killed",
            )

            def repaired() -> bool:
                keys = list(objects) + list(dict(acknowledged))
                return chunks_only_on(cluster, client, "load", keys, survivors)

            wait_until(
                repaired,
                REPAIR_WAIT_S,
                f"repair to move every chunk off {victim.name} under load",
                state=lambda: repair_counters(cluster),
            )
        finally:
            stop.set()
            load.join(timeout=LOAD_JOIN_TIMEOUT_S)
        assert not load.is_alive(), f"the load did not stop within {LOAD_JOIN_TIMEOUT_S}s"
        assert not errors, f"the load failed with {victim.name} killed: {errors[:5]}"

        # Balancing may still be moving chunks among the survivors, and a moved chunk has
        # two files until the collector deletes the old one.
        written = {**objects, **acknowledged}
        wait_until(
            functools.partial(chunks_only_on, cluster, client, "load", list(written), survivors),
            REPAIR_WAIT_S,
            f"one file per chunk of {len(written)} objects, none on {victim.name}",
            state=lambda: repair_counters(cluster),
        )
        for key, data in written.items():
            assert client.get("load", key) == data, f"acknowledged {key} differs after repair"

        # Full protection again: one more dataserver may die.
        second = survivors[0]
        second.kill()
        for key, data in written.items():
            assert client.get("load", key) == data, f"{key} differs with {second.name} dead too"


def test_scrub_and_repair_restore_chunks(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(
        dataservers=4, meta_args=FAST_FAILURES, data_args=[*FAST_HEARTBEAT, *FAST_SCRUB_ARGS]
    )
    with store.Client(cluster.meta_address) as client:
        client.create_bucket("rot", scheme="ec:2+1")
        data = make_data(4 * CHUNK, seed=91)
        info = client.put("rot", "obj", data)
        version = info.version_id

        # A flipped data byte in stripe 0 position 0, and a deleted chunk of stripe 1 on
        # another dataserver.
        flipped_on, flipped = holder(cluster, version, 0, 0)
        deleted_position = next(
            p for p in range(3) if holder(cluster, version, 1, p)[0] is not flipped_on
        )
        deleted_on, deleted = holder(cluster, version, 1, deleted_position)
        flip_byte(flipped, chunk_data_offset(flipped) + 1000)
        deleted.unlink()

        # Read only stripe 1, so the scrub alone finds the flipped byte in stripe 0.
        stripe_bytes = 2 * CHUNK
        got = client.get("rot", "obj", offset=stripe_bytes, length=stripe_bytes)
        assert got == data[stripe_bytes:], "the degraded read of stripe 1 returned other bytes"
        reported = {(chunk.hex(), server) for chunk, server, _ in client.bad_chunks()}
        assert reported == {(deleted.name, deleted_on.server_id)}, f"reader reported {reported}"

        rebuilt = [
            chunk_name(version, 0, FIRST_GENERATION),
            chunk_name(version, 1, deleted_position | FIRST_GENERATION),
        ]
        for name in rebuilt:
            wait_until(
                functools.partial(holds_chunk, cluster, name),
                REPAIR_WAIT_S,
                f"repair to write rebuilt chunk {name}",
                state=lambda: repair_counters(cluster),
            )
        assert flipped.name in quarantined(flipped_on), (
            f"scrub did not quarantine {flipped.name} on {flipped_on.name}"
        )

        def old_ids_gone() -> bool:
            return not holds_chunk(cluster, flipped.name) and not holds_chunk(cluster, deleted.name)

        wait_until(old_ids_gone, REPAIR_WAIT_S, "the old chunk ids to leave every dataserver")
        versions = [version]
        wait_until(
            lambda: sum(chunk_counts(cluster, versions).values()) == info.chunk_count,
            REPAIR_WAIT_S,
            f"{info.chunk_count} chunk files, one per layout chunk",
            state=lambda: chunk_counts(cluster, versions),
        )

    with store.Client(cluster.meta_address) as fresh:
        check_reads(fresh, "rot", "obj", data)
        assert fresh.bad_chunks() == [], f"reads still meet bad chunks: {fresh.bad_chunks()}"


def test_drain_resumes_after_metaserver_kill(cluster_factory: ClusterFactory) -> None:
    # Moves at 2 MiB/s of reads plus writes take about 1 s per chunk, so the kill lands
    # in the middle of the drain. An interrupted move's chunk is deleted after 6 s.
    meta_args = [
        *FAST_FAILURES,
        "--repair-bandwidth-bytes-s",
        str(2 * CHUNK),
        "--repair-intent-s",
        "6",
    ]
    cluster = cluster_factory(dataservers=5, meta_args=meta_args, data_args=FAST_HEARTBEAT)
    with store.Client(cluster.meta_address, timeout_s=30) as client:
        client.create_bucket("moving", scheme="ec:2+1")
        objects = {f"obj-{i}": make_data(2 * CHUNK + 10 * i, seed=800 + i) for i in range(8)}
        for key, data in objects.items():
            client.put("moving", key, data)
        versions = [client.stat("moving", key).version_id for key in objects]
        before = chunk_counts(cluster, versions)
        victim = max(cluster.dataservers, key=lambda p: before[p.name])
        assert before[victim.name] >= 4, f"{victim.name} holds too few chunks: {before}"

        client.drain_dataserver(victim.server_id)
        wait_until(
            lambda: chunk_counts(cluster, versions)[victim.name] < before[victim.name],
            REPAIR_WAIT_S,
            f"the drain to move a first chunk off {victim.name}",
            interval_s=0.05,
        )
        left = chunk_counts(cluster, versions)[victim.name]
        assert left > 0, f"the drain of {victim.name} finished before the metaserver kill"
        metaserver = cluster.metaservers[0]
        metaserver.kill()
        cluster.restart(metaserver)

        wait_drained(cluster, victim, versions, layouts_total(client, "moving", list(objects)))
        status = fetch_metaserver_status(cluster.meta_address, 5.0)
        assert status.repair.moved_chunks > 0, "the restarted metaserver moved no chunks"
        for key, data in objects.items():
            assert client.get("moving", key) == data, f"{key} differs after the drain"


# The full-disk test: four dataservers, each on its own small tmpfs.
SMALL_DISK_BYTES = 4 * MIB
LARGE_DISK_BYTES = 24 * MIB
FIRST_PUT_BYTES = 24 * MIB
OVERFLOW_PUT_BYTES = 64 * MIB


@pytest.fixture
def full_disk_cluster(
    cluster_factory: ClusterFactory,
) -> Iterator[tuple[LocalCluster, str]]:
    """Yield a cluster of one 4 MiB and three 24 MiB dataservers, and how disks are limited.

    Each dataserver directory is a tmpfs of that size. Where mounting is not
    permitted, the dataservers run on the normal disk with --capacity-bytes
    of that size instead, and the second value is "capacity".
    """
    meta_args = ["--gc-interval-s", "0.2", "--gc-delay-s", "0", "--upload-settle-s", "1"]
    cluster = cluster_factory(dataservers=0, meta_args=meta_args, data_args=FAST_HEARTBEAT)
    sizes = [SMALL_DISK_BYTES, LARGE_DISK_BYTES, LARGE_DISK_BYTES, LARGE_DISK_BYTES]
    with contextlib.ExitStack() as mounts:
        mounted = [
            mounts.enter_context(mounted_tmpfs(cluster.root / f"data-{index}", size))
            for index, size in enumerate(sizes)
        ]
        try:
            for size, on_tmpfs in zip(sizes, mounted, strict=True):
                extra = ["--reserve-bytes", "0"]
                if not on_tmpfs:
                    extra += ["--capacity-bytes", str(size)]
                cluster.add_dataserver(extra)
            yield cluster, "tmpfs" if all(mounted) else "capacity"
        finally:
            cluster_factory.stop_all()


def file_names(process: ManagedProcess) -> set[str]:
    return {path.name for path in chunk_files(process)}


def test_disk_fills_during_put(full_disk_cluster: tuple[LocalCluster, str]) -> None:
    cluster, limit = full_disk_cluster
    small = cluster.dataservers[0]
    with store.Client(cluster.meta_address, timeout_s=60) as client:
        client.create_bucket("filling", scheme="ec:2+1")
        data = make_data(FIRST_PUT_BYTES, seed=31)
        info = client.put("filling", "moved", data)
        assert info.chunk_count == 3 * FIRST_PUT_BYTES // (2 * CHUNK), f"{info.chunk_count} chunks"
        # The disk took a few chunks before it filled; the rest of its share moved.
        placed = chunk_counts(cluster, [info.version_id])
        assert 0 < placed[small.name] < info.chunk_count // 4, f"{limit} chunk counts: {placed}"
        assert temp_files(small) == [], f"unfinished writes left on {small.name}"
        wait_until(
            lambda: sum(chunk_counts(cluster, [info.version_id]).values()) == info.chunk_count,
            30,
            f"{info.chunk_count} chunk files, one per layout chunk",
            state=lambda: chunk_counts(cluster, [info.version_id]),
        )
        check_reads(client, "filling", "moved", data)
        assert client.bad_chunks() == [], f"reads met bad chunks: {client.bad_chunks()}"

        # Every disk fills during this put, so it fails and commits nothing.
        live = {process.name: file_names(process) for process in cluster.dataservers}
        with pytest.raises(store.ResourceExhausted) as caught:
            client.put("filling", "too-big", make_data(OVERFLOW_PUT_BYTES, seed=32))
        message = str(caught.value)
        assert "was not stored" in message, f"unclear error ({limit}): {message}"
        with pytest.raises(store.NoSuchKey):
            client.stat("filling", "too-big")
        for process in cluster.dataservers:
            wait_until(
                lambda process=process: file_names(process) == live[process.name],
                30,
                f"chunks of the failed put on {process.name} to be deleted",
                state=functools.partial(chunk_files, process),
            )
            assert temp_files(process) == [], f"unfinished writes left on {process.name}"
        check_reads(client, "filling", "moved", data)
