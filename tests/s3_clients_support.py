"""Helpers for the tests that drive third-party S3 clients (rclone, s3cmd, s3fs, pyarrow).

Each command-line client runs as a subprocess with a private config and HOME under the test's
tmp_path, an environment stripped of AWS, rclone, s3cmd and proxy variables, and a timeout.
The libraries that run inside the test process get the same environment (isolate_env). The
directory tree that the sync tests upload and compare lives here too, so every client syncs
the same files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import pytest

from .support import MIB, make_data

# Part size for the clients that let a test lower their multipart threshold: the S3 minimum
# for every part but the last. The tree's large file is above it, so it goes up in parts.
CLIENT_PART_SIZE_MIB = 5
INSTALL_SCRIPT = "tools/install-s3-clients.sh"

# Prefixes of variables that would point a client at another config, endpoint or proxy.
_FOREIGN_ENV_PREFIXES = ("AWS_", "RCLONE_", "S3CMD_")
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def make_tree(root: Path) -> dict[str, bytes]:
    """Write a small directory tree, including one file above the multipart threshold.

    The large file (9 MiB) is above the aws CLI's default threshold (8 MiB) and above
    CLIENT_PART_SIZE_MIB, which the rclone and s3cmd tests set as theirs.
    """
    files = {
        "top.txt": b"top\n",
        "a/one.txt": b"one\n",
        "a/b/two.bin": make_data(100_000, seed=30),
        "a/b/c/empty": b"",
        "big/large.bin": make_data(9 * MIB, seed=31),
        "space dir/name with spaces.txt": b"spaces\n",
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def sizes_of(files: Mapping[str, bytes], prefix: str = "") -> dict[str, int]:
    """Return the size of each file, keyed by its name after `prefix`."""
    return {f"{prefix}{name}": len(data) for name, data in files.items()}


def without_deleted(files: Mapping[str, bytes]) -> dict[str, bytes]:
    """Return the tree's files that the delete tests keep: they delete a/ and top.txt."""
    return {
        name: data
        for name, data in files.items()
        if not name.startswith("a/") and name != "top.txt"
    }


def assert_multipart_etag(s3: Any, bucket: str, key: str, part_count: int) -> None:
    """Check that an object's ETag is a multipart upload's: the parts' MD5 and "-N"."""
    etag = s3.head_object(Bucket=bucket, Key=key)["ETag"]
    assert etag.endswith(f'-{part_count}"'), f"{key} was not uploaded in {part_count} parts: {etag}"


def read_tree(root: Path) -> dict[str, bytes]:
    """Return every file under `root`, keyed by its path relative to `root` with '/' separators."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def assert_same_tree(expected: Mapping[str, bytes], root: Path) -> None:
    """Check that `root` contains exactly the files in `expected`, byte for byte."""
    actual = read_tree(root)
    assert sorted(actual) == sorted(expected)
    for name, data in expected.items():
        assert len(actual[name]) == len(data), name
        assert actual[name] == data, name


def require_command(command: str) -> str:
    """Return the path of `command`, or skip the test when it is not installed.

    On CI (the CI variable is set) a missing client fails the test instead, because
    `make test` runs INSTALL_SCRIPT first and CI runs as root, so the client must be there.
    """
    path = shutil.which(command)
    if path is not None:
        return path
    message = (
        f"{command} is not installed; install it with `sudo apt-get install {command}` "
        f"or run `sudo {INSTALL_SCRIPT}`"
    )
    skip_missing_client(message)


def skip_missing_client(message: str) -> NoReturn:
    """Skip the test for a missing client, or fail it under CI (the CI variable set)."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set, and `make test` should have installed it)")
    pytest.skip(message)


def client_env(home: Path) -> dict[str, str]:
    """Return this process's environment without AWS, rclone, s3cmd and proxy variables,
    with HOME set to `home`, so a client reads no config of the user's."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.upper().startswith(_FOREIGN_ENV_PREFIXES) and key.lower() not in _PROXY_VARIABLES
    }
    home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(home)
    env["XDG_CONFIG_HOME"] = str(home / ".config")
    env["XDG_CACHE_HOME"] = str(home / ".cache")
    return env


def isolate_env(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """Give this process client_env(home), for a client that runs inside the test process."""
    private_env = client_env(home)
    for name in set(os.environ) - set(private_env):
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", private_env["HOME"])


def run_client(
    argv: Sequence[str], env: Mapping[str, str], timeout_s: float, *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a client command and return the result. With `check`, a non-zero exit status
    raises AssertionError with the command's output."""
    completed = subprocess.run(
        list(argv),
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if check and completed.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited with {completed.returncode}:\n"
            f"stdout: {completed.stdout[-3000:]}\nstderr: {completed.stderr[-3000:]}"
        )
    return completed
