"""Adding, draining and removing dataservers on a running cluster, under load."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

import store
from store.cluster import LocalCluster, ManagedProcess

from .support import (
    CHUNK_SIZE_BYTES,
    ClusterFactory,
    chunk_files,
    make_data,
    wait_until,
)
from .test_repair import FAST_FAILURES, FAST_HEARTBEAT

CHUNK = CHUNK_SIZE_BYTES
MOVE_WAIT_S = 90.0


def storectl(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "store.cli", *args, "--meta", cluster.meta_address],
        capture_output=True,
        text=True,
        timeout=60,
    )


def chunk_counts(cluster: LocalCluster, versions: list[str]) -> dict[str, int]:
    """Count each dataserver's chunk files of the given object versions."""
    prefixes = tuple(versions)
    return {
        process.name: sum(1 for path in chunk_files(process) if path.name.startswith(prefixes))
        for process in cluster.dataservers
    }


def layouts_total(client: store.Client, bucket: str, keys: list[str]) -> int:
    return sum(client.stat(bucket, key).chunk_count for key in keys)


def wait_drained(
    cluster: LocalCluster, victim: ManagedProcess, versions: list[str], expected: int
) -> None:
    """Wait until `victim` has none of the versions' chunks and `expected` chunk files remain."""

    def drained_and_collected() -> bool:
        counts = chunk_counts(cluster, versions)
        return counts[victim.name] == 0 and sum(counts.values()) == expected

    wait_until(
        drained_and_collected,
        MOVE_WAIT_S,
        f"{victim.name} to hold none of {expected} chunks",
        state=lambda: chunk_counts(cluster, versions),
    )


def test_drain_then_remove(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(dataservers=5, meta_args=FAST_FAILURES, data_args=FAST_HEARTBEAT)
    with store.Client(cluster.meta_address, timeout_s=30) as client:
        with pytest.raises(store.InvalidArgument, match="the cluster has 5"):
            client.create_bucket("too-wide", scheme="ec:4+2")
        client.create_bucket("drain", scheme="ec:2+1")
        objects = {f"obj-{i}": make_data(2 * CHUNK + 10 * i, seed=600 + i) for i in range(8)}
        for key, data in objects.items():
            client.put("drain", key, data)
        versions = [client.stat("drain", key).version_id for key in objects]
        victim = max(cluster.dataservers, key=lambda p: chunk_counts(cluster, versions)[p.name])
        assert chunk_counts(cluster, versions)[victim.name] > 0, "the victim holds no chunks"

        refused = storectl(cluster, "node", "remove", victim.server_id)
        assert refused.returncode != 0, "removing a dataserver that holds chunks succeeded"
        assert "drain it first" in refused.stderr.lower(), f"unclear refusal: {refused.stderr}"

        drained = storectl(cluster, "node", "drain", victim.server_id)
        assert drained.returncode == 0, f"node drain failed: {drained.stderr}"
        wait_drained(cluster, victim, versions, layouts_total(client, "drain", list(objects)))
        for key, data in objects.items():
            assert client.get("drain", key) == data, f"{key} differs after the drain"

        up = storectl(cluster, "node", "remove", victim.server_id)
        assert up.returncode != 0, f"a running dataserver was removed: {up.stdout}"
        assert "stop its process" in up.stderr, f"unclear refusal: {up.stderr}"
        victim.stop()
        wait_until(
            lambda: storectl(cluster, "node", "remove", victim.server_id).returncode == 0,
            30,
            f"{victim.name} to be removable once stopped",
        )
        listed = storectl(cluster, "node", "ls", "--json")
        assert victim.server_id not in listed.stdout, "the removed dataserver is still listed"
        for key, data in objects.items():
            assert client.get("drain", key) == data, f"{key} differs after the removal"


def run_load(
    address: str,
    bucket: str,
    stop: threading.Event,
    errors: list[str],
    acknowledged: dict[str, bytes] | None = None,
) -> None:
    """Write small objects and read them back until `stop` is set (at most 300 rounds).

    Each round puts one object, reads it back and reads an earlier one again.
    Acknowledged puts go into `acknowledged`, and failed calls and reads of
    other bytes into `errors`.
    """
    written: dict[str, bytes] = {} if acknowledged is None else acknowledged
    with store.Client(address, timeout_s=30) as client:
        for index in range(300):
            if stop.is_set():
                return
            data = make_data(CHUNK + 7 * index, seed=9000 + index)
            key = f"load-{index}"
            earlier = f"load-{index // 2}"
            try:
                client.put(bucket, key, data)
                written[key] = data
                if client.get(bucket, key) != data:
                    errors.append(f"{key} read back other bytes")
                if earlier in written and client.get(bucket, earlier) != written[earlier]:
                    errors.append(f"{earlier} read again returned other bytes")
            except store.StoreError as error:
                errors.append(f"{key}: {error}")
            time.sleep(0.05)


def test_add_two_and_drain_one_under_load(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(dataservers=4, meta_args=FAST_FAILURES, data_args=FAST_HEARTBEAT)
    with store.Client(cluster.meta_address, timeout_s=30) as client:
        client.create_bucket("busy", scheme="ec:2+1")
        objects = {f"obj-{i}": make_data(2 * CHUNK + 100 * i, seed=700 + i) for i in range(20)}
        for key, data in objects.items():
            client.put("busy", key, data)

        stop = threading.Event()
        errors: list[str] = []
        load = threading.Thread(target=run_load, args=(cluster.meta_address, "busy", stop, errors))
        load.start()
        try:
            added = [cluster.add_dataserver(FAST_HEARTBEAT) for _ in range(2)]
            leaving: ManagedProcess = cluster.dataservers[0]
            client.drain_dataserver(leaving.server_id)
            staying = [p for p in cluster.dataservers if p is not leaving]

            def even() -> bool:
                keys = sorted(objects) + [f"load-{i}" for i in range(300)]
                versions = []
                for key in keys:
                    try:
                        versions.append(client.stat("busy", key).version_id)
                    except store.NoSuchKey:
                        continue
                counts = chunk_counts(cluster, versions)
                if counts[leaving.name] != 0:
                    return False
                values = [counts[p.name] for p in staying]
                mean = sum(values) / len(values)
                return all(abs(value - mean) <= 0.1 * mean for value in values)

            # The load keeps writing and reading while chunks move.
            wait_until(
                even,
                MOVE_WAIT_S,
                "chunk counts within 10% of even with none on the drained dataserver",
                state=lambda: chunk_counts(
                    cluster, [client.stat("busy", k).version_id for k in objects]
                ),
            )
        finally:
            stop.set()
            load.join(timeout=120)
        assert not errors, f"the load failed during the changes: {errors[:5]}"
        assert all(chunk_files(process) for process in added), "an added dataserver got nothing"
        for key, data in objects.items():
            assert client.get("busy", key) == data, f"{key} differs after the moves"
