"""Bad input gets a clear error naming the value, and changes nothing."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest

import store
from store.cluster import LocalCluster, ManagedProcess
from store.limits import MAX_KEY_BYTES, MAX_USER_METADATA_BYTES

from .support import (
    CHUNK_SIZE_BYTES,
    MIB,
    ClusterFactory,
    chunk_files,
    make_data,
    mounted_tmpfs,
    new_bucket_name,
    temp_files,
    upload_chunk_files,
    wait_until,
)

CHUNK = CHUNK_SIZE_BYTES

INVALID_BUCKET_NAMES = {
    "empty": "",
    "too-short": "ab",
    "too-long": "a" * 64,
    "uppercase": "Bucket-name",
    "underscore": "bad_name",
    "space": "has space",
    "starts-with-hyphen": "-bucket",
    "ends-with-hyphen": "bucket-",
    "ends-with-dot": "bucket.",
    "adjacent-dots": "a..b",
    "dot-hyphen": "a.-b",
    "hyphen-dot": "a-.b",
    "ip-address": "192.168.5.4",
    "prefix-xn": "xn--bucket",
    "prefix-sthree": "sthree-bucket",
    "suffix-s3alias": "bucket-s3alias",
    "suffix-ol-s3": "bucket--ol-s3",
    "non-ascii": "bücket",
}

VALID_BUCKET_NAMES = ["abc", "a" * 63, "a.b-c", "1bucket", "x-1.y-2"]


def bucket_names(client: store.Client) -> set[str]:
    return {info.name for info in client.list_buckets()}


@pytest.mark.parametrize("name", INVALID_BUCKET_NAMES.values(), ids=INVALID_BUCKET_NAMES.keys())
def test_bucket_name_invalid(client: store.Client, name: str) -> None:
    before = bucket_names(client)

    with pytest.raises(store.InvalidArgument) as created:
        client.create_bucket(name)
    message = str(created.value)
    assert repr(name) in message, f"the error does not name the bucket {name!r}: {message}"

    with pytest.raises(store.InvalidArgument):
        client.put(name, "key", b"data")
    with pytest.raises(store.InvalidArgument):
        client.head_bucket(name)
    assert bucket_names(client) == before, "a rejected bucket name changed the bucket list"


def test_bucket_name_valid(client: store.Client) -> None:
    for name in VALID_BUCKET_NAMES:
        if name not in bucket_names(client):
            client.create_bucket(name)
        assert client.head_bucket(name).name == name, f"valid bucket {name!r} is missing"


def test_key_too_long(client: store.Client, bucket: str) -> None:
    longest = "k" * MAX_KEY_BYTES
    client.put(bucket, longest, b"fits")
    assert client.get(bucket, longest) == b"fits", "a key of exactly the maximum length failed"

    for key in ["k" * (MAX_KEY_BYTES + 1), "é" * (MAX_KEY_BYTES // 2 + 1)]:
        size = len(key.encode())
        with pytest.raises(store.InvalidArgument) as caught:
            client.put(bucket, key, b"data")
        message = str(caught.value)
        assert str(size) in message, f"the error does not give the key length {size}: {message}"
        assert str(MAX_KEY_BYTES) in message, f"the error does not give the limit: {message}"
        with pytest.raises(store.InvalidArgument):
            client.put(bucket, key, make_data(2 * CHUNK, seed=1))

    listed = [entry.key for entry in client.list(bucket).entries]
    assert listed == [longest], f"rejected keys changed the listing: {len(listed)} keys"


def test_key_empty(client: store.Client, bucket: str) -> None:
    operations = {
        "put": lambda: client.put(bucket, "", b"data"),
        "put bytes key": lambda: client.put(bucket, b"", b"data"),
        "get": lambda: client.get(bucket, ""),
        "stat": lambda: client.stat(bucket, ""),
        "delete": lambda: client.delete(bucket, ""),
    }
    for name, operation in operations.items():
        with pytest.raises(store.InvalidArgument) as caught:
            operation()
        assert "empty" in str(caught.value), f"{name} with an empty key: {caught.value}"

    assert client.list(bucket).entries == [], "a rejected empty key changed the listing"


def test_unknown_bucket(client: store.Client) -> None:
    missing = new_bucket_name("missing")
    operations = {
        "put inline": lambda: client.put(missing, "key", b"data"),
        "put chunked": lambda: client.put(missing, "key", make_data(2 * CHUNK, seed=2)),
        "get": lambda: client.get(missing, "key"),
        "stat": lambda: client.stat(missing, "key"),
        "list": lambda: client.list(missing),
        "head_bucket": lambda: client.head_bucket(missing),
        "delete_bucket": lambda: client.delete_bucket(missing),
    }
    for name, operation in operations.items():
        with pytest.raises(store.NoSuchBucket) as caught:
            operation()
        assert missing in str(caught.value), f"{name} error does not name {missing}: {caught.value}"

    assert missing not in bucket_names(client), "a put to an unknown bucket created it"


def test_metadata_too_large(client: store.Client, bucket: str) -> None:
    at_limit = {"name": "v" * (MAX_USER_METADATA_BYTES - len("name"))}
    original = make_data(2 * CHUNK, seed=3)
    client.put(bucket, "obj", original, metadata=at_limit)

    over = {"name": "v" * (MAX_USER_METADATA_BYTES - len("name") + 1)}
    total = MAX_USER_METADATA_BYTES + 1
    for data in [b"small", make_data(2 * CHUNK, seed=4)]:
        with pytest.raises(store.InvalidArgument) as caught:
            client.put(bucket, "obj", data, metadata=over)
        message = str(caught.value)
        assert str(total) in message, f"the error does not give the size {total}: {message}"
        assert str(MAX_USER_METADATA_BYTES) in message, f"no limit in the error: {message}"

    info = client.stat(bucket, "obj")
    assert info.metadata == at_limit, "a rejected put changed the metadata"
    assert client.get(bucket, "obj") == original, "a rejected put changed the data"


def test_delete_bucket_not_empty(client: store.Client) -> None:
    name = new_bucket_name("full")
    client.create_bucket(name)
    client.put(name, "obj", b"data")

    with pytest.raises(store.BucketNotEmpty) as caught:
        client.delete_bucket(name)
    assert name in str(caught.value), f"the error does not name the bucket: {caught.value}"
    assert client.head_bucket(name).name == name, "the bucket is gone after a rejected delete"
    assert client.get(name, "obj") == b"data", "the object changed after a rejected delete"

    client.delete(name, "obj")
    client.delete_bucket(name)
    with pytest.raises(store.NoSuchBucket):
        client.head_bucket(name)


def test_create_bucket_exists(client: store.Client) -> None:
    name = new_bucket_name("twice")
    first = client.create_bucket(name)
    client.put(name, "obj", b"data")

    with pytest.raises(store.AlreadyExists) as caught:
        client.create_bucket(name)
    assert name in str(caught.value), f"the error does not name the bucket: {caught.value}"
    assert client.head_bucket(name).created == first.created, "the bucket was recreated"
    assert client.get(name, "obj") == b"data", "the object changed"


def test_range_invalid(client: store.Client, bucket: str) -> None:
    data = make_data(2 * CHUNK, seed=5)
    client.put(bucket, "obj", data)

    for offset, length in [(len(data) + 1, None), (-1, 10), (0, -1)]:
        with pytest.raises(store.InvalidArgument) as caught:
            client.get(bucket, "obj", offset=offset, length=length)
        assert str(offset) in str(caught.value), f"the error does not name offset {offset}"


# The full-disk test: one dataserver on a small tmpfs.
SMALL_DISK_BYTES = 16 * MIB
FULL_DISK_PUT_BYTES = 48 * MIB


@pytest.fixture
def small_disk_cluster(
    cluster_factory: ClusterFactory,
) -> Iterator[tuple[LocalCluster, str]]:
    """Yield a cluster whose second dataserver has a small disk, and how the disk is limited.

    The dataserver's directory is a 16 MiB tmpfs. Where mounting is not
    permitted, the dataserver runs on the normal disk with --capacity-bytes
    16 MiB instead, and the second value is "capacity".
    """
    meta_args = ["--gc-interval-s", "0.2", "--upload-settle-s", "1"]
    cluster = cluster_factory(dataservers=1, meta_args=meta_args)
    with mounted_tmpfs(cluster.root / "data-1", SMALL_DISK_BYTES) as mounted:
        extra = ["--reserve-bytes", "0"]
        if not mounted:
            extra += ["--capacity-bytes", str(SMALL_DISK_BYTES)]
        try:
            cluster.add_dataserver(extra)
            yield cluster, "tmpfs" if mounted else "capacity"
        finally:
            cluster_factory.stop_all()


def holds_only(process: ManagedProcess, chunk_names: set[str]) -> bool:
    """Return whether every chunk file on the dataserver is one of `chunk_names`."""
    return {path.name for path in chunk_files(process)} <= chunk_names


def has_no_temp_files(process: ManagedProcess) -> bool:
    return not temp_files(process)


def test_disk_full(small_disk_cluster: tuple[LocalCluster, str]) -> None:
    cluster, limit = small_disk_cluster
    small = cluster.dataservers[1]
    with store.Client(cluster.meta_address) as client:
        client.create_bucket("disk-full")
        existing = make_data(4 * CHUNK, seed=6)
        existing_info = client.put("disk-full", "existing", existing)
        client.put("disk-full", "inline", b"inline data")
        live = {
            path.name
            for paths in upload_chunk_files(cluster, existing_info.version_id).values()
            for path in paths
        }
        assert any(path.name in live for path in chunk_files(small)), (
            f"{small.name} got no chunk of the existing object"
        )

        with pytest.raises(store.ResourceExhausted) as caught:
            client.put("disk-full", "too-big", make_data(FULL_DISK_PUT_BYTES, seed=7))
        message = str(caught.value)
        assert small.server_id in message, (
            f"the error ({limit}) does not name {small.name}: {message}"
        )

        with pytest.raises(store.NoSuchKey):
            client.stat("disk-full", "too-big")
        for process in cluster.dataservers:
            wait_until(
                functools.partial(holds_only, process, live),
                30,
                f"chunks of the failed put on {process.name} to be deleted",
                state=functools.partial(chunk_files, process),
            )
            wait_until(
                functools.partial(has_no_temp_files, process),
                10,
                f"unfinished chunk writes on {process.name} to be removed",
                state=functools.partial(temp_files, process),
            )
        assert client.get("disk-full", "existing") == existing, "the existing object changed"
        assert client.get("disk-full", "inline") == b"inline data", "the inline object changed"
