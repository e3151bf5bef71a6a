"""rclone (Debian's package) against the gateway: sync both ways, check, list and delete.

rclone talks to the gateway as an S3 remote of provider "Other" with path-style requests
and SigV4, configured in a private file. The upload cutoff and chunk size are lowered to
CLIENT_PART_SIZE_MIB so the tree's large file goes up as a multipart upload, and the
multi-thread cutoff likewise, so its download is split into parallel range reads.
"""

from __future__ import annotations

import json
import subprocess
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

RCLONE_TIMEOUT_S = 60
REMOTE = "gw"


@dataclass(frozen=True)
class Rclone:
    """rclone with a private config whose remote REMOTE is the gateway."""

    executable: str
    config: Path
    home: Path

    def run(self, *args: str) -> str:
        """Run rclone with `args` and return stdout and stderr joined (rclone logs to stderr)."""
        completed = self._run(*args)
        return completed.stdout + completed.stderr

    def list_sizes(self, path: str) -> dict[str, int]:
        """Return the size of every object under `path`, keyed by its path below `path`."""
        entries = json.loads(self._run("lsjson", "-R", "--files-only", path).stdout)
        return {entry["Path"]: entry["Size"] for entry in entries}

    def list_buckets(self) -> list[str]:
        return [entry["Path"] for entry in json.loads(self._run("lsjson", f"{REMOTE}:").stdout)]

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        part_size = f"{CLIENT_PART_SIZE_MIB}M"
        argv = [
            self.executable,
            "--config",
            str(self.config),
            "--cache-dir",
            str(self.home / "cache"),
            # One try each, so that a failed request fails the test instead of being retried.
            "--retries",
            "1",
            "--low-level-retries",
            "1",
            "--contimeout",
            "10s",
            "--timeout",
            "30s",
            "--s3-upload-cutoff",
            part_size,
            "--s3-chunk-size",
            part_size,
            "--multi-thread-cutoff",
            part_size,
            "--multi-thread-streams",
            "2",
            # INFO logs go to stderr, so a JSON listing on stdout stays clean.
            "-v",
            *args,
        ]
        return run_client(argv, client_env(self.home), RCLONE_TIMEOUT_S)


@pytest.fixture
def rclone(gateway: GatewayInfo, tmp_path: Path) -> Rclone:
    executable = require_command("rclone")
    config = tmp_path / "rclone.conf"
    config.write_text(
        f"[{REMOTE}]\n"
        "type = s3\n"
        "provider = Other\n"
        "env_auth = false\n"
        f"access_key_id = {gateway.access_key}\n"
        f"secret_access_key = {gateway.secret_key}\n"
        f"endpoint = {gateway.endpoint}\n"
        f"region = {REGION}\n"
        "force_path_style = true\n"
    )
    return Rclone(executable, config, tmp_path / "rclone-home")


def test_sync_both_ways(rclone: Rclone, s3: Any, tmp_path: Path) -> None:
    bucket = new_bucket_name("rclone")
    files = make_tree(tmp_path / "up")
    remote_tree = f"{REMOTE}:{bucket}/tree"
    rclone.run("mkdir", f"{REMOTE}:{bucket}")

    rclone.run("sync", str(tmp_path / "up"), remote_tree)
    checked = rclone.run("check", str(tmp_path / "up"), remote_tree)
    downloaded = rclone.run("sync", remote_tree, str(tmp_path / "down"))
    again = rclone.run("sync", str(tmp_path / "up"), remote_tree)

    assert_same_tree(files, tmp_path / "down")
    assert f"{len(files)} matching files" in checked
    assert "big/large.bin: Multi-thread Copied" in downloaded
    assert "There was nothing to transfer" in again
    assert rclone.list_sizes(remote_tree) == sizes_of(files)
    assert_multipart_etag(s3, bucket, "tree/big/large.bin", part_count=2)


def test_list_and_delete(rclone: Rclone, tmp_path: Path) -> None:
    bucket = new_bucket_name("rclone")
    files = make_tree(tmp_path / "up")
    remote_tree = f"{REMOTE}:{bucket}/tree"
    rclone.run("mkdir", f"{REMOTE}:{bucket}")
    rclone.run("copy", str(tmp_path / "up"), remote_tree)

    buckets = rclone.list_buckets()
    rclone.run("delete", f"{remote_tree}/a")
    rclone.run("deletefile", f"{remote_tree}/top.txt")
    remaining = rclone.list_sizes(remote_tree)
    rclone.run("copy", remote_tree, str(tmp_path / "rest"))
    rclone.run("purge", f"{REMOTE}:{bucket}")

    assert bucket in buckets
    assert remaining == sizes_of(without_deleted(files))
    assert read_tree(tmp_path / "rest") == without_deleted(files)
    assert bucket not in rclone.list_buckets()
