"""storectl end to end: real subprocesses against a cluster it starts in a temp directory."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from store.cluster import pid_alive

COMMAND_TIMEOUT_S = 60.0
EXIT_WAIT_S = 15.0


def storectl_argv() -> list[str]:
    """The installed console script, else the module (for runs outside the venv)."""
    script = Path(sys.executable).with_name("storectl")
    return [str(script)] if script.exists() else [sys.executable, "-m", "store.cli"]


def clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("STORE_META", None)
    return env


def storectl(
    *args: str, cwd: Path, check: bool = True, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(
        [*storectl_argv(), *args],
        cwd=cwd,
        env=clean_env(),
        input=stdin,
        capture_output=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"storectl {' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout.decode(errors='replace')}\n{result.stderr.decode(errors='replace')}"
        )
    return result


def recorded_pids(cluster_dir: Path) -> list[int]:
    record = json.loads((cluster_dir / "cluster.json").read_text())
    gateways = [record["s3"]] if record.get("s3") else []
    return [p["pid"] for p in record["metaservers"] + record["dataservers"] + gateways]


def wait_gone(pids: list[int]) -> list[int]:
    deadline_s = time.monotonic() + EXIT_WAIT_S
    while time.monotonic() < deadline_s and any(pid_alive(pid) for pid in pids):
        time.sleep(0.05)
    return [pid for pid in pids if pid_alive(pid)]


def kill_leftovers(pids: list[int]) -> None:
    """Last resort after a failed test: SIGKILL the servers this test started, by pid."""
    for pid in pids:
        if pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A detached two-dataserver cluster; yields its directory, whose parent is the cwd."""
    work = tmp_path_factory.mktemp("cli")
    cluster_dir = work / "cluster"
    storectl(
        "cluster",
        "up",
        "--dir",
        str(cluster_dir),
        "--detach",
        "--dataservers",
        "2",
        "--shards",
        "4",
        "--log-level",
        "warning",
        cwd=work,
    )
    pids = recorded_pids(cluster_dir)
    try:
        yield cluster_dir
    finally:
        storectl("cluster", "down", "--dir", str(cluster_dir), cwd=work, check=False)
        kill_leftovers(wait_gone(pids))


def run_in(cluster_dir: Path, *args: str, check: bool = True, stdin: bytes | None = None) -> Any:
    return storectl(
        *args, "--dir", str(cluster_dir), cwd=cluster_dir.parent, check=check, stdin=stdin
    )


def test_cluster_json_records_processes(cluster: Path) -> None:
    record = json.loads((cluster / "cluster.json").read_text())
    assert len(record["metaservers"]) == 1
    assert len(record["dataservers"]) == 2
    for process in record["metaservers"] + record["dataservers"]:
        assert process["address"].startswith("127.0.0.1:")
        assert pid_alive(process["pid"])


def test_object_round_trip(cluster: Path, tmp_path: Path) -> None:
    small = tmp_path / "hello.txt"
    small.write_bytes(b"hello, store\n")
    large = tmp_path / "large.bin"
    large.write_bytes(os.urandom(5 << 20))  # larger than one 4 MiB chunk

    run_in(cluster, "bucket", "create", "photos")
    assert b"photos" in run_in(cluster, "bucket", "ls").stdout

    run_in(cluster, "put", str(small), "photos/docs/")
    run_in(cluster, "put", str(large), "photos/large.bin")
    run_in(cluster, "put", "-", "photos/stdin.txt", stdin=b"from stdin")

    listing = run_in(cluster, "ls", "photos").stdout.decode()
    assert "PRE docs/" in listing
    assert "large.bin" in listing
    assert "docs/hello.txt" not in listing
    recursive = run_in(cluster, "ls", "photos", "--recursive").stdout.decode()
    assert "docs/hello.txt" in recursive

    stat = run_in(cluster, "stat", "photos/large.bin").stdout.decode()
    assert f"size_bytes        {5 << 20}" in stat
    assert "stripes           2" in stat

    copy = tmp_path / "copy.bin"
    run_in(cluster, "get", "photos/large.bin", str(copy))
    assert copy.read_bytes() == large.read_bytes()
    assert run_in(cluster, "get", "photos/docs/hello.txt", "-").stdout == small.read_bytes()
    assert run_in(cluster, "get", "photos/stdin.txt", "-").stdout == b"from stdin"

    for key in ("docs/hello.txt", "large.bin", "stdin.txt"):
        run_in(cluster, "rm", f"photos/{key}")
    assert run_in(cluster, "ls", "photos", "-r").stdout == b""
    run_in(cluster, "bucket", "rm", "photos")


def test_missing_key_one_line_error(cluster: Path) -> None:
    run_in(cluster, "bucket", "create", "errors")
    result = run_in(cluster, "stat", "errors/missing", check=False)
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("storectl: error: ")
    assert "errors/missing" in lines[0]


