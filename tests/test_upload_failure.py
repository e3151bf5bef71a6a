"""A dataserver killed in the middle of a put.

With another dataserver free, the chunks move there and the put succeeds;
without one, the put fails and leaves nothing behind.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import store
from store.cluster import LocalCluster, ManagedProcess

from .support import (
    CHUNK_SIZE_BYTES,
    ClusterFactory,
    chunk_files,
    make_data,
    temp_files,
    upload_chunk_files,
    wait_until,
)

CHUNK = CHUNK_SIZE_BYTES
UPLOAD_CHUNKS = 40
KILL_AFTER_CHUNKS = 12
GC_WAIT_S = 30.0
UPLOAD_GRACE_S = 2.0
META_ARGS = [
    "--gc-interval-s",
    "0.2",
    "--upload-grace-s",
    str(UPLOAD_GRACE_S),
    "--upload-settle-s",
    "1",
    "--dataserver-suspect-s",
    "1.5",
    "--dataserver-timeout-s",
    "2",
]


def orphan_files(process: ManagedProcess, live: set[str]) -> list[Path]:
    """Return the chunk files on a dataserver that belong to no committed object."""
    return [path for path in chunk_files(process) if path.name not in live]


def has_no_orphans(process: ManagedProcess, live: set[str]) -> bool:
    return not orphan_files(process, live)


def test_dataserver_killed_mid_put(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(meta_args=META_ARGS)
    victim = cluster.dataservers[0]
    survivors = cluster.dataservers[1:]

    with store.Client(cluster.meta_address) as client:
        # Every stripe needs all four dataservers, so none can stand in for the victim.
        client.create_bucket("upload", scheme=f"ec:{len(cluster.dataservers) - 1}+1")
        committed = make_data(4 * CHUNK, seed=31)
        committed_info = client.put("upload", "committed", committed)
        live = {
            path.name
            for paths in upload_chunk_files(cluster, committed_info.version_id).values()
            for path in paths
        }

        def pieces() -> Iterator[bytes]:
            """Yield the new object one chunk at a time, and kill the victim part way through."""
            for index in range(UPLOAD_CHUNKS):
                if index == KILL_AFTER_CHUNKS:
                    # Let the victim store a chunk of this upload first, so it has orphans too.
                    wait_until(
                        lambda: orphan_files(victim, live),
                        10,
                        f"a chunk of the put on {victim.name}",
                    )
                    victim.kill()
                yield make_data(CHUNK, seed=1000 + index)

        with pytest.raises(store.StoreError) as caught:
            client.put("upload", "doomed", pieces())
        error = caught.value

        assert not victim.alive(), f"{victim.name} is still running"
        assert victim.server_id in str(error), f"the error does not name the dataserver: {error}"

        with pytest.raises(store.NoSuchKey):
            client.stat("upload", "doomed")
        listed = [entry.key for page in client.iter_pages("upload") for entry in page.entries]
        assert listed == ["committed"], f"listing after the failed put shows {listed}"

        for process in survivors:
            wait_until(
                functools.partial(has_no_orphans, process, live),
                GC_WAIT_S,
                f"orphan chunks on {process.name} to be deleted",
            )
            assert temp_files(process) == [], f"{process.name} kept unfinished chunk writes"

        victim_orphans = orphan_files(victim, live)
        assert victim_orphans, f"{victim.name} should hold chunks of the failed put while down"
        cluster.restart(victim)
        wait_until(
            functools.partial(has_no_orphans, victim, live),
            GC_WAIT_S,
            f"orphan chunks on {victim.name} to be deleted after its restart",
        )
        assert temp_files(victim) == [], f"{victim.name} kept unfinished chunk writes"

        remaining = sorted(
            path.name for process in cluster.dataservers for path in chunk_files(process)
        )
        assert remaining == sorted(live), "chunks of the committed object were deleted"
        assert client.get("upload", "committed") == committed, "the committed object changed"

        retry = make_data(3 * CHUNK, seed=32)
        client.put("upload", "doomed", retry)
        assert client.get("upload", "doomed") == retry, "a put after the restart failed"


# A client that streams part of a put, writes a marker file and then waits to be killed.
ABANDONING_CLIENT = """
import sys
import time
from pathlib import Path

