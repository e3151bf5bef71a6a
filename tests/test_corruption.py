"""Corrupt chunk files: reads raise ChecksumMismatch and never return wrong bytes."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import store
from store.cluster import LocalCluster
from store.limits import CHECKSUM_BLOCK_BYTES

from .support import (
    CHUNK_PREFIX,
    CHUNK_SIZE_BYTES,
    ClusterFactory,
    chunk_data_offset,
    chunk_header_range,
    flip_byte,
    make_data,
    upload_chunk_files,
)

CHUNK = CHUNK_SIZE_BYTES
BLOCK = CHECKSUM_BLOCK_BYTES
SIZE = 3 * CHUNK + 5000
# The corrupted byte: in checksum block 3 of stripe 1.
BAD_STRIPE = 1
BAD_BLOCK = 3
BAD_OFFSET_IN_CHUNK = BAD_BLOCK * BLOCK + 100
BAD_OBJECT_OFFSET = BAD_STRIPE * CHUNK + BAD_OFFSET_IN_CHUNK


def stripe_chunk_file(cluster: LocalCluster, version_id: str, stripe_index: int) -> Path:
    """Return the chunk file of one stripe of an object written with one copy per stripe."""
    # A chunk id is the upload id, then the stripe index (u32) and the position (u16).
    name = version_id + struct.pack(">IH", stripe_index, 0).hex()
    found = [
        path
        for paths in upload_chunk_files(cluster, version_id).values()
        for path in paths
        if path.name == name
    ]
    assert len(found) == 1, f"expected one chunk file named {name}, found {found}"
    return found[0]


def put_object(cluster: LocalCluster, client: store.Client) -> tuple[bytes, str]:
    client.create_bucket("corrupt", scheme="rep:1")
    data = make_data(SIZE, seed=21)
    info = client.put("corrupt", "obj", data)
    assert info.stripe_count == 4, f"expected 4 stripes, got {info.stripe_count}"
    return data, info.version_id


def test_flipped_data_byte(cluster_factory: ClusterFactory, tmp_path: Path) -> None:
    cluster = cluster_factory()
    with store.Client(cluster.meta_address) as client:
        data, version_id = put_object(cluster, client)
        path = stripe_chunk_file(cluster, version_id, BAD_STRIPE)
        flip_byte(path, chunk_data_offset(path) + BAD_OFFSET_IN_CHUNK)

        with pytest.raises(store.ChecksumMismatch) as whole:
            client.get("corrupt", "obj")
        assert version_id in str(whole.value), f"the error does not name the chunk: {whole.value}"

        covering = [
            (BAD_OBJECT_OFFSET, 1),  # the flipped byte alone
            (BAD_OBJECT_OFFSET - 50, 100),  # a few bytes around it
            (BAD_STRIPE * CHUNK + (BAD_BLOCK - 1) * BLOCK, 2 * BLOCK),  # from the block before
            (BAD_STRIPE * CHUNK - 10, CHUNK),  # from the stripe before
        ]
        for offset, length in covering:
            with pytest.raises(store.ChecksumMismatch):
                client.get("corrupt", "obj", offset=offset, length=length)

        clean = [
            (BAD_STRIPE * CHUNK, BAD_BLOCK * BLOCK),  # the blocks before, in the same chunk
            (BAD_STRIPE * CHUNK + (BAD_BLOCK + 1) * BLOCK, 2 * BLOCK),  # blocks after it
            (BAD_STRIPE * CHUNK + BAD_BLOCK * BLOCK - 1, 1),  # the last byte before the block
            (0, CHUNK),  # stripe 0
            (2 * CHUNK, SIZE - 2 * CHUNK),  # stripes 2 and 3
        ]
        for offset, length in clean:
            part = client.get("corrupt", "obj", offset=offset, length=length)
            assert part == data[offset : offset + length], (
                f"range offset={offset} length={length} outside the corrupt block returned "
                "other bytes"
            )

        received = bytearray()
        with pytest.raises(store.ChecksumMismatch):
            for piece in client.get_stream("corrupt", "obj"):
                received += piece
        assert len(received) <= BAD_STRIPE * CHUNK, (
            f"get_stream returned {len(received)} bytes, past the start of the corrupt stripe"
        )
        assert received == data[: len(received)], "get_stream returned wrong bytes before failing"

        buffer = bytearray(SIZE)
        with pytest.raises(store.ChecksumMismatch):
            client.get_into("corrupt", "obj", buffer)
        with pytest.raises(store.ChecksumMismatch):
            client.get_into("corrupt", "obj", bytearray(100), offset=BAD_OBJECT_OFFSET - 50)

        with client.open("corrupt", "obj") as file:
            file.seek(BAD_OBJECT_OFFSET - 10)
            with pytest.raises(store.ChecksumMismatch):
                file.read(20)

        downloads = tmp_path / "downloads"
        downloads.mkdir()
        target = downloads / "obj"
        with pytest.raises(store.ChecksumMismatch):
            client.get_file("corrupt", "obj", target)
        assert not target.exists(), "get_file left a file after a checksum mismatch"
        leftovers = list(downloads.iterdir())
        assert leftovers == [], f"get_file left partial files: {leftovers}"


HEADER_DAMAGE = {
    "magic": lambda path: 0,
    "header-length": lambda path: CHUNK_PREFIX.size - 8,
    "header-body": lambda path: sum(chunk_header_range(path)) // 2,
}


@pytest.mark.parametrize("where", HEADER_DAMAGE.keys())
def test_corrupt_header(cluster_factory: ClusterFactory, where: str) -> None:
    cluster = cluster_factory()
    with store.Client(cluster.meta_address) as client:
        data, version_id = put_object(cluster, client)
        path = stripe_chunk_file(cluster, version_id, 2)
        flip_byte(path, HEADER_DAMAGE[where](path))

        with pytest.raises(store.ChecksumMismatch):
            client.get("corrupt", "obj")
        with pytest.raises(store.ChecksumMismatch):
            client.get("corrupt", "obj", offset=2 * CHUNK + 10, length=10)

        part = client.get("corrupt", "obj", offset=0, length=2 * CHUNK)
        assert part == data[: 2 * CHUNK], "stripes with intact chunk files returned other bytes"
