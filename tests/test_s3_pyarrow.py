"""pyarrow's S3 filesystem (the AWS SDK for C++) against the gateway: Parquet files and datasets,
streamed multipart writes, random reads, copies, moves and deletes.

Data pipelines (Ray, Hugging Face datasets, pandas, Polars through fsspec or Arrow) reach S3
through this filesystem, which signs and frames requests with the C++ SDK, not botocore. The
filesystem runs in this process with an environment stripped of AWS and proxy variables, the
EC2 metadata lookup off, and retries off, so a failed request fails the test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from .s3_clients_support import isolate_env
from .s3gw_support import REGION, GatewayInfo
from .support import MIB, make_data

CONNECT_TIMEOUT_S = 10
REQUEST_TIMEOUT_S = 60
ROWS = 50_000


@pytest.fixture
def fs(gateway: GatewayInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pafs.S3FileSystem:
    """A pyarrow S3 filesystem of the gateway, signed as root, path-style, without retries."""
    isolate_env(monkeypatch, tmp_path / "pyarrow-home")
    # The C++ SDK would otherwise ask the EC2 instance metadata service for a region.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    scheme, _, host = gateway.endpoint.partition("://")
    return pafs.S3FileSystem(
        access_key=gateway.access_key,
        secret_key=gateway.secret_key,
        region=REGION,
        scheme=scheme,
        endpoint_override=host,
        force_virtual_addressing=False,
        connect_timeout=CONNECT_TIMEOUT_S,
        request_timeout=REQUEST_TIMEOUT_S,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1),
        allow_bucket_creation=True,
        allow_bucket_deletion=True,
    )


def _table(first: int) -> pa.Table:
    numbers = list(range(first, first + ROWS))
    return pa.table({"id": numbers, "name": [f"row-{n}" for n in numbers]})


def test_parquet_file_and_dataset(fs: pafs.S3FileSystem, s3_bucket: str) -> None:
    table = _table(0)
    more = _table(ROWS)

    pq.write_table(table, f"{s3_bucket}/tables/one.parquet", filesystem=fs)
    pq.write_table(more, f"{s3_bucket}/dataset/part-0.parquet", filesystem=fs)
    pq.write_table(table, f"{s3_bucket}/dataset/part-1.parquet", filesystem=fs)
    back = pq.read_table(f"{s3_bucket}/tables/one.parquet", filesystem=fs)
    dataset = pads.dataset(f"{s3_bucket}/dataset", filesystem=fs, format="parquet")
    selected = dataset.to_table(filter=pads.field("id") >= ROWS)

    assert back.equals(table)
    assert sorted(dataset.files) == [
        f"{s3_bucket}/dataset/part-0.parquet",
        f"{s3_bucket}/dataset/part-1.parquet",
    ]
    assert dataset.count_rows() == 2 * ROWS
    assert selected.sort_by("id").equals(more)


def test_stream_write_and_random_reads(fs: pafs.S3FileSystem, s3: Any, s3_bucket: str) -> None:
    """A stream longer than the SDK's part size goes up as a multipart upload."""
    data = make_data(23 * MIB + 4321, seed=70)
    path = f"{s3_bucket}/streams/big.bin"

    with fs.open_output_stream(path) as stream:
        for start in range(0, len(data), MIB):
            stream.write(data[start : start + MIB])
    info = fs.get_file_info(path)
    with fs.open_input_file(path) as file:
        middle = file.read_at(100_000, 17 * MIB + 3)
        file.seek(len(data) - 50)
        tail = file.read(1000)
    with fs.open_input_stream(path) as stream:
        whole = stream.read()

    assert info.type == pafs.FileType.File
    assert info.size == len(data)
    assert middle == data[17 * MIB + 3 :][:100_000]
    assert tail == data[-50:]
    assert whole == data
    etag = s3.head_object(Bucket=s3_bucket, Key="streams/big.bin")["ETag"]
    assert "-" in etag, "pyarrow did not upload the stream as a multipart upload"


def test_listing_copy_move_delete(fs: pafs.S3FileSystem, s3_bucket: str) -> None:
    objects = {
        "top.bin": make_data(1000, seed=71),
        "a/one.bin": make_data(2000, seed=72),
        "a/b/two.bin": make_data(3 * MIB, seed=73),
    }
    for key, data in objects.items():
        with fs.open_output_stream(f"{s3_bucket}/{key}") as stream:
            stream.write(data)
    fs.create_dir(f"{s3_bucket}/empty-dir")

    listed = fs.get_file_info(pafs.FileSelector(s3_bucket, recursive=True))
    fs.copy_file(f"{s3_bucket}/a/b/two.bin", f"{s3_bucket}/copies/two.bin")
    fs.move(f"{s3_bucket}/top.bin", f"{s3_bucket}/moved/top.bin")
    with fs.open_input_stream(f"{s3_bucket}/copies/two.bin") as stream:
        copied = stream.read()
    with fs.open_input_stream(f"{s3_bucket}/moved/top.bin") as stream:
        moved = stream.read()
    fs.delete_dir_contents(f"{s3_bucket}/a")
    fs.delete_file(f"{s3_bucket}/copies/two.bin")
    remaining = fs.get_file_info(pafs.FileSelector(s3_bucket, recursive=True))

    files = {i.path: i.size for i in listed if i.type == pafs.FileType.File}
    directories = {i.path for i in listed if i.type == pafs.FileType.Directory}
    assert files == {f"{s3_bucket}/{key}": len(data) for key, data in objects.items()}
    assert directories == {f"{s3_bucket}/{d}" for d in ("a", "a/b", "empty-dir")}
    assert copied == objects["a/b/two.bin"]
    assert moved == objects["top.bin"]
    assert fs.get_file_info(f"{s3_bucket}/top.bin").type == pafs.FileType.NotFound
    remaining_files = {i.path for i in remaining if i.type == pafs.FileType.File}
    assert remaining_files == {f"{s3_bucket}/moved/top.bin"}


def test_bucket_create_and_delete(fs: pafs.S3FileSystem, s3: Any, s3_bucket: str) -> None:
    """With bucket creation and deletion allowed, a top-level directory is a bucket."""
    name = f"{s3_bucket}-arrow"

    fs.create_dir(name)
    with fs.open_output_stream(f"{name}/k") as stream:
        stream.write(b"value")
    created = fs.get_file_info(name)
    fs.delete_dir(name)

    assert created.type == pafs.FileType.Directory
    assert fs.get_file_info(name).type == pafs.FileType.NotFound
    buckets = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert name not in buckets