import store

address, marker = sys.argv[1], Path(sys.argv[2])


def pieces():
    for index in range(40):
        if index == 10:
            marker.write_text("streaming")
            time.sleep(60)
        yield bytes([index]) * (1 << 20)


with store.Client(address) as client:
    client.put("upload", "abandoned", pieces())
"""


def has_chunks(cluster: LocalCluster) -> bool:
    return any(chunk_files(process) for process in cluster.dataservers)


def has_no_chunks(cluster: LocalCluster) -> bool:
    return not has_chunks(cluster)


def test_abandoned_upload_expires(cluster_factory: ClusterFactory, tmp_path: Path) -> None:
    """A client killed in the middle of a put leaves chunks that expire after the grace period."""
    cluster = cluster_factory(meta_args=META_ARGS)
    with store.Client(cluster.meta_address) as client:
        client.create_bucket("upload")
        marker = tmp_path / "streaming"
        started = time.monotonic()
        child = subprocess.Popen(
            [sys.executable, "-c", ABANDONING_CLIENT, cluster.meta_address, str(marker)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(marker.exists, 30, "the client to stream part of its put")
            wait_until(
                functools.partial(has_chunks, cluster), 10, "chunks of the put on the dataservers"
            )
        finally:
            child.kill()
            child.wait(timeout=10)

        wait_until(
            functools.partial(has_no_chunks, cluster),
            GC_WAIT_S,
            "chunks of the abandoned put to be deleted",
        )
        elapsed = time.monotonic() - started
        assert elapsed >= UPLOAD_GRACE_S, (
            f"chunks of the abandoned put were deleted after {elapsed:.1f}s, within the "
            f"{UPLOAD_GRACE_S}s upload grace period"
        )
        for process in cluster.dataservers:
            assert temp_files(process) == [], f"{process.name} kept unfinished chunk writes"
        with pytest.raises(store.NoSuchKey):
            client.stat("upload", "abandoned")


def test_chunks_move_off_a_dataserver_killed_mid_put(cluster_factory: ClusterFactory) -> None:
    """The put succeeds on the other dataservers, and what the victim kept is collected."""
    meta_args = ["--gc-interval-s", "0.2", "--gc-delay-s", "0"]
    cluster = cluster_factory(meta_args=meta_args)
    victim = cluster.dataservers[0]

    with store.Client(cluster.meta_address) as client:
        client.create_bucket("moving", scheme="ec:2+1")
        written: list[bytes] = []

        def pieces() -> Iterator[bytes]:
            for index in range(UPLOAD_CHUNKS):
                if index == KILL_AFTER_CHUNKS:
                    wait_until(lambda: chunk_files(victim), 10, f"a chunk on {victim.name}")
                    victim.kill()
                written.append(make_data(CHUNK, seed=2000 + index))
                yield written[-1]

        info = client.put("moving", "obj", pieces())
        data = b"".join(written)
        assert info.size_bytes == len(data), f"put stored {info.size_bytes} bytes"
        assert client.get("moving", "obj") == data, "the object read back differs"

        cluster.restart(victim)

        def one_file_per_chunk() -> bool:
            names = [
                path.name
                for paths in upload_chunk_files(cluster, info.version_id).values()
                for path in paths
            ]
            return len(names) == len(set(names)) == info.chunk_count

        # Whatever the victim kept of chunks that moved elsewhere is collected.
        wait_until(
            one_file_per_chunk,
            GC_WAIT_S,
            f"one file per chunk of the layout ({info.chunk_count})",
            state=lambda: {
                n: len(p) for n, p in upload_chunk_files(cluster, info.version_id).items()
            },
        )
        for process in cluster.dataservers:
            assert temp_files(process) == [], f"{process.name} kept unfinished chunk writes"
        assert client.get("moving", "obj") == data, "the object changed after the restart"
