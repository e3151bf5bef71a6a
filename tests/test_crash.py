"""No acknowledged write is lost when a server is killed with SIGKILL and restarted."""

from __future__ import annotations

import threading
import time

import pytest

import store
from store.limits import DEFAULT_INLINE_MAX_BYTES

from .support import CHUNK_SIZE_BYTES, ClusterFactory, chunk_files, make_data, wait_until

CHUNK = CHUNK_SIZE_BYTES
# Inline, chunked with a short last stripe, and exactly whole chunks.
OBJECT_SIZES = [0, 100, DEFAULT_INLINE_MAX_BYTES + 1, CHUNK, 3 * CHUNK + 17, 5 * CHUNK]
MAX_WRITES = 10_000
WRITER_SECONDS = 60.0


def write_objects(client: store.Client, bucket: str, prefix: str, seed: int) -> dict[str, bytes]:
    """Put one object of each size in OBJECT_SIZES and return their contents by key."""
    objects = {}
    for index, size in enumerate(OBJECT_SIZES):
        key = f"{prefix}/{index}"
        data = make_data(size, seed=seed + index)
        client.put(bucket, key, data)
        objects[key] = data
    return objects


def check_objects(client: store.Client, bucket: str, objects: dict[str, bytes], when: str) -> None:
    for key, data in objects.items():
        got = client.get(bucket, key)
        assert len(got) == len(data), f"{key} has {len(got)} bytes {when}, wrote {len(data)}"
        assert got == data, f"{key} ({len(data)} bytes) has other bytes {when}"


def listed_keys(client: store.Client, bucket: str) -> set[str]:
    return {entry.key for page in client.iter_pages(bucket) for entry in page.entries}


def test_dataserver_kill_restart(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory()
    victim = cluster.dataservers[1]
    with store.Client(cluster.meta_address) as client:
        client.create_bucket("crash")
        before = write_objects(client, "crash", "before", seed=100)
        assert chunk_files(victim), f"{victim.name} got no chunks, so killing it tests nothing"

        victim.kill()
        assert not victim.alive(), f"{victim.name} pid={victim.pid} survived SIGKILL"
        cluster.restart(victim)

        check_objects(client, "crash", before, f"after SIGKILL and restart of {victim.name}")
        after = write_objects(client, "crash", "after", seed=200)
        check_objects(client, "crash", after, "when written after the restart")
        assert listed_keys(client, "crash") == set(before) | set(after), "listing after restart"


def test_metaserver_kill_restart(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory()
    metaserver = cluster.metaservers[0]
    with store.Client(cluster.meta_address) as client:
        client.create_bucket("crash")
        before = write_objects(client, "crash", "before", seed=300)

        # A writer keeps putting objects while the metaserver is killed.
        acknowledged: dict[str, bytes] = {}
        stop = threading.Event()

        def write_until_failure() -> None:
            deadline = time.monotonic() + WRITER_SECONDS
            for index in range(MAX_WRITES):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                size = 2 * CHUNK + index if index % 5 == 0 else 1000 + index
                key = f"during/{index}"
                data = make_data(size, seed=10_000 + index)
                try:
                    client.put(bucket="crash", key=key, data=data)
                except store.StoreError:
                    return
                acknowledged[key] = data

        writer = threading.Thread(target=write_until_failure, name="writer", daemon=True)
        writer.start()
        wait_until(lambda: len(acknowledged) >= 20, 30, "20 acknowledged writes")
        metaserver.kill()
        stop.set()
        writer.join(timeout=WRITER_SECONDS)
        assert not writer.is_alive(), "the writer did not stop after the metaserver died"
        assert not metaserver.alive(), f"metaserver pid={metaserver.pid} survived SIGKILL"

        cluster.restart(metaserver)

        check_objects(client, "crash", before, "after SIGKILL and restart of the metaserver")
        check_objects(client, "crash", acknowledged, "after SIGKILL and restart of the metaserver")
        listed = listed_keys(client, "crash")
        missing = sorted((set(before) | set(acknowledged)) - listed)
        assert not missing, f"acknowledged keys missing from the listing: {missing[:10]}"

        after = write_objects(client, "crash", "after", seed=400)
        check_objects(client, "crash", after, "when written after the restart")


def test_write_after_metaserver_restart(cluster_factory: ClusterFactory) -> None:
    """The first write after a metaserver restart succeeds, though writes failed while it was down.

    The failed writes leave the client's channel in a reconnect backoff, which the
    write after the restart must not wait out or fail on.
    """
    cluster = cluster_factory(dataservers=1)
    metaserver = cluster.metaservers[0]
    with store.Client(cluster.meta_address) as client:
        client.create_bucket("restart")
        metaserver.kill()
        # Each failed write makes the channel's reconnect backoff longer, up to 2 s.
        down_until = time.monotonic() + 3.0
        while time.monotonic() < down_until:
            with pytest.raises(store.Unavailable):
                client.put("restart", "while-down", b"lost", timeout_s=5.0)
            time.sleep(0.2)

        cluster.restart(metaserver)
        data = make_data(CHUNK + 1, seed=500)
        started = time.monotonic()
        client.put("restart", "after", data, timeout_s=10.0)
        assert client.get("restart", "after") == data, "the write after the restart lost bytes"
        with pytest.raises(store.NotFound):
            client.stat("restart", "while-down")
        print(f"first write after the restart took {time.monotonic() - started:.2f}s")


RESTART_TRIALS = 3
DOWN_SECONDS = 2.5


def test_read_after_dataserver_restart(cluster_factory: ClusterFactory) -> None:
    """A client that saw a dataserver down reads from it as soon as it is back up.

    Each trial reads while the dataserver is down, which fails, then restarts
    it and reads at once with the same client.
    """
    cluster = cluster_factory(dataservers=2)
    victim = cluster.dataservers[0]
    with store.Client(cluster.meta_address) as client:
        client.create_bucket("restart", scheme="rep:1")
        data = make_data(4 * CHUNK, seed=500)
        client.put("restart", "obj", data)
        assert chunk_files(victim), f"{victim.name} got no chunks, so killing it tests nothing"

        for trial in range(RESTART_TRIALS):
            victim.kill()
            deadline = time.monotonic() + DOWN_SECONDS
            while time.monotonic() < deadline:
                with pytest.raises(store.Unavailable) as caught:
                    client.get("restart", "obj")
                assert victim.server_id in str(caught.value), (
                    f"the read error does not name the stopped dataserver: {caught.value}"
                )
                time.sleep(0.1)

            cluster.restart(victim)
            got = client.get("restart", "obj")
            assert got == data, f"trial {trial}: the read after the restart returned other bytes"
