"""s3fs (fsspec's S3 filesystem, on aiobotocore) against the gateway: open, ls, find and ranges.

The filesystem runs in this process with path-style addressing and SigV4, an environment
stripped of AWS and proxy variables, and HOME in tmp_path, so botocore reads no config of
the user's. Retries are off in botocore and s3fs alike, so a failed request fails the test.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import s3fs
from botocore.exceptions import ClientError

from .s3_clients_support import CLIENT_PART_SIZE_MIB, isolate_env
from .s3gw_support import REGION, GatewayInfo
from .support import KIB, MIB, make_data

CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 60
PART_SIZE_BYTES = CLIENT_PART_SIZE_MIB * MIB


@pytest.fixture
def fs(gateway: GatewayInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> s3fs.S3FileSystem:
    """An s3fs filesystem of the gateway, signed as root, with no caches between calls."""
    isolate_env(monkeypatch, tmp_path / "s3fs-home")
    filesystem = s3fs.S3FileSystem(
        key=gateway.access_key,
        secret=gateway.secret_key,
        endpoint_url=gateway.endpoint,
        client_kwargs={"region_name": REGION},
        config_kwargs={
            "s3": {"addressing_style": "path"},
            "signature_version": "s3v4",
            "connect_timeout": CONNECT_TIMEOUT_S,
            "read_timeout": READ_TIMEOUT_S,
            "retries": {"max_attempts": 1},
        },
        skip_instance_cache=True,
        use_listings_cache=False,
    )
    filesystem.retries = 1
    return filesystem


def test_open_write_read(fs: s3fs.S3FileSystem, s3: Any, s3_bucket: str) -> None:
    small = b"small object through fsspec\n"
    large = make_data(2 * PART_SIZE_BYTES + 123_457, seed=40)

    with fs.open(f"{s3_bucket}/dir/small.txt", "wb") as file:
        file.write(small)
    with fs.open(f"{s3_bucket}/dir/large.bin", "wb", block_size=PART_SIZE_BYTES) as file:
        for start in range(0, len(large), MIB):
            file.write(large[start : start + MIB])
    with fs.open(f"{s3_bucket}/dir/small.txt", "rb") as file:
        small_back = file.read()
    with fs.open(f"{s3_bucket}/dir/large.bin", "rb") as file:
        large_back = file.read()

    assert small_back == small
    assert large_back == large
    assert fs.info(f"{s3_bucket}/dir/large.bin")["size"] == len(large)
    large_etag = s3.head_object(Bucket=s3_bucket, Key="dir/large.bin")["ETag"]
    assert "-" in large_etag, "s3fs did not upload the large object as a multipart upload"


def test_ls_and_find(fs: s3fs.S3FileSystem, s3_bucket: str) -> None:
    objects = {
        "top.txt": b"top\n",
        "a/one.txt": b"one\n",
        "a/b/two.bin": make_data(10_000, seed=41),
        "a/b/empty": b"",
        "space dir/name with spaces.txt": b"spaces\n",
    }
    fs.pipe({f"{s3_bucket}/{key}": data for key, data in objects.items()})

    top = fs.ls(s3_bucket, detail=True)
    inner = fs.ls(f"{s3_bucket}/a/b", detail=False)
    found = fs.find(s3_bucket)
    found_under_a = fs.find(f"{s3_bucket}/a", detail=True)
    buckets = fs.ls("", detail=False)

    top_types = {entry["name"]: entry["type"] for entry in top}
    assert top_types == {
        f"{s3_bucket}/top.txt": "file",
        f"{s3_bucket}/a": "directory",
        f"{s3_bucket}/space dir": "directory",
    }
    assert sorted(inner) == [f"{s3_bucket}/a/b/empty", f"{s3_bucket}/a/b/two.bin"]
    assert sorted(found) == sorted(f"{s3_bucket}/{key}" for key in objects)
    sizes_under_a = {name: entry["size"] for name, entry in found_under_a.items()}
    assert sizes_under_a == {
        f"{s3_bucket}/{key}": len(data) for key, data in objects.items() if key.startswith("a/")
    }
    assert s3_bucket in buckets
    assert fs.cat_file(f"{s3_bucket}/space dir/name with spaces.txt") == b"spaces\n"
    assert fs.cat_file(f"{s3_bucket}/a/b/empty") == b""


@pytest.mark.parametrize("cache_type", ["none", "readahead", "bytes"])
def test_partial_read(fs: s3fs.S3FileSystem, s3_bucket: str, cache_type: str) -> None:
    data = make_data(3 * MIB + 17, seed=42)
    path = f"{s3_bucket}/ranged.bin"
    fs.pipe_file(path, data)
    middle_offset = MIB + 12_345
    middle_bytes = 300 * KIB

    with fs.open(path, "rb", block_size=256 * KIB, cache_type=cache_type) as file:
        file.seek(middle_offset)
        middle = file.read(middle_bytes)
        position_after_middle = file.tell()
        file.seek(-100, os.SEEK_END)
        tail_past_end = file.read(1000)
        file.seek(5)
        head = file.read(10)
        at_end = file.read(0)

    assert middle == data[middle_offset : middle_offset + middle_bytes]
    assert position_after_middle == middle_offset + middle_bytes
    assert tail_past_end == data[-100:]
    assert head == data[5:15]
    assert at_end == b""
    assert fs.cat_file(path, start=1000, end=2000) == data[1000:2000]
    assert fs.cat_file(path, start=-10) == data[-10:]


def test_rm_bucket_recursive(fs: s3fs.S3FileSystem, s3: Any, s3_bucket: str) -> None:
    """s3fs sends GetBucketVersioning before it deletes a whole bucket, and fails on an error."""
    fs.pipe({f"{s3_bucket}/k{index}": b"x" * index for index in range(3)})
    fs.pipe_file(f"{s3_bucket}/dir/nested", b"nested")

    fs.rm(s3_bucket, recursive=True)

    assert s3_bucket not in fs.ls("", detail=False)
    with pytest.raises(ClientError) as error:
        s3.head_bucket(Bucket=s3_bucket)
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
