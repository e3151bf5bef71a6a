"""The S3 part of the demo: the aws CLI uploads part of the demo's input through the
cluster's S3 gateway, downloads it again and every byte is compared.

It syncs a few standard-library packages (many small files) and copies the demo's
big random file (a multipart upload with the CLI's default checksums), then syncs
and copies them back into a scratch folder under the cluster directory.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from store.cluster import CLUSTER_FILE, S3_RECORD_KEY

S3_BUCKET = "demo-s3"
# Standard-library packages the CLI syncs: about a hundred files of real source code.
STDLIB_PACKAGES = ("json", "email", "http", "xml", "asyncio", "concurrent")
AWS_CLI_TIMEOUT_S = 900.0
REGION = "us-east-1"


class S3DemoFailure(Exception):
    """The aws CLI failed, or what it read back differs from what it wrote."""


class AwsCli:
    """The aws CLI of this virtualenv, with a private config and the root user's keys."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, config_dir: Path) -> None:
        self.endpoint = endpoint
        self.executable = str(Path(sys.executable).with_name("aws"))
        if not Path(self.executable).exists():
            raise S3DemoFailure(
                f"the aws CLI is not installed at {self.executable}; run make install"
            )
        (config_dir / "config").write_text(f"[default]\nregion = {REGION}\n")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.env.update(
            AWS_CONFIG_FILE=str(config_dir / "config"),
            AWS_SHARED_CREDENTIALS_FILE=str(config_dir / "credentials-none"),
            AWS_ACCESS_KEY_ID=access_key,
            AWS_SECRET_ACCESS_KEY=secret_key,
            AWS_EC2_METADATA_DISABLED="true",
        )

    def run(self, *args: str, check: bool = True) -> str:
        command = [self.executable, "--endpoint-url", self.endpoint, *args]
        completed = subprocess.run(
            command,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=AWS_CLI_TIMEOUT_S,
            check=False,
        )
        if check and completed.returncode != 0:
            raise S3DemoFailure(
                f"`aws {' '.join(args)}` exited with code {completed.returncode}: "
                f"{completed.stderr.strip()[-1000:]}"
            )
        return completed.stdout


def read_gateway(directory: Path) -> dict[str, str] | None:
    """Return the S3 record of DIR/cluster.json, or None when the cluster has no gateway."""
    record = json.loads((directory / CLUSTER_FILE).read_text())
    gateway: dict[str, str] | None = record.get(S3_RECORD_KEY)
    return gateway


def files_under(root: Path) -> dict[str, int]:
    """Return every regular file below `root` (outside __pycache__) with its size."""
    found = {}
    for path in root.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            found[str(path.relative_to(root))] = path.stat().st_size
    return found


def run_s3_demo(directory: Path, stdlib: Path, big_path: Path) -> list[tuple[str, int, int, float]]:
    """Upload and read back through the gateway; return (phase, objects, bytes, seconds) rows."""
    gateway = read_gateway(directory)
    if gateway is None:
        print("S3: the cluster has no gateway (started with --no-s3); skipping the aws CLI part")
        return []
    scratch = Path(tempfile.mkdtemp(prefix="demo-s3-", dir=directory))
    try:
        cli = AwsCli(gateway["endpoint"], gateway["access_key"], gateway["secret_key"], scratch)
        return _round_trip(cli, stdlib, big_path, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _round_trip(
    cli: AwsCli, stdlib: Path, big_path: Path, scratch: Path
) -> list[tuple[str, int, int, float]]:
    print(f"S3: aws CLI against {cli.endpoint}", flush=True)
    cli.run("s3", "rb", "--force", f"s3://{S3_BUCKET}", check=False)
    cli.run("s3", "mb", f"s3://{S3_BUCKET}")
    packages = [stdlib / name for name in STDLIB_PACKAGES if (stdlib / name).is_dir()]
    expected = {
        f"{package.name}/{name}": size
        for package in packages
        for name, size in files_under(package).items()
    }
    small_bytes = sum(expected.values())
    big_bytes = big_path.stat().st_size

    started_s = time.perf_counter()
    for package in packages:
        cli.run(
            "s3",
            "sync",
            "--no-progress",
            "--exclude",
            "*__pycache__*",
            str(package),
            f"s3://{S3_BUCKET}/stdlib/{package.name}",
        )
    write_small_s = time.perf_counter() - started_s
    started_s = time.perf_counter()
    cli.run("s3", "cp", "--no-progress", str(big_path), f"s3://{S3_BUCKET}/big/random.bin")
    write_big_s = time.perf_counter() - started_s

    back = scratch / "back"
    started_s = time.perf_counter()
    cli.run("s3", "sync", "--no-progress", f"s3://{S3_BUCKET}/stdlib", str(back / "stdlib"))
    read_small_s = time.perf_counter() - started_s
    started_s = time.perf_counter()
    cli.run("s3", "cp", "--no-progress", f"s3://{S3_BUCKET}/big/random.bin", str(back / "big.bin"))
    read_big_s = time.perf_counter() - started_s

    _compare(stdlib, back / "stdlib", expected)
    if not filecmp.cmp(big_path, back / "big.bin", shallow=False):
        raise S3DemoFailure(f"the big file read back through S3 differs from {big_path}")
    print(
        f"S3: {len(expected)} files and the big file read back through the gateway match "
        "their local files byte for byte"
    )
    cli.run("s3", "rb", "--force", f"s3://{S3_BUCKET}")
    return [
        ("S3 write small files (aws CLI)", len(expected), small_bytes, write_small_s),
        ("S3 write big file (aws CLI)", 1, big_bytes, write_big_s),
        ("S3 read small files (aws CLI)", len(expected), small_bytes, read_small_s),
        ("S3 read big file (aws CLI)", 1, big_bytes, read_big_s),
    ]


def _compare(stdlib: Path, back: Path, expected: dict[str, int]) -> None:
    downloaded = files_under(back)
    if downloaded.keys() != expected.keys():
        missing = sorted(expected.keys() - downloaded.keys())[:3]
        extra = sorted(downloaded.keys() - expected.keys())[:3]
        raise S3DemoFailure(
            f"S3 sync returned {len(downloaded)} files, expected {len(expected)}; "
            f"missing {missing}, unexpected {extra}"
        )
    for name in expected:
        if not filecmp.cmp(stdlib / name, back / name, shallow=False):
            raise S3DemoFailure(f"{name} read back through S3 differs from {stdlib / name}")