def test_usage_error_exit_2(cluster: Path) -> None:
    result = run_in(cluster, "stat", "no-key-here", check=False)
    assert result.returncode == 2
    assert b"expected BUCKET/KEY" in result.stderr


def test_status_json(cluster: Path) -> None:
    status = json.loads(run_in(cluster, "cluster", "status", "--json").stdout)
    assert status["epoch"] > 0
    assert status["shard_count"] == 4
    assert [m["shards"] for m in status["metaservers"]] == ["0-3"]
    assert len(status["dataservers"]) == 2
    assert {d["state"] for d in status["dataservers"]} == {"up"}
    assert all(d["capacity_bytes"] > 0 for d in status["dataservers"])
    assert [s["shard"] for s in status["shards"]] == [0, 1, 2, 3]


def test_status_table(cluster: Path) -> None:
    text = run_in(cluster, "cluster", "status").stdout.decode()
    assert "DATASERVER" in text
    assert "OPEN UPLOADS" in text


def test_second_up_rejected(cluster: Path) -> None:
    result = storectl(
        "cluster", "up", "--dir", str(cluster), "--detach", cwd=cluster.parent, check=False
    )
    assert result.returncode == 1
    assert b"already running" in result.stderr


def small_cluster_up(
    cluster_dir: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """Run `storectl cluster up --detach` with one dataserver in `cluster_dir`."""
    command = ["cluster", "up", "--dir", str(cluster_dir), "--detach", "--dataservers", "1"]
    return storectl(*command, *args, cwd=cluster_dir.parent, check=check)


def test_down_stops_every_pid(tmp_path: Path) -> None:
    cluster_dir = tmp_path / "short-lived"
    small_cluster_up(cluster_dir, "--shards", "2", "--log-level", "warning")
    pids = recorded_pids(cluster_dir)
    try:
        assert all(pid_alive(pid) for pid in pids)
        down = storectl("cluster", "down", "--dir", str(cluster_dir), cwd=tmp_path)
        assert down.stdout.decode().count("stopped ") == len(pids)
        assert wait_gone(pids) == []
        again = storectl("cluster", "down", "--dir", str(cluster_dir), cwd=tmp_path)
        assert b"not running" in again.stdout
    finally:
        kill_leftovers(pids)


def test_down_without_cluster(tmp_path: Path) -> None:
    result = storectl("cluster", "down", "--dir", str(tmp_path / "none"), cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert b"no cluster at" in result.stderr


def test_failed_start_quotes_its_log(tmp_path: Path) -> None:
    """A server that fails to start is named with the last line of its own log."""
    result = small_cluster_up(tmp_path / "bad-gateway", "--s3", "notanaddress", check=False)
    message = result.stderr.decode()
    assert result.returncode == 1, message
    assert "s3-0 exited" in message, message
    assert "invalid address 'notanaddress'" in message, message


def test_foreground_stops_on_sigterm(tmp_path: Path) -> None:
    cluster_dir = tmp_path / "foreground"
    process = subprocess.Popen(
        [
            *storectl_argv(),
            "cluster",
            "up",
            "--dir",
            str(cluster_dir),
            "--dataservers",
            "1",
            "--shards",
            "2",
            "--log-level",
            "warning",
        ],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    pids: list[int] = []
    try:
        deadline_s = time.monotonic() + COMMAND_TIMEOUT_S
        while not (cluster_dir / "cluster.json").exists() and process.poll() is None:
            assert time.monotonic() < deadline_s, "cluster.json never appeared"
            time.sleep(0.05)
        pids = recorded_pids(cluster_dir)
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=COMMAND_TIMEOUT_S)
        assert process.returncode == 0
        assert b"stopped" in stdout
        assert wait_gone(pids) == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        kill_leftovers(pids)


def test_env_exports_drive_aws_cli(cluster: Path) -> None:
    # The README's recipe: eval the exports, then the aws CLI and storectl need no flags.
    storectl_path = storectl_argv()[0]
    script = (
        f'eval "$({shlex.quote(storectl_path)} cluster env --dir {shlex.quote(str(cluster))})"'
        f" && {shlex.quote(str(Path(storectl_path).with_name('aws')))} s3 mb s3://env-exports"
        f" && {shlex.quote(storectl_path)} bucket ls"
    )
    env = {k: v for k, v in clean_env().items() if not k.startswith("AWS_")}
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull

    result = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, timeout=COMMAND_TIMEOUT_S, check=False
    )

    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert b"make_bucket: env-exports" in result.stdout
    listed = [line.split()[-1] for line in result.stdout.splitlines()[1:]]
    assert b"env-exports" in listed


def test_env_without_cluster(tmp_path: Path) -> None:
    result = storectl("cluster", "env", "--dir", str(tmp_path / "none"), cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert b"does not exist" in result.stderr
