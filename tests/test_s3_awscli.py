"""The aws CLI (v1, with its default checksum settings) against the gateway."""

from __future__ import annotations

import json
from pathlib import Path

from .s3_clients_support import assert_same_tree, make_tree
from .s3gw_support import GatewayInfo, aws_cli
from .support import MIB, make_data, new_bucket_name


def test_cp_ls_rm(gateway: GatewayInfo, tmp_path: Path) -> None:
    config = tmp_path / "aws"
    bucket = new_bucket_name("cli")
    source = tmp_path / "big.bin"
    data = make_data(20 * MIB + 5, seed=32)
    source.write_bytes(data)

    aws_cli(gateway, config, "s3", "mb", f"s3://{bucket}")
    aws_cli(gateway, config, "s3", "cp", "--no-progress", str(source), f"s3://{bucket}/dir/big.bin")
    aws_cli(
        gateway,
        config,
        "s3",
        "cp",
        "--no-progress",
        f"s3://{bucket}/dir/big.bin",
        str(tmp_path / "back.bin"),
    )
    listing = aws_cli(gateway, config, "s3", "ls", "--recursive", f"s3://{bucket}/")

    assert (tmp_path / "back.bin").read_bytes() == data
    assert "dir/big.bin" in listing
    assert str(len(data)) in listing
    aws_cli(gateway, config, "s3", "rm", "--recursive", f"s3://{bucket}/")
    assert aws_cli(gateway, config, "s3", "ls", "--recursive", f"s3://{bucket}/", check=False) == ""
    aws_cli(gateway, config, "s3", "rb", f"s3://{bucket}")


def test_sync_both_ways(gateway: GatewayInfo, tmp_path: Path) -> None:
    config = tmp_path / "aws"
    bucket = new_bucket_name("sync")
    files = make_tree(tmp_path / "up")
    aws_cli(gateway, config, "s3", "mb", f"s3://{bucket}")

    aws_cli(
        gateway, config, "s3", "sync", "--no-progress", str(tmp_path / "up"), f"s3://{bucket}/tree"
    )
    aws_cli(
        gateway,
        config,
        "s3",
        "sync",
        "--no-progress",
        f"s3://{bucket}/tree",
        str(tmp_path / "down"),
    )
    again = aws_cli(
        gateway, config, "s3", "sync", "--no-progress", str(tmp_path / "up"), f"s3://{bucket}/tree"
    )

    assert_same_tree(files, tmp_path / "down")
    assert again.strip() == ""
    listing = aws_cli(gateway, config, "s3", "ls", "--recursive", f"s3://{bucket}/")
    assert len(listing.strip().splitlines()) == len(files)
    removed = aws_cli(gateway, config, "s3", "rm", "--recursive", f"s3://{bucket}/tree/a/")
    assert removed.count("delete:") == 3


def test_s3api_calls(gateway: GatewayInfo, tmp_path: Path) -> None:
    config = tmp_path / "aws"
    bucket = new_bucket_name("api")
    body = tmp_path / "body.txt"
    body.write_bytes(b"hello from s3api\n")

    aws_cli(gateway, config, "s3api", "create-bucket", "--bucket", bucket)
    put = json.loads(
        aws_cli(
            gateway,
            config,
            "s3api",
            "put-object",
            "--bucket",
            bucket,
            "--key",
            "k.txt",
            "--body",
            str(body),
            "--content-type",
            "text/plain",
            "--metadata",
            "origin=cli",
            "--checksum-algorithm",
            "SHA256",
        )
    )
    head = json.loads(
        aws_cli(
            gateway,
            config,
            "s3api",
            "head-object",
            "--bucket",
            bucket,
            "--key",
            "k.txt",
            "--checksum-mode",
            "ENABLED",
        )
    )
    listed = json.loads(aws_cli(gateway, config, "s3api", "list-objects-v2", "--bucket", bucket))
    location = json.loads(
        aws_cli(gateway, config, "s3api", "get-bucket-location", "--bucket", bucket)
    )
    aws_cli(
        gateway,
        config,
        "s3api",
        "get-object",
        "--bucket",
        bucket,
        "--key",
        "k.txt",
        str(tmp_path / "out"),
    )

    assert head["ETag"] == put["ETag"]
    assert head["ContentType"] == "text/plain"
    assert head["Metadata"] == {"origin": "cli"}
    assert head["ChecksumSHA256"] == put["ChecksumSHA256"]
    assert [item["Key"] for item in listed["Contents"]] == ["k.txt"]
    assert location["LocationConstraint"] is None
    assert (tmp_path / "out").read_bytes() == body.read_bytes()
    aws_cli(gateway, config, "s3api", "delete-object", "--bucket", bucket, "--key", "k.txt")
    aws_cli(gateway, config, "s3api", "delete-bucket", "--bucket", bucket)
    buckets = json.loads(aws_cli(gateway, config, "s3api", "list-buckets"))
    assert bucket not in [b["Name"] for b in buckets["Buckets"]]


def test_empty_files_keep_connections_usable(gateway: GatewayInfo, tmp_path: Path) -> None:
    # The CLI's vendored botocore took a final response that came instead of "100
    # Continue" (as it may for an empty body) for the interim one, then misread the
    # next response on that connection and stalled until its read timeout. One
    # connection, no retries and a short timeout make that stall a failure here.
    config = tmp_path / "aws"
    config.mkdir()
    (config / "config").write_text(
        "[default]\nregion = us-east-1\nmax_attempts = 1\ns3 =\n    max_concurrent_requests = 1\n"
    )
    source = tmp_path / "up"
    source.mkdir()
    for index in range(4):
        (source / f"{index}-empty").write_bytes(b"")
        (source / f"{index}-full").write_bytes(f"file {index}\n".encode())
    bucket = new_bucket_name("empty")
    aws_cli(gateway, config, "s3", "mb", f"s3://{bucket}")

    aws_cli(
        gateway,
        config,
        "--cli-read-timeout",
        "10",
        "s3",
        "sync",
        "--no-progress",
        str(source),
        f"s3://{bucket}/",
    )

    listing = aws_cli(gateway, config, "s3", "ls", f"s3://{bucket}/")
    assert len(listing.strip().splitlines()) == 8
