"""The S3 gateway as a process: storectl cluster up/status/down, root keys, and --workers."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from store.cluster import LocalCluster, pid_alive

from .s3gw_support import REGION

STORECTL = str(Path(sys.executable).with_name("storectl"))
ROOT_ACCESS_KEY = "ROOTKEYFROMENV000001"
ROOT_SECRET_KEY = "root-secret-from-the-environment-0001"


def storectl(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    completed = subprocess.run(
        [STORECTL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def client_for(endpoint: str, access_key: str, secret_key: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def small_cluster_args(directory: Path) -> list[str]:
    return ["cluster", "up", "--dir", str(directory), "--detach", "--dataservers", "1"]


def test_cluster_up_starts_gateway(tmp_path: Path) -> None:
    directory = tmp_path / "c"
    first = storectl(*small_cluster_args(directory), cwd=tmp_path)
    try:
        record = json.loads((directory / "cluster.json").read_text())
        s3 = record["s3"]
        assert s3["endpoint"].startswith("http://127.0.0.1:")
        assert f"root secret key: {s3['secret_key']}" in first
        assert stat.S_IMODE((directory / "cluster.json").stat().st_mode) == 0o600
        assert pid_alive(s3["pid"])

        client = client_for(s3["endpoint"], s3["access_key"], s3["secret_key"])
        client.create_bucket(Bucket="from-cluster-up")
        client.put_object(Bucket="from-cluster-up", Key="k", Body=b"v")
        assert client.get_object(Bucket="from-cluster-up", Key="k")["Body"].read() == b"v"

        status = json.loads(
            storectl("cluster", "status", "--dir", str(directory), "--json", cwd=tmp_path)
        )
        assert status["s3"]["running"] is True
        assert "secret_key" not in status["s3"]
    finally:
        storectl("cluster", "down", "--dir", str(directory), cwd=tmp_path)
    assert not pid_alive(s3["pid"])

    # A restart keeps the endpoint and the keys, and does not print the secret again.
    again = storectl(*small_cluster_args(directory), cwd=tmp_path)
    try:
        restarted = json.loads((directory / "cluster.json").read_text())["s3"]
        assert restarted["endpoint"] == s3["endpoint"]
        assert restarted["secret_key"] == s3["secret_key"]
        assert "secret key" not in again
    finally:
        storectl("cluster", "down", "--dir", str(directory), cwd=tmp_path)


def test_cluster_up_without_gateway(tmp_path: Path) -> None:
    directory = tmp_path / "c"
    storectl(*small_cluster_args(directory), "--no-s3", cwd=tmp_path)
    try:
        record = json.loads((directory / "cluster.json").read_text())
        assert "s3" not in record
    finally:
        storectl("cluster", "down", "--dir", str(directory), cwd=tmp_path)


def test_cluster_up_gateway_workers(tmp_path: Path) -> None:
    directory = tmp_path / "c"
    storectl(*small_cluster_args(directory), "--s3-workers", "2", cwd=tmp_path)
    try:
        s3 = json.loads((directory / "cluster.json").read_text())["s3"]
        assert s3["args"][-2:] == ["--workers", "2"], f"gateway command: {s3['args']}"
        children = Path(f"/proc/{s3['pid']}/task/{s3['pid']}/children").read_text().split()
        # multiprocessing also starts a resource tracker beside the two workers.
        workers = [int(pid) for pid in children if b"spawn_main" in cmdline(int(pid))]
        assert len(workers) == 2, f"the gateway supervisor has children {children}"
        client = client_for(s3["endpoint"], s3["access_key"], s3["secret_key"])
        client.create_bucket(Bucket="from-two-workers")
        assert client.list_buckets()["Buckets"][0]["Name"] == "from-two-workers"
    finally:
        storectl("cluster", "down", "--dir", str(directory), cwd=tmp_path)
    for pid in [s3["pid"], *workers]:
        assert not pid_alive(pid), f"process {pid} still runs after cluster down"


def test_root_keys_from_environment(tmp_path: Path) -> None:
    directory = tmp_path / "c"
    env = {
        **os.environ,
        "STORE_ROOT_ACCESS_KEY": ROOT_ACCESS_KEY,
        "STORE_ROOT_SECRET_KEY": ROOT_SECRET_KEY,
    }
    storectl(*small_cluster_args(directory), cwd=tmp_path, env=env)
    try:
        s3 = json.loads((directory / "cluster.json").read_text())["s3"]
        assert s3["access_key"] == ROOT_ACCESS_KEY
        assert s3["secret_key"] == ROOT_SECRET_KEY
        client = client_for(s3["endpoint"], ROOT_ACCESS_KEY, ROOT_SECRET_KEY)
        assert client.list_buckets()["Buckets"] == []
    finally:
        storectl("cluster", "down", "--dir", str(directory), cwd=tmp_path)


def worker_pids(supervisor_pid: int) -> list[int]:
    completed = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(supervisor_pid)], capture_output=True, text=True
    )
    pids = [int(line) for line in completed.stdout.split()]
    # The spawn start method adds a resource tracker; workers run store.s3 code.
    return [
        pid
        for pid in pids
        if "multiprocessing.spawn"
        in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        and "resource_tracker"
        not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    ]


def test_workers_share_one_port(cluster: LocalCluster) -> None:
    gateway = cluster.add_gateway(extra_args=["--workers", "2"])
    access_key, secret_key = cluster.read_root_keys()
    client = client_for(f"http://{gateway.address}", access_key, secret_key)
    try:
        pids = worker_pids(gateway.pid)
        assert len(pids) == 2
        client.create_bucket(Bucket="workers-bucket")
        for index in range(20):
            client.put_object(Bucket="workers-bucket", Key=f"k{index}", Body=b"x")
        assert client.list_objects_v2(Bucket="workers-bucket")["KeyCount"] == 20

        # A worker that dies is replaced, and the port keeps serving meanwhile.
        os.kill(pids[0], signal.SIGKILL)
        deadline_s = time.monotonic() + 30
        while time.monotonic() < deadline_s and len(set(worker_pids(gateway.pid)) - {pids[0]}) < 2:
            time.sleep(0.2)
        assert len(set(worker_pids(gateway.pid)) - {pids[0]}) == 2
        for index in range(10):
            assert (
                client.head_object(Bucket="workers-bucket", Key=f"k{index}")["ContentLength"] == 1
            )
    finally:
        gateway.stop()
        cluster.gateways.remove(gateway)
    assert not pid_alive(gateway.pid)
    assert all(not pid_alive(pid) for pid in pids[1:])


@pytest.mark.parametrize("flag", [["--workers", "0"], ["--listen", "nonsense"]])
def test_gateway_rejects_bad_flags(flag: list[str]) -> None:
    args = {"--listen": "127.0.0.1:0", "--meta": "127.0.0.1:1", "--workers": "1"}
    args[flag[0]] = flag[1]
    command = [sys.executable, "-m", "store.s3.server"]
    for name, value in args.items():
        command += [name, value]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert completed.returncode != 0
    assert flag[0] in completed.stderr or "invalid address" in completed.stderr
