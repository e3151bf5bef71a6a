"""Dataserver scrub and StatChunks on real processes.

Chunk files are corrupted on disk while the dataservers run. The scrub must
find them and move them to quarantine/, and the object must stay readable
through degraded reads. A dataserver killed in the middle of a pass resumes it from
the position in scrub.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

import store
from store._pb import data_pb2, data_pb2_grpc
from store.checksum import crc32c
from store.cluster import LocalCluster, ManagedProcess
from store.layout import CHUNK_ID_BYTES, chunk_id
from store.rpc import CHANNEL_OPTIONS
from store.status import count_states, dataservers_json, format_dataservers

from .support import (
    CHUNK_SIZE_BYTES,
    KIB,
    MIB,
    ClusterFactory,
    chunk_data_offset,
    chunk_files,
    chunk_header_range,
    flip_byte,
    make_data,
    upload_chunk_files,
    wait_until,
)
from .test_degraded import holder

RPC_TIMEOUT_S = 10.0
FAST_SCRUB_ARGS = ["--scrub-bandwidth-bytes-s", str(256 * MIB), "--scrub-interval-s", "0.3"]


def quarantined(process: ManagedProcess) -> list[str]:
    """Return the names of the files in a dataserver's quarantine/ directory."""
    directory = process.directory / "quarantine"
    return sorted(path.name for path in directory.iterdir()) if directory.is_dir() else []


def wait_quarantined(process: ManagedProcess, name: str) -> None:
    wait_until(
        lambda: name in quarantined(process),
        10.0,
        f"scrub to move {name} to quarantine/ on {process.name}",
        state=lambda: quarantined(process),
    )


def scrub_state(process: ManagedProcess) -> dict[str, Any]:
    path = process.directory / "scrub.json"
    return json.loads(path.read_text()) if path.exists() else {}


def dataserver_info(process: ManagedProcess) -> Any:
    with grpc.insecure_channel(process.address, options=CHANNEL_OPTIONS) as channel:
        stub = data_pb2_grpc.DataServiceStub(channel)
        return stub.GetStatus(data_pb2.DataserverStatusRequest(), timeout=RPC_TIMEOUT_S)


def stat_chunks(process: ManagedProcess, chunk_ids: list[bytes]) -> Any:
    with grpc.insecure_channel(process.address, options=CHANNEL_OPTIONS) as channel:
        stub = data_pb2_grpc.DataServiceStub(channel)
        request = data_pb2.StatChunksRequest(chunk_ids=chunk_ids)
        return stub.StatChunks(request, timeout=RPC_TIMEOUT_S)


def log_text(process: ManagedProcess) -> str:
    return process.log_path.read_text(errors="replace")


def set_flag(process: ManagedProcess, flag: str, value: str) -> None:
    """Change the value of a flag in the command line that the next restart uses."""
    index = process.args.index(flag)
    process.args[index + 1] = value


