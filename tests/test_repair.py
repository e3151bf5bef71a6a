"""Background repair on real processes: lost dataservers, reported chunks, restarts.

Dataservers are killed with SIGKILL and marked out after short timeouts.
Repair must rebuild every lost chunk elsewhere, so that the objects survive
the loss of another dataserver. The lost chunks are collected when their
dataserver returns.
"""

from __future__ import annotations

import functools

import grpc

import store
from store._pb import meta_pb2, meta_pb2_grpc
from store.cluster import LocalCluster, ManagedProcess
from store.rpc import CHANNEL_OPTIONS
from store.shardmap import shard_of
from store.status import fetch_metaserver_status

from .support import (
    CHUNK_SIZE_BYTES,
    ClusterFactory,
    chunk_data_offset,
    chunk_files,
    flip_byte,
    make_data,
    upload_chunk_files,
    wait_until,
)
from .test_degraded import holder

CHUNK = CHUNK_SIZE_BYTES
FAST_FAILURES = [
    "--dataserver-suspect-s",
    "0.3",
    "--dataserver-timeout-s",
    "0.8",
    "--dataserver-out-s",
    "0.5",
    "--repair-interval-s",
    "0.3",
    "--gc-interval-s",
    "0.3",
    "--gc-delay-s",
    "0",
]
FAST_HEARTBEAT = ["--heartbeat-interval-s", "0.1"]
REPAIR_WAIT_S = 60.0


def put_objects(client: store.Client, bucket: str, count: int) -> dict[str, bytes]:
    objects = {f"obj-{i}": make_data(3 * CHUNK + 1000 * i, seed=400 + i) for i in range(count)}
    for key, data in objects.items():
        client.put(bucket, key, data)
    return objects


def chunks_only_on(
    cluster: LocalCluster,
    client: store.Client,
    bucket: str,
    keys: list[str],
    live: list[ManagedProcess],
) -> bool:
    """Return whether every chunk of the objects is on `live`, one file per chunk, and the
    layouts name only `live` dataservers.

    A repair writes the new chunk file before it commits the layout that names it, so
    the files alone do not show that a read no longer needs the failed dataserver.
    """
    names = {process.name for process in live}
    live_ids = {process.server_id for process in live}
    for key in keys:
        info = client.stat(bucket, key)
        files = upload_chunk_files(cluster, info.version_id)
        on_live = [path.name for name, paths in files.items() if name in names for path in paths]
        if len(on_live) != info.chunk_count or len(set(on_live)) != info.chunk_count:
            return False
        if not layout_targets(cluster, bucket, key) <= live_ids:
            return False
    return True


def layout_targets(cluster: LocalCluster, bucket: str, key: str) -> set[str]:
    """Return the dataservers that the object's layout names, from the metaserver's record."""
    raw_key = key.encode()
    request = meta_pb2.StatObjectRequest(
        bucket=bucket, key=raw_key, shard=shard_of(bucket, raw_key, cluster.shards)
    )
    with grpc.insecure_channel(cluster.meta_address, options=CHANNEL_OPTIONS) as channel:
        record = meta_pb2_grpc.MetaServiceStub(channel).StatObject(request, timeout=5)
    return {chunk.target for stripe in record.layout.stripes for chunk in stripe.chunks}


def repair_counters(cluster: LocalCluster) -> tuple[int, int]:
    status = fetch_metaserver_status(cluster.meta_address, 5.0)
    return status.repair.repaired_chunks, status.repair.queued_objects


