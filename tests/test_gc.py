"""Garbage collection deletes replaced and deleted chunks after the GC delay, and only those."""

from __future__ import annotations

import time

import store
from store.cluster import LocalCluster

from .support import CHUNK_SIZE_BYTES, ClusterFactory, count_upload_chunks, make_data, wait_until

CHUNK = CHUNK_SIZE_BYTES
GC_DELAY_S = 2.0
GC_INTERVAL_S = 0.2
GC_WAIT_S = 30.0
META_ARGS = ["--gc-delay-s", str(GC_DELAY_S), "--gc-interval-s", str(GC_INTERVAL_S)]


def wait_collected(
    cluster: LocalCluster, garbage: str, live: dict[str, int], description: str
) -> None:
    """Wait until no chunk of version `garbage` is left, checking live versions on every poll.

    `live` maps each live version id to its stripe count.
    """

    def collected() -> bool:
        for version_id, stripes in live.items():
            count = count_upload_chunks(cluster, version_id)
            assert count == stripes, (
                f"live version {version_id} has {count} of its {stripes} chunks while GC ran"
            )
        return count_upload_chunks(cluster, garbage) == 0

    wait_until(collected, GC_WAIT_S, description, interval_s=0.05)


def test_gc_overwrite_and_delete(cluster_factory: ClusterFactory) -> None:
    # Three dataservers and ec:2+1: every stripe has a chunk on each, so the counts stay even
    # and rebalancing never copies a chunk (a copy would add a file of the same upload).
    cluster = cluster_factory(dataservers=3, meta_args=META_ARGS)
    with store.Client(cluster.meta_address) as client:
        client.create_bucket("gc-test")
        untouched_data = make_data(3 * CHUNK, seed=41)
        untouched = client.put("gc-test", "untouched", untouched_data)
        first = client.put("gc-test", "obj", make_data(3 * CHUNK + 1, seed=42))
        second_data = make_data(2 * CHUNK + 5, seed=43)
        # Taken before the call, so the commit and its GC deadline come later than this.
        replaced_at = time.monotonic()
        second = client.put("gc-test", "obj", second_data)

        old_chunks = count_upload_chunks(cluster, first.version_id)
        if time.monotonic() - replaced_at < GC_DELAY_S:
            assert old_chunks == first.chunk_count, (
                f"the replaced version lost chunks within the {GC_DELAY_S}s GC delay"
            )

        live = {
            untouched.version_id: untouched.chunk_count,
            second.version_id: second.chunk_count,
        }
        wait_collected(cluster, first.version_id, live, "the replaced version's chunks to go")
        assert time.monotonic() - replaced_at >= GC_DELAY_S, (
            f"the replaced version's chunks were deleted before the {GC_DELAY_S}s GC delay"
        )
        assert client.get("gc-test", "obj") == second_data, "the overwrite lost its data"

        deleted_at = time.monotonic()
        assert client.delete("gc-test", "obj"), "delete of an existing object returned False"
        deleted_chunks = count_upload_chunks(cluster, second.version_id)
        if time.monotonic() - deleted_at < GC_DELAY_S:
            assert deleted_chunks == second.chunk_count, (
                f"the deleted version lost chunks within the {GC_DELAY_S}s GC delay"
            )

        live = {untouched.version_id: untouched.chunk_count}
        wait_collected(cluster, second.version_id, live, "the deleted version's chunks to go")
        assert time.monotonic() - deleted_at >= GC_DELAY_S, (
            f"the deleted version's chunks were deleted before the {GC_DELAY_S}s GC delay"
        )

        # A few more passes must leave the live object alone.
        time.sleep(5 * GC_INTERVAL_S)
        assert count_upload_chunks(cluster, untouched.version_id) == untouched.chunk_count, (
            "the live object lost chunks after the garbage was collected"
        )
        assert client.get("gc-test", "untouched") == untouched_data, "the live object changed"
