"""s3cmd (Debian's package) against the gateway: sync both ways, list and delete.

s3cmd reads a private config file (`-c`) that points host_base and host_bucket at the
gateway, so every request is path-style, over plain HTTP, signed with SigV4. The
multipart chunk size is lowered to CLIENT_PART_SIZE_MIB so the tree's large file goes up
as a multipart upload.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .s3_clients_support import (
    CLIENT_PART_SIZE_MIB,
    assert_multipart_etag,
    assert_same_tree,
    client_env,
    make_tree,
    read_tree,
    require_command,
    run_client,
    sizes_of,
    without_deleted,
)
from .s3gw_support import REGION, GatewayInfo
from .support import new_bucket_name

S3CMD_TIMEOUT_S = 60


@dataclass(frozen=True)
class S3cmd:
    """s3cmd with a private config file that points it at the gateway."""

    executable: str
    config: Path
    home: Path

    def run(self, *args: str) -> str:
        """Run s3cmd with `args` and return its stdout, checking that it logged no warning.

        s3cmd 2.3.0 retries a failed request up to 5 times and logs a WARNING for each retry,
        and for an MD5 mismatch on download, so a warning is a gateway error that it hid.
        """
        argv = [self.executable, "-c", str(self.config), "--no-progress", *args]
        completed = run_client(argv, client_env(self.home), S3CMD_TIMEOUT_S)
        assert "WARNING" not in completed.stderr, f"s3cmd {args[0]} warned:\n{completed.stderr}"
        return completed.stdout

    def list_sizes(self, url: str) -> dict[str, int]:
        """Return the size of every object under `url` (s3://bucket/prefix/), keyed by key."""
        sizes = {}
        for line in self.run("ls", "-r", url).splitlines():
            # A line is "DATE TIME SIZE s3://bucket/key", and the key may contain spaces.
            _date, _time, size, object_url = line.split(maxsplit=3)
            sizes[object_url.split("/", 3)[3]] = int(size)
        return sizes

    def list_buckets(self) -> list[str]:
        return [line.split()[-1] for line in self.run("ls").splitlines()]


@pytest.fixture
def s3cmd(gateway: GatewayInfo, tmp_path: Path) -> S3cmd:
    executable = require_command("s3cmd")
    config = tmp_path / "s3cfg"
    config.write_text(
        "[default]\n"
        f"access_key = {gateway.access_key}\n"
        f"secret_key = {gateway.secret_key}\n"
        f"host_base = {gateway.address}\n"
        # No %(bucket)s in host_bucket: s3cmd then puts the bucket in the path.
        f"host_bucket = {gateway.address}\n"
        "use_https = False\n"
        "signature_v2 = False\n"
        f"bucket_location = {REGION}\n"
        f"multipart_chunk_size_mb = {CLIENT_PART_SIZE_MIB}\n"
        "socket_timeout = 30\n"
    )
    return S3cmd(executable, config, tmp_path / "s3cmd-home")


def test_sync_both_ways(s3cmd: S3cmd, s3: Any, tmp_path: Path) -> None:
    bucket = new_bucket_name("s3cmd")
    files = make_tree(tmp_path / "up")
    remote_tree = f"s3://{bucket}/tree/"
    s3cmd.run("mb", f"s3://{bucket}")

    uploaded = s3cmd.run("sync", f"{tmp_path / 'up'}/", remote_tree)
    s3cmd.run("sync", remote_tree, f"{tmp_path / 'down'}/")
    again = s3cmd.run("sync", f"{tmp_path / 'up'}/", remote_tree)

    assert_same_tree(files, tmp_path / "down")
    assert uploaded.count("upload:") == len(files)
    assert "upload:" not in again
    assert s3cmd.list_sizes(f"s3://{bucket}/") == sizes_of(files, prefix="tree/")
    assert_multipart_etag(s3, bucket, "tree/big/large.bin", part_count=2)


def test_list_and_delete(s3cmd: S3cmd, tmp_path: Path) -> None:
    bucket = new_bucket_name("s3cmd")
    files = make_tree(tmp_path / "up")
    remote_tree = f"s3://{bucket}/tree/"
    s3cmd.run("mb", f"s3://{bucket}")
    s3cmd.run("put", "--recursive", f"{tmp_path / 'up'}/", remote_tree)

    buckets = s3cmd.list_buckets()
    removed = s3cmd.run("del", "--recursive", f"{remote_tree}a/")
    s3cmd.run("del", f"{remote_tree}top.txt")
    remaining = s3cmd.list_sizes(remote_tree)
    # s3cmd get downloads several objects only into a folder that exists.
    (tmp_path / "rest").mkdir()
    s3cmd.run("get", "--recursive", remote_tree, f"{tmp_path / 'rest'}/")
    s3cmd.run("del", "--recursive", "--force", f"s3://{bucket}")
    s3cmd.run("rb", f"s3://{bucket}")

    assert f"s3://{bucket}" in buckets
    assert removed.count("delete:") == 3
    assert remaining == sizes_of(without_deleted(files), prefix="tree/")
    assert read_tree(tmp_path / "rest") == without_deleted(files)
    assert f"s3://{bucket}" not in s3cmd.list_buckets()
