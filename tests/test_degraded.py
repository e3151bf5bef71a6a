"""Erasure-coded objects on real dataservers: degraded reads, failed writes, placement.

Dataservers are killed with SIGKILL and chunk files are corrupted or deleted
on disk. Every read must return the written bytes, or fail with an error that
names the missing chunks.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

import store
from store.cluster import LocalCluster, ManagedProcess

from .support import (
    CHUNK_SIZE_BYTES,
    ClusterFactory,
    chunk_data_offset,
    flip_byte,
    make_data,
    upload_chunk_files,
)

CHUNK = CHUNK_SIZE_BYTES
# Sizes around the stripe boundaries of 4+2 and 2+1 with 1 MiB chunks.
SIZES = [70_000, 3 * CHUNK + 5, 4 * CHUNK, 9 * CHUNK + 1]


def chunk_name(version_id: str, stripe: int, position: int) -> str:
    """Return the file name of a chunk: the upload id, stripe index (u32), position (u16)."""
    return version_id + struct.pack(">IH", stripe, position).hex()


def holder(
    cluster: LocalCluster, version_id: str, stripe: int, position: int
) -> tuple[ManagedProcess, Path]:
    """Return the dataserver holding one chunk of an object, and the chunk's file."""
    name = chunk_name(version_id, stripe, position)
    for process in cluster.dataservers:
        for path in upload_chunk_files(cluster, version_id)[process.name]:
            if path.name == name:
                return process, path
    raise AssertionError(f"no dataserver holds chunk {name}")


def check_reads(client: store.Client, bucket: str, key: str, data: bytes) -> None:
    """Read the object whole, in ranges, streamed and into a buffer; all must match."""
    assert client.get(bucket, key) == data, f"get of {key} returned other bytes"
    rng = random.Random(len(data))
    for _ in range(6):
        offset = rng.randrange(len(data))
        length = rng.randrange(1, min(len(data) - offset, 3 * CHUNK) + 1)
        got = client.get(bucket, key, offset=offset, length=length)
        assert got == data[offset : offset + length], f"range {offset}+{length} of {key} differs"
    assert b"".join(client.get_stream(bucket, key)) == data, f"get_stream of {key} differs"
    buffer = bytearray(len(data))
    client.get_into(bucket, key, buffer)
    assert buffer == data, f"get_into of {key} differs"


def test_reads_and_writes_survive_m_lost_dataservers(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(dataservers=8)
    with store.Client(cluster.meta_address, timeout_s=30) as client:
        info = client.create_bucket("ecb", scheme="ec:4+2")
        assert info.scheme == "ec:4+2", f"the bucket got scheme {info.scheme}"
        objects = {f"obj-{size}": make_data(size, seed=size) for size in SIZES}
        for key, data in objects.items():
            written = client.put("ecb", key, data)
            if len(data) > 65536:
                assert written.scheme == "ec:4+2", f"{key} was written with {written.scheme}"
                stripes = written.stripe_count
                assert written.chunk_count == 6 * stripes, f"{key}: {written.chunk_count} chunks"

        # Kill the two dataservers holding data chunks 0 and 1 of the largest object's stripe 0,
        # so reads of every stripe near them must decode.
        version = client.stat("ecb", f"obj-{SIZES[-1]}").version_id
        victims = [holder(cluster, version, 0, position)[0] for position in (0, 1)]
        for victim in victims:
            victim.kill()

        for key, data in objects.items():
            check_reads(client, "ecb", key, data)
        lost = {server for _, server, _ in client.bad_chunks()}
        assert lost <= {victim.server_id for victim in victims}, f"unexpected bad chunks {lost}"

        # Six dataservers remain, enough for new 4+2 stripes.
        fresh = make_data(5 * CHUNK + 77, seed=99)
        client.put("ecb", "written-while-down", fresh)
        check_reads(client, "ecb", "written-while-down", fresh)


def test_more_than_m_lost_fails_clearly_then_recovers(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(dataservers=4)
    with store.Client(cluster.meta_address, timeout_s=20) as client:
        client.create_bucket("ecb", scheme="ec:2+1")
        data = make_data(2 * CHUNK - 3, seed=7)  # one stripe
        version = client.put("ecb", "obj", data).version_id
        victims = [holder(cluster, version, 0, position)[0] for position in (0, 2)]
        for victim in victims:
            victim.kill()

        with pytest.raises(store.Unavailable) as caught:
            client.get("ecb", "obj")
        message = str(caught.value)
        assert "stripe 0" in message, f"the error names no stripe: {message}"
        assert "needs 2" in message, f"the error does not say how many chunks: {message}"
        for victim in victims:
            assert victim.server_id in message, f"{victim.server_id} missing from: {message}"

        for victim in victims:
            cluster.restart(victim)
        check_reads(client, "ecb", "obj", data)


def test_flipped_byte_and_deleted_chunk_are_decoded_around(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = cluster_factory(dataservers=4)
    with store.Client(cluster.meta_address) as client:
        client.create_bucket("ecb", scheme="ec:2+1")
        data = make_data(6 * CHUNK, seed=8)
        version = client.put("ecb", "obj", data).version_id
        flipped_on, flipped = holder(cluster, version, 0, 0)
        flip_byte(flipped, chunk_data_offset(flipped) + 1000)
        deleted_on, deleted = holder(cluster, version, 1, 1)
        deleted.unlink()

        check_reads(client, "ecb", "obj", data)
        bad = {(chunk.hex(), server) for chunk, server, _ in client.bad_chunks()}
        assert (flipped.name, flipped_on.server_id) in bad, f"corrupt chunk not reported: {bad}"
        assert (deleted.name, deleted_on.server_id) in bad, f"missing chunk not reported: {bad}"


def test_stripes_spread_over_failure_domains(cluster_factory: ClusterFactory) -> None:
    # Three racks of two dataservers: a 2+1 stripe must use all three racks.
    racks = ["rack-a", "rack-a", "rack-b", "rack-b", "rack-c", "rack-c"]
    cluster = cluster_factory(dataservers=6, domains=racks)
    with store.Client(cluster.meta_address) as client:
        assert client.create_bucket("auto").scheme == "ec:2+1", "auto should pick 2+1 for 3 racks"
        data = make_data(20 * CHUNK, seed=9)
        version = client.put("auto", "obj", data).version_id
        rack_of = {p.name: rack for p, rack in zip(cluster.dataservers, racks, strict=True)}
        stripes = -(-len(data) // (2 * CHUNK))
        for stripe in range(stripes):
            used = [rack_of[holder(cluster, version, stripe, p)[0].name] for p in range(3)]
            assert sorted(used) == ["rack-a", "rack-b", "rack-c"], f"stripe {stripe}: {used}"
        counts = {name: len(paths) for name, paths in upload_chunk_files(cluster, version).items()}
        assert max(counts.values()) - min(counts.values()) <= 2, f"uneven spread: {counts}"
