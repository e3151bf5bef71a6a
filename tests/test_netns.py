"""Clusters whose servers run as separate hosts in network namespaces, with capped links.

These tests need root, `ip` and `tc`; elsewhere they skip and print the reason.
The client (this test process) stays in the root namespace, uncapped.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import store
from store._pb import common_pb2 as pb
from store.netns import NetnsCluster, netns_unavailable_reason

from .support import BASE_META_ARGS, CHUNK_SIZE_BYTES, MIB, chunk_files, make_data
from .test_degraded import holder

UNAVAILABLE_REASON = netns_unavailable_reason()
pytestmark = pytest.mark.skipif(bool(UNAVAILABLE_REASON), reason=UNAVAILABLE_REASON)

# Low enough that two CPUs serve 2 hosts at full rate, so the links are the bottleneck.
SCALING_RATE_MBIT = 50
SCALING_OBJECT_COUNT = 4
# Two chunks each: consecutive stripes of an object go to different dataservers, so 2 hosts
# hold one half each. Single-chunk objects land where their upload id hashes, often unevenly.
SCALING_OBJECT_CHUNKS = 2
SCALING_READERS = 4
DATASERVER_TIMEOUT_S = 3.0
STATE_WAIT_S = 15.0


def start_cluster(root: Path, dataservers: int, rate_mbit: int, **options: object) -> NetnsCluster:
    cluster = NetnsCluster(root, dataservers=dataservers, rate_mbit=rate_mbit, **options)
    try:
        cluster.start()
    except BaseException:
        cluster.close()
        raise
    return cluster


def test_put_get_through_namespaces(tmp_path: Path) -> None:
    with start_cluster(tmp_path, 3, rate_mbit=100, meta_args=BASE_META_ARGS) as cluster:
        assert cluster.meta_address.startswith("10.77."), f"meta at {cluster.meta_address}"
        data = make_data(5 * CHUNK_SIZE_BYTES + 17, seed=1)
        with store.Client(cluster.meta_address, timeout_s=30) as client:
            client.create_bucket("netns-ec", scheme="ec:2+1")
            written = client.put("netns-ec", "object", data)
            assert written.scheme == "ec:2+1", f"written with {written.scheme}"
            assert client.get("netns-ec", "object") == data, "the object read back differs"
        for process in cluster.dataservers:
            assert chunk_files(process), f"{process.name} got no chunks"
        namespaces = [h.namespace for h in cluster.network.hosts.values()]
    assert not cluster.network.namespaces, f"namespaces left after close: {namespaces}"


def read_throughput_bytes_s(root: Path, dataservers: int) -> float:
    """Put two-chunk objects with one copy each, then read them all from parallel clients."""
    with start_cluster(root, dataservers, SCALING_RATE_MBIT, meta_args=BASE_META_ARGS) as cluster:
        objects = {
            f"o{n}": make_data(SCALING_OBJECT_CHUNKS * CHUNK_SIZE_BYTES, seed=n)
            for n in range(SCALING_OBJECT_COUNT)
        }
        with store.Client(cluster.meta_address, timeout_s=60) as client:
            client.create_bucket("scaling", scheme="rep:1")
            for key, data in objects.items():
                client.put("scaling", key, data)
        spread = {p.name: len(chunk_files(p)) for p in cluster.dataservers}
        print(f"chunks per dataserver: {spread}")

        def read_all(reader: int) -> int:
            keys = list(objects)
            shift = reader * SCALING_OBJECT_COUNT // SCALING_READERS
            keys = keys[shift:] + keys[:shift]
            with store.Client(cluster.meta_address, timeout_s=60) as client:
                return sum(len(client.get("scaling", key)) for key in keys)

        start_s = time.monotonic()
        with ThreadPoolExecutor(SCALING_READERS) as pool:
            total_bytes = sum(pool.map(read_all, range(SCALING_READERS)))
        elapsed_s = time.monotonic() - start_s
    assert total_bytes == SCALING_READERS * sum(len(data) for data in objects.values())
    return total_bytes / elapsed_s


def test_read_scaling_two_hosts(tmp_path: Path) -> None:
    one_bytes_s = read_throughput_bytes_s(tmp_path / "one", 1)
    two_bytes_s = read_throughput_bytes_s(tmp_path / "two", 2)
    cap_bytes_s = SCALING_RATE_MBIT * 1e6 / 8
    print(
        f"read throughput at {SCALING_RATE_MBIT} Mbit/s per host: "
        f"1 host {one_bytes_s / MIB:.1f} MiB/s, 2 hosts {two_bytes_s / MIB:.1f} MiB/s, "
        f"ratio {two_bytes_s / one_bytes_s:.2f}"
    )
    assert one_bytes_s <= 1.1 * cap_bytes_s, "one host read faster than its cap; tc is not working"
    assert two_bytes_s >= 1.3 * one_bytes_s, "2 dataserver hosts are not 1.3x faster than 1"


def wait_state(client: store.Client, server_id: str, state: int, timeout_s: float) -> float:
    """Wait until the map shows dataserver `server_id` in `state`; return the seconds it took."""
    start_s = time.monotonic()
    while time.monotonic() - start_s < timeout_s:
        states = {d.id: d.state for d in client.cluster_map().dataservers}
        if states.get(server_id) == state:
            return time.monotonic() - start_s
        time.sleep(0.1)
    name = pb.DataserverState.Name(state)  # type: ignore[arg-type]
    raise AssertionError(f"{server_id} is not {name} after {timeout_s}s: {states}")


def test_cut_dataserver_mid_read(tmp_path: Path) -> None:
    meta_args = [
        *BASE_META_ARGS,
        "--dataserver-suspect-s",
        str(DATASERVER_TIMEOUT_S / 2),
        "--dataserver-timeout-s",
        str(DATASERVER_TIMEOUT_S),
    ]
    data_args = ["--heartbeat-interval-s", "0.2"]
    options = {"meta_args": meta_args, "data_args": data_args}
    with start_cluster(tmp_path, 3, rate_mbit=100, **options) as cluster:
        data = make_data(8 * CHUNK_SIZE_BYTES, seed=3)
        # A short chunk timeout lets the read give up on the cut host and decode from parity.
        with store.Client(cluster.meta_address, timeout_s=30, chunk_timeout_s=1.0) as client:
            client.create_bucket("netns-cut", scheme="ec:2+1")
            version = client.put("netns-cut", "object", data).version_id
            # The host with data chunk 0 of the last stripe, so the rest of the read needs it.
            victim, _ = holder(cluster, version, 3, 0)

            with client.open("netns-cut", "object") as reader:
                head = reader.read(CHUNK_SIZE_BYTES)
                cluster.cut(victim)
                start_s = time.monotonic()
                rest = reader.read()
                degraded_s = time.monotonic() - start_s
            print(f"rest of the read with {victim.name} cut off took {degraded_s:.2f}s")
            assert head + rest == data, "the read across the cut returned other bytes"
            assert victim.alive(), "the cut dataserver process exited"
            down_s = wait_state(client, victim.server_id, pb.DATASERVER_STATE_DOWN, STATE_WAIT_S)
            print(f"{victim.name} down {down_s:.2f}s after the cut")
            assert client.get("netns-cut", "object") == data, "the degraded get differs"

            cluster.heal(victim)
            up_s = wait_state(client, victim.server_id, pb.DATASERVER_STATE_UP, STATE_WAIT_S)
            print(f"{victim.name} up {up_s:.2f}s after the heal")
            assert client.get("netns-cut", "object") == data, "the get after healing differs"


def stat_when_reachable(client: store.Client, key: str, timeout_s: float) -> store.ObjectInfo:
    """Stat `key` in bucket netns-cut, retrying while the metaserver is unreachable."""
    deadline_s = time.monotonic() + STATE_WAIT_S
    while True:
        try:
            return client.stat("netns-cut", key, timeout_s=timeout_s)
        except store.Unavailable:
            if time.monotonic() > deadline_s:
                raise
            time.sleep(0.2)


def test_metaserver_cut_gives_unavailable_then_recovers(tmp_path: Path) -> None:
    """A client cut off from the metaserver gets Unavailable within its timeout, then recovers."""
    timeout_s = 3.0
    with (
        start_cluster(tmp_path, 3, rate_mbit=100, meta_args=BASE_META_ARGS) as cluster,
        store.Client(cluster.meta_address, timeout_s=30) as client,
    ):
        client.create_bucket("netns-cut", scheme="ec:2+1")
        data = make_data(2 * CHUNK_SIZE_BYTES, seed=3)
        client.put("netns-cut", "object", data)

        metaserver = cluster.metaservers[0]
        cluster.cut(metaserver)
        started_s = time.monotonic()
        with pytest.raises(store.Unavailable) as caught:
            client.stat("netns-cut", "object", timeout_s=timeout_s)
        elapsed_s = time.monotonic() - started_s
        assert elapsed_s < timeout_s + 2.0, f"the stat took {elapsed_s:.1f}s, over its timeout"
        assert cluster.meta_address in str(caught.value), (
            f"the error does not name the metaserver: {caught.value}"
        )

        cluster.heal(metaserver)
        info = stat_when_reachable(client, "object", timeout_s)
        assert info.size_bytes == len(data), "the stat after healing reports another size"
        assert client.get("netns-cut", "object") == data, "the read after healing differs"