def test_scrub_quarantines_corrupt_chunks(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(dataservers=3, data_args=FAST_SCRUB_ARGS)
    with store.Client(cluster.meta_address) as client:
        client.create_bucket("scrubbed", scheme="ec:2+1")
        data = make_data(4 * CHUNK_SIZE_BYTES + 300 * KIB, seed=41)
        version_id = client.put("scrubbed", "obj", data).version_id

        # A flipped data byte in stripe 0 and a flipped header byte in stripe 1, so each
        # stripe loses one chunk and still decodes. The header byte sits in the block
        # CRC list, so the header still parses and names its object.
        data_holder, data_path = holder(cluster, version_id, 0, 0)
        flip_byte(data_path, chunk_data_offset(data_path) + 70_000)
        header_holder, header_path = holder(cluster, version_id, 1, 1)
        _start, header_end = chunk_header_range(header_path)
        flip_byte(header_path, header_end - 20)

        for process, path in [(data_holder, data_path), (header_holder, header_path)]:
            wait_quarantined(process, path.name)
            assert not path.exists(), f"{path} is still under chunks/ after its quarantine"

            def quarantine_line(process: ManagedProcess = process, path: Path = path) -> str:
                lines = log_text(process).splitlines()
                return next(
                    (line for line in lines if f"quarantined chunk={path.name}" in line), ""
                )

            # The scrub logs the quarantine just after it moves the file.
            wait_until(lambda: bool(quarantine_line()), 10.0, f"the log line of {path.name}")
            warning = quarantine_line()
            assert "WARNING" in warning, warning
            assert "bucket=scrubbed key=obj" in warning, warning

        assert client.get("scrubbed", "obj") == data, "degraded read returned other bytes"
        assert dataserver_info(data_holder).corrupt_chunks >= 1
        assert dataserver_info(header_holder).corrupt_chunks >= 1

        def corrupt_in_map() -> int:
            return sum(info.corrupt_chunks for info in client.cluster_map().dataservers)

        wait_until(lambda: corrupt_in_map() >= 2, 10.0, "heartbeats to carry corrupt_chunks")

    # The report reaches the metaserver, or stays in scrub.json while the metaserver
    # does not implement ReportBadChunks yet.
    for process, path in [(data_holder, data_path), (header_holder, header_path)]:
        pending = [item["chunk_id"] for item in scrub_state(process).get("pending_reports", [])]
        text = log_text(process)
        assert path.name in pending or "reported bad chunks" in text, (pending, text)


def test_scrub_leaves_good_chunks(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(dataservers=3, data_args=FAST_SCRUB_ARGS)
    with store.Client(cluster.meta_address) as client:
        client.create_bucket("clean", scheme="ec:2+1")
        data = make_data(3 * CHUNK_SIZE_BYTES, seed=42)
        client.put("clean", "obj", data)
        files = {process.name: chunk_files(process) for process in cluster.dataservers}
        started_unix_ms = int(time.time() * 1000)

        def passes_done() -> bool:
            return all(
                info.last_scrub_unix_ms > started_unix_ms
                for info in client.cluster_map().dataservers
            )

        wait_until(passes_done, 10.0, "a full scrub pass after the write on every dataserver")
        cluster_map = client.cluster_map()
        table = format_dataservers(dataservers_json(cluster_map), count_states(cluster_map))
        assert "LAST SCRUB" in table, table
        assert "never" not in table, table
        for process in cluster.dataservers:
            assert chunk_files(process) == files[process.name], f"{process.name} lost chunks"
            assert quarantined(process) == [], f"{process.name} quarantined good chunks"
            info = dataserver_info(process)
            assert info.corrupt_chunks == 0, info
            assert info.scrubbed_chunks >= len(files[process.name]), info
        assert client.get("clean", "obj") == data


def test_stat_chunks(cluster: LocalCluster, client: store.Client, bucket: str) -> None:
    data = make_data(2 * CHUNK_SIZE_BYTES + 1000, seed=43)
    version_id = client.put(bucket, "stat", data).version_id
    missing = chunk_id(version_id, 999)
    for process, paths in zip(
        cluster.dataservers, upload_chunk_files(cluster, version_id).values(), strict=True
    ):
        ids = [bytes.fromhex(path.name) for path in paths]
        reply = stat_chunks(process, [missing, *ids])
        assert [stat.chunk_id for stat in reply.chunks] == [missing, *ids]
        assert not reply.chunks[0].exists, reply.chunks[0]
        for stat, path in zip(reply.chunks[1:], paths, strict=True):
            content = path.read_bytes()[chunk_data_offset(path) :]
            assert stat.exists, f"{path.name} on {process.name}"
            assert stat.length_bytes == len(content), f"{path.name}: {stat}"
            assert stat.crc32c == crc32c(content), f"{path.name}: {stat}"


def test_stat_chunks_invalid(cluster: LocalCluster) -> None:
    process = cluster.dataservers[0]
    assert list(stat_chunks(process, []).chunks) == []

    with pytest.raises(grpc.RpcError) as short:
        stat_chunks(process, [bytes(CHUNK_ID_BYTES), b"\x01\x02\x03"])
    assert short.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "chunk id 1 (010203) has 3 bytes" in str(short.value.details())

    with pytest.raises(grpc.RpcError) as many:
        stat_chunks(process, [bytes(CHUNK_ID_BYTES)] * 10_001)
    assert many.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "10001 chunk ids" in str(many.value.details())


def test_scrub_resumes_after_kill(cluster_factory: ClusterFactory) -> None:
    object_count = 48
    bandwidth_bytes_s = 2 * MIB
    cluster = cluster_factory(
        dataservers=1,
        data_args=[
            "--scrub-interval-s",
            "0",
            "--scrub-bandwidth-bytes-s",
            str(bandwidth_bytes_s),
        ],
    )
    process = cluster.dataservers[0]
    with store.Client(cluster.meta_address) as client:
        client.create_bucket("resume", scheme="rep:1")
        for index in range(object_count):
            client.put("resume", f"obj-{index}", make_data(128 * KIB, seed=index))
    assert len(chunk_files(process)) == object_count

    # Enable scrub with one pass an hour, so the pass that starts now is the only one.
    process.stop()
    set_flag(process, "--scrub-interval-s", "3600")
    cluster.restart(process)
    wait_until(
        lambda: scrub_state(process).get("pass_chunks", 0) >= 5,
        10.0,
        "scrub.json to record 5 chunks of the pass",
        interval_s=0.02,
    )
    process.kill()
    saved = scrub_state(process)
    assert saved["pass_started_unix_ms"] > 0, saved
    assert saved["pass_chunks"] < object_count, f"the pass ended before the kill: {saved}"

    cluster.restart(process)
    resumed = (
        f"scrub pass resumed started_unix_ms={saved['pass_started_unix_ms']} "
        f"after_chunk={saved['position']} chunks_done={saved['pass_chunks']}"
    )
    finished = (
        f"scrub pass finished started_unix_ms={saved['pass_started_unix_ms']} "
        f"chunks={object_count} "
    )
    wait_until(lambda: finished in log_text(process), 15.0, f"log line {finished!r}")
    assert resumed in log_text(process), f"no log line {resumed!r}"
    # The pass logs its end before it saves the cleared state to scrub.json.
    wait_until(
        lambda: scrub_state(process).get("pass_started_unix_ms", 0) == 0,
        10.0,
        "scrub.json to record the end of the pass",
    )
    state = scrub_state(process)
    assert state["pass_started_unix_ms"] == 0, state
    assert state["scrubbed_chunks"] == object_count, state
    assert state["corrupt_chunks"] == 0, state


def test_scrub_throttle(cluster_factory: ClusterFactory) -> None:
    bandwidth_bytes_s = 2 * MIB
    cluster = cluster_factory(
        dataservers=1,
        data_args=[
            "--scrub-interval-s",
            "0.2",
            "--scrub-bandwidth-bytes-s",
            str(bandwidth_bytes_s),
        ],
    )
    process = cluster.dataservers[0]
    with store.Client(cluster.meta_address) as client:
        client.create_bucket("throttle", scheme="rep:1")
        client.put("throttle", "obj", make_data(4 * CHUNK_SIZE_BYTES, seed=44))

    # Passes repeat every 0.2 s; unthrottled, each would take milliseconds.
    samples: list[tuple[float, int]] = []
    deadline_s = time.monotonic() + 3.0
    while time.monotonic() < deadline_s:
        samples.append((time.monotonic(), dataserver_info(process).scrubbed_bytes))
        time.sleep(0.25)
    first_s, first_bytes = samples[0]
    last_s, last_bytes = samples[-1]
    elapsed_s = last_s - first_s
    scrubbed_bytes = last_bytes - first_bytes
    # The count grows one whole chunk at a time and the throttle lets one 1 MiB piece
    # through ahead of the rate, so allow two chunks beyond 125% of the rate.
    bound_bytes = 1.25 * bandwidth_bytes_s * elapsed_s + 2 * CHUNK_SIZE_BYTES
    assert scrubbed_bytes <= bound_bytes, (
        f"scrubbed {scrubbed_bytes} bytes in {elapsed_s:.2f} s at a limit of "
        f"{bandwidth_bytes_s} bytes/s; samples {samples}"
    )
    assert scrubbed_bytes >= 0.3 * bandwidth_bytes_s * elapsed_s, (
        f"scrub read only {scrubbed_bytes} bytes in {elapsed_s:.2f} s; samples {samples}"
    )