def test_repair_rebuilds_an_out_dataserver(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(dataservers=5, meta_args=FAST_FAILURES, data_args=FAST_HEARTBEAT)
    with store.Client(cluster.meta_address, timeout_s=30) as client:
        client.create_bucket("healing", scheme="ec:2+1")
        objects = put_objects(client, "healing", 6)
        victim = holder(cluster, client.stat("healing", "obj-0").version_id, 0, 0)[0]
        victim.kill()
        survivors = [p for p in cluster.dataservers if p is not victim]

        wait_until(
            functools.partial(chunks_only_on, cluster, client, "healing", list(objects), survivors),
            REPAIR_WAIT_S,
            f"repair to move every chunk off {victim.name}",
            state=lambda: repair_counters(cluster),
        )
        rebuilt, _ = repair_counters(cluster)
        assert rebuilt > 0, "the status reports no rebuilt chunks"

        # Full protection again: any one more dataserver may die.
        second = survivors[0]
        second.kill()
        for key, data in objects.items():
            assert client.get("healing", key) == data, f"{key} differs after the repair"
        cluster.restart(second)

        # The victim returns with its old chunks; they are collected, not counted twice, and
        # rebalancing may give it new ones.
        cluster.restart(victim)
        versions = tuple(client.stat("healing", key).version_id for key in objects)
        expected = sum(client.stat("healing", key).chunk_count for key in objects)

        def stored_chunks() -> int:
            return sum(
                1
                for process in cluster.dataservers
                for path in chunk_files(process)
                if path.name.startswith(versions)
            )

        wait_until(
            lambda: stored_chunks() == expected,
            REPAIR_WAIT_S,
            f"{expected} chunk files, one per chunk of the layouts",
            state=stored_chunks,
        )
        for key, data in objects.items():
            assert client.get("healing", key) == data, f"{key} differs after the victim returned"


def test_reported_corrupt_chunk_is_rebuilt(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(dataservers=4, meta_args=FAST_FAILURES, data_args=FAST_HEARTBEAT)
    with store.Client(cluster.meta_address) as client:
        client.create_bucket("rotten", scheme="ec:2+1")
        data = make_data(4 * CHUNK, seed=77)
        version = client.put("rotten", "obj", data).version_id
        _, path = holder(cluster, version, 1, 0)
        flip_byte(path, chunk_data_offset(path) + 5)

        assert client.get("rotten", "obj") == data, "the degraded read returned other bytes"
        assert client.bad_chunks(), "the corrupt chunk was not noticed"
        wait_until(lambda: not path.exists(), REPAIR_WAIT_S, f"corrupt {path.name} replaced")

    with store.Client(cluster.meta_address) as fresh:
        assert fresh.get("rotten", "obj") == data, "the repaired object differs"
        assert fresh.bad_chunks() == [], f"reads still meet bad chunks: {fresh.bad_chunks()}"


def test_repair_resumes_after_metaserver_kill(cluster_factory: ClusterFactory) -> None:
    # A slow repair (1 MiB/s), so the kill lands in the middle of it.
    meta_args = [
        *FAST_FAILURES,
        "--repair-bandwidth-bytes-s",
        str(CHUNK),
        "--repair-intent-s",
        "20",
    ]
    cluster = cluster_factory(dataservers=5, meta_args=meta_args, data_args=FAST_HEARTBEAT)
    with store.Client(cluster.meta_address, timeout_s=30) as client:
        client.create_bucket("resume", scheme="ec:2+1")
        objects = put_objects(client, "resume", 6)
        victim = holder(cluster, client.stat("resume", "obj-0").version_id, 0, 0)[0]
        victim.kill()
        survivors = [p for p in cluster.dataservers if p is not victim]

        wait_until(lambda: repair_counters(cluster)[0] > 0, REPAIR_WAIT_S, "repair to start")
        cluster.metaservers[0].kill()
        cluster.restart(cluster.metaservers[0])

        wait_until(
            functools.partial(chunks_only_on, cluster, client, "resume", list(objects), survivors),
            REPAIR_WAIT_S,
            "repair to finish after the metaserver restart",
            state=lambda: repair_counters(cluster),
        )
        # Chunks the interrupted repair wrote but never committed are collected.
        versions = [client.stat("resume", key).version_id for key in objects]
        expected = sum(client.stat("resume", key).chunk_count for key in objects)

        def stored_chunks() -> int:
            return sum(
                1
                for process in survivors
                for path in chunk_files(process)
                if path.name.startswith(tuple(versions))
            )

        wait_until(
            lambda: stored_chunks() == expected,
            REPAIR_WAIT_S,
            f"{expected} chunk files, one per chunk of the layouts",
            state=stored_chunks,
        )
        survivors[1].kill()
        for key, data in objects.items():
            assert client.get("resume", key) == data, f"{key} differs after the resumed repair"


def test_metadata_scrub_finds_a_deleted_chunk(cluster_factory: ClusterFactory) -> None:
    meta_args = [*FAST_FAILURES, "--meta-scrub-interval-s", "0.5"]
    cluster = cluster_factory(dataservers=4, meta_args=meta_args, data_args=FAST_HEARTBEAT)
    with store.Client(cluster.meta_address) as client:
        client.create_bucket("vanish", scheme="ec:2+1")
        data = make_data(4 * CHUNK, seed=78)
        version = client.put("vanish", "obj", data).version_id
        _, path = holder(cluster, version, 0, 2)
        path.unlink()

        # No client reads the object: the metadata scrub alone must notice.
        def rebuilt() -> bool:
            try:
                holder(cluster, version, 0, 2 | 1 << 8)
            except AssertionError:
                return False
            return True

        wait_until(rebuilt, REPAIR_WAIT_S, "the deleted parity chunk to be rebuilt")
        status = fetch_metaserver_status(cluster.meta_address, 5.0)
        assert status.repair.scrub_bad_chunks >= 1, "the status shows no chunk found bad"

    with store.Client(cluster.meta_address) as fresh:
        assert fresh.get("vanish", "obj") == data, "the repaired object differs"
        assert fresh.bad_chunks() == [], f"reads still meet bad chunks: {fresh.bad_chunks()}"
