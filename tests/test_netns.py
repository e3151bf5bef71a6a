"""Clusters whose servers run as separate hosts in network namespaces, with capped links.

These tests need root, `ip` and `tc`; elsewhere they skip and print the reason.
Most checks run from this test process in the root namespace, whose link to the
bridge is uncapped. Loads and command-line clients also run in client hosts.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

import store
from store._pb import common_pb2 as pb
from store._pb import meta_pb2, meta_pb2_grpc
from store.loadgen import mixed_object_bytes, object_data
from store.netns import ClientHost, NetnsCluster, netns_unavailable_reason
from store.rpc import CHANNEL_OPTIONS
from store.shardmap import shard_of

from .s3_clients_support import client_env
from .support import (
    BASE_META_ARGS,
    CHUNK_SIZE_BYTES,
    MIB,
    chunk_files,
    make_data,
    wait_until,
)
from .test_compose import compose_services, service_argv
from .test_degraded import holder

UNAVAILABLE_REASON = netns_unavailable_reason()
pytestmark = pytest.mark.skipif(bool(UNAVAILABLE_REASON), reason=UNAVAILABLE_REASON)

# Low enough that two CPUs serve 2 hosts at full rate, so the links are the bottleneck.
SCALING_RATE_MBIT = 50
SCALING_OBJECT_COUNT = 4
# Two chunks each: consecutive stripes of an object go to different dataservers, so 2 hosts
# hold one half each. Single-chunk objects land where their upload id hashes, often unevenly.
SCALING_OBJECT_CHUNKS = 2
SCALING_READERS = 4
DATASERVER_TIMEOUT_S = 3.0
STATE_WAIT_S = 15.0


def start_cluster(root: Path, dataservers: int, rate_mbit: int, **options: object) -> NetnsCluster:
    cluster = NetnsCluster(root, dataservers=dataservers, rate_mbit=rate_mbit, **options)
    try:
        cluster.start()
    except BaseException:
        cluster.close()
        raise
    return cluster


@pytest.fixture(scope="module")
def compose_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsCluster]:
    """The topology of docker-compose.yml: a metaserver, four dataservers and an S3 gateway.

    Shared by the tests that do not break it. Closing it must stop every process and
    delete every namespace, client hosts included.
    """
    root = tmp_path_factory.mktemp("compose")
    cluster = start_cluster(root, 4, rate_mbit=100, meta_args=BASE_META_ARGS, s3_listen="")
    with cluster:
        yield cluster
    processes = [p.popen for p in cluster.processes if p.popen is not None]
    processes += [popen for host in cluster.clients for popen in host.processes]
    assert all(popen.poll() is not None for popen in processes), "close() left processes"
    assert not cluster.network.namespaces, f"close() left {cluster.network.namespaces}"


def test_put_get_through_namespaces(compose_cluster: NetnsCluster) -> None:
    cluster = compose_cluster
    assert cluster.meta_address.startswith("10.77."), f"meta at {cluster.meta_address}"
    data = make_data(5 * CHUNK_SIZE_BYTES + 17, seed=1)
    with store.Client(cluster.meta_address, timeout_s=30) as client:
        client.create_bucket("netns-ec", scheme="ec:2+1")
        written = client.put("netns-ec", "object", data)
        assert written.scheme == "ec:2+1", f"written with {written.scheme}"
        assert client.get("netns-ec", "object") == data, "the object read back differs"
    for process in cluster.dataservers:
        assert chunk_files(process), f"{process.name} got no chunks"


def with_address(word: str, hosts: dict[str, str]) -> str:
    """Replace the service name of a NAME:PORT word with that host's address."""
    name, colon, port = word.partition(":")
    return f"{hosts[name]}:{port}" if colon and name in hosts else word


def test_servers_run_the_compose_commands(compose_cluster: NetnsCluster) -> None:
    """Each server host runs its docker-compose.yml service's command, addresses aside."""
    cluster = compose_cluster
    services = compose_services()
    hosts = {host.name: host.address for host in cluster.network.hosts.values()}
    assert set(services) - {"storectl"} == {cluster.host_of(p).name for p in cluster.processes}
    extras = {"metaserver": cluster.meta_args, "dataserver": cluster.data_args}
    for process in cluster.processes:
        host = cluster.host_of(process)
        prefix = ["ip", "netns", "exec", host.namespace]
        assert process.args[:4] == prefix, f"{process.name} runs outside its host"
        program, *flags = process.args[4:]
        # Service names become host addresses, and the volume at /data the process's dir.
        expected = [
            str(process.directory) if word == "/data" else with_address(word, hosts)
            for word in service_argv(services[host.name])
        ]
        # The harness's own flags follow: a test's flags, and where the gateway writes
        # server.json once it listens.
        expected += extras.get(process.role, [])
        if process.role == "s3":
            expected += ["--dir", str(process.directory)]
        assert [Path(program).name, *flags] == expected, f"{host.name} runs another command"
    assert cluster.s3_endpoint == f"http://{hosts['s3']}:9000"


def aws_environment(cluster: NetnsCluster, config_dir: Path) -> dict[str, str]:
    """Return an environment for the aws CLI with the root user's keys and no user config."""
    access_key, secret_key = cluster.root_keys or ("", "")
    config = config_dir / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    config.write_text("[default]\nregion = us-east-1\n")
    env = client_env(config_dir / "home")
    env.update(
        AWS_CONFIG_FILE=str(config),
        AWS_SHARED_CREDENTIALS_FILE=str(config_dir / "credentials-none"),
        AWS_ACCESS_KEY_ID=access_key,
        AWS_SECRET_ACCESS_KEY=secret_key,
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def test_client_host_uses_sdk_cli_and_gateway(
    compose_cluster: NetnsCluster, tmp_path: Path
) -> None:
    """A client in a namespace of its own writes and reads through storectl and the aws CLI."""
    cluster = compose_cluster
    client_host = cluster.add_client_host("client1")
    assert client_host.address.startswith("10.77."), client_host.address
    meta = cluster.meta_address
    local = tmp_path / "upload.bin"
    data = make_data(3 * CHUNK_SIZE_BYTES + 11, seed=12)
    local.write_bytes(data)

    def storectl(*args: str) -> str:
        return client_host.run(["storectl", *args, "--meta", meta]).stdout

    storectl("bucket", "create", "hosts", "--scheme", "ec:2+1")
    storectl("put", str(local), "hosts/sdk.bin")
    copy = tmp_path / "sdk-copy.bin"
    storectl("get", "hosts/sdk.bin", str(copy))
    assert copy.read_bytes() == data, "storectl get in the client host returned other bytes"

    aws = ["aws", "--endpoint-url", cluster.s3_endpoint, "s3"]
    env = aws_environment(cluster, tmp_path / "aws")
    client_host.run([*aws, "cp", str(local), "s3://hosts/s3.bin"], env=env)
    listing = client_host.run([*aws, "ls", "s3://hosts/"], env=env).stdout
    assert "s3.bin" in listing, f"aws s3 ls shows {listing!r}"
    assert "sdk.bin" in listing, f"aws s3 ls shows {listing!r}"
    s3_copy = tmp_path / "s3-copy.bin"
    client_host.run([*aws, "cp", "s3://hosts/sdk.bin", str(s3_copy)], env=env)
    assert s3_copy.read_bytes() == data, "the aws CLI read other bytes through the gateway"

    # The root namespace reads what the client host wrote.
    with store.Client(meta) as client:
        assert client.get("hosts", "s3.bin") == data, "the gateway stored other bytes"

    # A client host that is cut off gets a 'cannot reach' error within its timeout.
    cluster.cut(client_host)
    started_s = time.monotonic()
    failed = client_host.run(
        ["storectl", "stat", "hosts/sdk.bin", "--meta", meta, "--timeout-s", "2"],
        check=False,
    )
    elapsed_s = time.monotonic() - started_s
    assert failed.returncode != 0, "storectl stat succeeded from a host that is cut off"
    assert f"metaserver {meta}: cannot reach" in failed.stderr, failed.stderr
    assert elapsed_s < 10, f"storectl stat took {elapsed_s:.1f}s to fail"
    cluster.heal(client_host)
    # The first connection attempts after the heal may still fail fast (the neighbour
    # entry of the metaserver failed during the cut), so a new process retries.
    healed_s = time.monotonic()
    stat = ["storectl", "stat", "hosts/sdk.bin", "--meta", meta]
    wait_until(
        lambda: client_host.run(stat, check=False).returncode == 0,
        STATE_WAIT_S,
        "storectl stat to work again from the healed client host",
        interval_s=0.5,
    )
    print(f"storectl works again {time.monotonic() - healed_s:.1f}s after the heal")

    # The cluster fixture checks that closing the cluster stops this.
    client_host.start(["sleep", "600"])


def read_throughput_bytes_s(root: Path, dataservers: int) -> float:
    """Put two-chunk objects with one copy each, then read them all from parallel clients."""
    with start_cluster(root, dataservers, SCALING_RATE_MBIT, meta_args=BASE_META_ARGS) as cluster:
        objects = {
            f"o{n}": make_data(SCALING_OBJECT_CHUNKS * CHUNK_SIZE_BYTES, seed=n)
            for n in range(SCALING_OBJECT_COUNT)
        }
        with store.Client(cluster.meta_address, timeout_s=60) as client:
            client.create_bucket("scaling", scheme="rep:1")
            for key, data in objects.items():
                client.put("scaling", key, data)
        spread = {p.name: len(chunk_files(p)) for p in cluster.dataservers}
        print(f"chunks per dataserver: {spread}")

        def read_all(reader: int) -> int:
            keys = list(objects)
            shift = reader * SCALING_OBJECT_COUNT // SCALING_READERS
            keys = keys[shift:] + keys[:shift]
            with store.Client(cluster.meta_address, timeout_s=60) as client:
                return sum(len(client.get("scaling", key)) for key in keys)

        start_s = time.monotonic()
        with ThreadPoolExecutor(SCALING_READERS) as pool:
            total_bytes = sum(pool.map(read_all, range(SCALING_READERS)))
        elapsed_s = time.monotonic() - start_s
    assert total_bytes == SCALING_READERS * sum(len(data) for data in objects.values())
    return total_bytes / elapsed_s


def test_read_scaling_two_hosts(tmp_path: Path) -> None:
    one_bytes_s = read_throughput_bytes_s(tmp_path / "one", 1)
    two_bytes_s = read_throughput_bytes_s(tmp_path / "two", 2)
    cap_bytes_s = SCALING_RATE_MBIT * 1e6 / 8
    print(
        f"read throughput at {SCALING_RATE_MBIT} Mbit/s per host: "
        f"1 host {one_bytes_s / MIB:.1f} MiB/s, 2 hosts {two_bytes_s / MIB:.1f} MiB/s, "
        f"ratio {two_bytes_s / one_bytes_s:.2f}"
    )
    assert one_bytes_s <= 1.1 * cap_bytes_s, "one host read faster than its cap; tc is not working"
    assert two_bytes_s >= 1.3 * one_bytes_s, "2 dataserver hosts are not 1.3x faster than 1"


def wait_state(client: store.Client, server_id: str, state: int, timeout_s: float) -> float:
    """Wait until the map shows dataserver `server_id` in `state`; return the seconds it took."""
    start_s = time.monotonic()
    while time.monotonic() - start_s < timeout_s:
        states = {d.id: d.state for d in client.cluster_map().dataservers}
        if states.get(server_id) == state:
            return time.monotonic() - start_s
        time.sleep(0.1)
    name = pb.DataserverState.Name(state)  # type: ignore[arg-type]
    raise AssertionError(f"{server_id} is not {name} after {timeout_s}s: {states}")


def test_cut_dataserver_mid_read(tmp_path: Path) -> None:
    meta_args = [
        *BASE_META_ARGS,
        "--dataserver-suspect-s",
        str(DATASERVER_TIMEOUT_S / 2),
        "--dataserver-timeout-s",
        str(DATASERVER_TIMEOUT_S),
    ]
    data_args = ["--heartbeat-interval-s", "0.2"]
    options = {"meta_args": meta_args, "data_args": data_args}
    with start_cluster(tmp_path, 3, rate_mbit=100, **options) as cluster:
        data = make_data(8 * CHUNK_SIZE_BYTES, seed=3)
        # A short chunk timeout lets the read give up on the cut host and decode from parity.
        with store.Client(cluster.meta_address, timeout_s=30, chunk_timeout_s=1.0) as client:
            client.create_bucket("netns-cut", scheme="ec:2+1")
            version = client.put("netns-cut", "object", data).version_id
            # The host with data chunk 0 of the last stripe, so the rest of the read needs it.
            victim, _ = holder(cluster, version, 3, 0)

            with client.open("netns-cut", "object") as reader:
                head = reader.read(CHUNK_SIZE_BYTES)
                cluster.cut(victim)
                start_s = time.monotonic()
                rest = reader.read()
                degraded_s = time.monotonic() - start_s
            print(f"rest of the read with {victim.name} cut off took {degraded_s:.2f}s")
            assert head + rest == data, "the read across the cut returned other bytes"
            assert victim.alive(), "the cut dataserver process exited"
            down_s = wait_state(client, victim.server_id, pb.DATASERVER_STATE_DOWN, STATE_WAIT_S)
            print(f"{victim.name} down {down_s:.2f}s after the cut")
            assert client.get("netns-cut", "object") == data, "the degraded get differs"

            cluster.heal(victim)
            up_s = wait_state(client, victim.server_id, pb.DATASERVER_STATE_UP, STATE_WAIT_S)
            print(f"{victim.name} up {up_s:.2f}s after the heal")
            assert client.get("netns-cut", "object") == data, "the get after healing differs"


def stat_when_reachable(client: store.Client, key: str, timeout_s: float) -> store.ObjectInfo:
    """Stat `key` in bucket netns-cut, retrying while the metaserver is unreachable."""
    deadline_s = time.monotonic() + STATE_WAIT_S
    while True:
        try:
            return client.stat("netns-cut", key, timeout_s=timeout_s)
        except store.Unavailable:
            if time.monotonic() > deadline_s:
                raise
            time.sleep(0.2)


def test_metaserver_cut_gives_unavailable_then_recovers(tmp_path: Path) -> None:
    """A client cut off from the metaserver gets Unavailable within its timeout, then recovers."""
    timeout_s = 3.0
    with (
        start_cluster(tmp_path, 3, rate_mbit=100, meta_args=BASE_META_ARGS) as cluster,
        store.Client(cluster.meta_address, timeout_s=30) as client,
    ):
        client.create_bucket("netns-cut", scheme="ec:2+1")
        data = make_data(2 * CHUNK_SIZE_BYTES, seed=3)
        client.put("netns-cut", "object", data)

        metaserver = cluster.metaservers[0]
        cluster.cut(metaserver)
        started_s = time.monotonic()
        with pytest.raises(store.Unavailable) as caught:
            client.stat("netns-cut", "object", timeout_s=timeout_s)
        elapsed_s = time.monotonic() - started_s
        assert elapsed_s < timeout_s + 2.0, f"the stat took {elapsed_s:.1f}s, over its timeout"
        assert cluster.meta_address in str(caught.value), (
            f"the error does not name the metaserver: {caught.value}"
        )

        cluster.heal(metaserver)
        info = stat_when_reachable(client, "object", timeout_s)
        assert info.size_bytes == len(data), "the stat after healing reports another size"
        assert client.get("netns-cut", "object") == data, "the read after healing differs"


# Short failure timings for the partition test, as in test_repair.py, with room for a
# loaded machine. A dataserver is suspect after 0.6 s of silence, down after 1.5 s and
# out 1 s later. Repair and GC passes run every 0.3 s, and GC keeps replaced chunks 1 s.
PARTITION_META_ARGS = [
    *BASE_META_ARGS,
    "--dataserver-suspect-s",
    "0.6",
    "--dataserver-timeout-s",
    "1.5",
    "--dataserver-out-s",
    "1",
    "--repair-interval-s",
    "0.3",
    "--gc-interval-s",
    "0.3",
    "--gc-delay-s",
    "1",
    # Chunk writes that land after the partition heals are deleted by a second pass.
    "--upload-settle-s",
    "5",
]
PARTITION_DATA_ARGS = ["--heartbeat-interval-s", "0.2"]
PARTITION_BUCKET = "partition"
LOAD_SEED = 77
LOAD_OBJECT_BYTES = CHUNK_SIZE_BYTES + 1
REPAIR_WAIT_S = 40.0


def object_layouts(cluster: NetnsCluster, bucket: str) -> dict[str, pb.Layout]:
    """Return the layout of every object in `bucket`, by key, from the metaserver's records."""
    layouts = {}
    with (
        store.Client(cluster.meta_address) as client,
        grpc.insecure_channel(cluster.meta_address, options=CHANNEL_OPTIONS) as channel,
    ):
        stub = meta_pb2_grpc.MetaServiceStub(channel)
        for page in client.iter_pages(bucket):
            for entry in page.entries:
                key = entry.key.encode()
                request = meta_pb2.StatObjectRequest(
                    bucket=bucket, key=key, shard=shard_of(bucket, key, cluster.shards)
                )
                layouts[entry.key] = stub.StatObject(request, timeout=5).layout
    return layouts


def files_by_chunk(cluster: NetnsCluster) -> dict[str, list[str]]:
    """Return the dataservers (by id) holding a file of each chunk id (hex) under chunks/."""
    holders: dict[str, list[str]] = {}
    for process in cluster.dataservers:
        for path in chunk_files(process):
            holders.setdefault(path.name, []).append(process.server_id)
    return holders


def layout_problems(
    cluster: NetnsCluster, bucket: str, up: set[str], exact: bool
) -> tuple[list[str], int]:
    """Check that every chunk the layouts name is on one named, up dataserver that has its file.

    With `exact`, every chunk file on every dataserver must also be one that a layout
    names on that dataserver: no stale or leftover copies. Returns the problems and the
    number of chunks the layouts name.
    """
    holders = files_by_chunk(cluster)
    named: dict[str, str] = {}
    problems = []
    for key, layout in object_layouts(cluster, bucket).items():
        for stripe in layout.stripes:
            for chunk in stripe.chunks:
                name = chunk.chunk_id.hex()
                if name in named:
                    problems.append(f"{key}: chunk {name} is named twice")
                named[name] = chunk.target
                if chunk.target not in up:
                    problems.append(f"{key}: chunk {name} is on {chunk.target}, which is not up")
                if chunk.target not in holders.get(name, []):
                    problems.append(f"{key}: chunk {name} has no file on {chunk.target}")
    if exact:
        for name, servers in sorted(holders.items()):
            stray = [server for server in servers if named.get(name) != server]
            if stray:
                problems.append(f"chunk file {name} on {stray} is named by no layout there")
    return problems, len(named)


def up_dataservers(client: store.Client) -> set[str]:
    cluster_map = client.cluster_map()
    return {d.id for d in cluster_map.dataservers if d.state == pb.DATASERVER_STATE_UP}


def listed_keys(client: store.Client, bucket: str, prefix: str) -> list[str]:
    return [e.key for page in client.iter_pages(bucket, prefix=prefix) for e in page.entries]


def start_load(cluster: NetnsCluster, host: ClientHost) -> subprocess.Popen[str]:
    """Start `python -m store.loadgen mixed` in `host`; SIGTERM stops it and it prints a report."""
    argv = host.python("-m", "store.loadgen", "mixed", "--meta", cluster.meta_address)
    argv += ["--bucket", PARTITION_BUCKET, "--seed", str(LOAD_SEED)]
    argv += ["--object-bytes", str(LOAD_OBJECT_BYTES), "--chunk-timeout-s", "1"]
    argv += ["--timeout-s", "30", "--pause-s", "0.1"]
    return host.start(argv)


def stop_load(host: ClientHost, load: subprocess.Popen[str]) -> dict[str, object]:
    load.terminate()
    stdout, _ = load.communicate(timeout=60)
    assert load.returncode == 0, f"the load exited with {load.returncode}: {host.log_path(load)}"
    report: dict[str, object] = json.loads(stdout.strip().splitlines()[-1])
    return report


def test_partitioned_dataserver_is_repaired_and_returns(tmp_path: Path) -> None:
    """A dataserver host cut off mid-load is a dead host; healed, it counts no chunk twice.

    A client host writes and reads objects throughout. While the host is cut off,
    reads decode around it, the metaserver marks it down and then out, and repair
    rebuilds its chunks elsewhere. Once the link is back, the host is up again, its
    stale chunks are deleted, every layout chunk has exactly one file, on the
    dataserver its layout names, and the status chunk counts add up to the layouts.
    """
    options = {"meta_args": PARTITION_META_ARGS, "data_args": PARTITION_DATA_ARGS}
    with (
        start_cluster(tmp_path, 4, rate_mbit=200, **options) as cluster,
        store.Client(cluster.meta_address, timeout_s=30, chunk_timeout_s=1.0) as client,
    ):
        client.create_bucket(PARTITION_BUCKET, scheme="ec:2+1")
        base = {
            f"base-{i}": make_data(3 * CHUNK_SIZE_BYTES + 1000 * i, seed=500 + i) for i in range(4)
        }
        for key, data in base.items():
            client.put(PARTITION_BUCKET, key, data)
        victim, _ = holder(cluster, client.stat(PARTITION_BUCKET, "base-0").version_id, 0, 0)
        loader = cluster.add_client_host("loader")
        load = start_load(cluster, loader)
        wait_until(
            lambda: len(listed_keys(client, PARTITION_BUCKET, "load-")) >= 3,
            STATE_WAIT_S,
            "the load to write 3 objects",
        )

        written_at_cut = len(listed_keys(client, PARTITION_BUCKET, "load-"))
        cluster.cut(victim)
        cut_s = time.monotonic()
        for key, data in base.items():
            assert client.get(PARTITION_BUCKET, key) == data, f"degraded read of {key} differs"
        wait_state(client, victim.server_id, pb.DATASERVER_STATE_OUT, REPAIR_WAIT_S)
        print(f"{victim.name} out {time.monotonic() - cut_s:.1f}s after the cut")

        def repaired() -> bool:
            up = up_dataservers(client) - {victim.server_id}
            return not layout_problems(cluster, PARTITION_BUCKET, up, exact=False)[0]

        wait_until(
            repaired,
            REPAIR_WAIT_S,
            f"repair to rebuild every chunk of {victim.name} on the other dataservers",
            state=lambda: layout_problems(
                cluster, PARTITION_BUCKET, up_dataservers(client), exact=False
            )[0][:5],
        )
        print(
            f"every layout chunk on an up dataserver {time.monotonic() - cut_s:.1f}s after the cut"
        )
        assert victim.alive(), f"{victim.name} exited while it was cut off"
        assert load.poll() is None, f"the load stopped during the cut: {loader.log_path(load)}"
        written_at_heal = len(listed_keys(client, PARTITION_BUCKET, "load-"))
        assert written_at_heal > written_at_cut, "the load wrote nothing while the host was cut off"

        # The victim's remaining chunks are stale: repair named other dataservers instead.
        stale = {path.name for path in chunk_files(victim)}
        assert stale, f"{victim.name} holds no chunk files to be collected"
        cluster.heal(victim)
        heal_s = time.monotonic()
        wait_state(client, victim.server_id, pb.DATASERVER_STATE_UP, STATE_WAIT_S)
        print(f"{victim.name} up {time.monotonic() - heal_s:.1f}s after the heal")
        wait_until(
            lambda: len(listed_keys(client, PARTITION_BUCKET, "load-")) >= written_at_heal + 3,
            STATE_WAIT_S,
            "the load to write 3 more objects after the heal",
        )
        report = stop_load(loader, load)
        assert report["errors"] == [], f"the load failed: {report['errors']}"
        acknowledged = report["acknowledged"]
        assert isinstance(acknowledged, dict) and len(acknowledged) >= 6, report

        # The victim's stale chunks are deleted. Every dataserver stores one file per chunk
        # that a layout names on it, and nothing else. Rebalancing may move chunks back to
        # the victim under new chunk ids.
        def settled() -> list[str]:
            up = up_dataservers(client)
            problems, _ = layout_problems(cluster, PARTITION_BUCKET, up, exact=True)
            left = stale & {path.name for path in chunk_files(victim)}
            return problems + [f"stale chunk {name} left on {victim.name}" for name in left]

        wait_until(
            lambda: not settled(),
            REPAIR_WAIT_S,
            "one file per layout chunk, on the dataserver its layout names",
            state=lambda: settled()[:5],
        )
        print(f"{len(stale)} stale chunks deleted {time.monotonic() - heal_s:.1f}s after the heal")
        _, layout_chunks = layout_problems(cluster, PARTITION_BUCKET, set(), exact=False)

        # The status counts what the layouts name, each chunk once (heartbeats update it).
        def status_chunks() -> dict[str, int]:
            output = loader.run(
                ["storectl", "cluster", "status", "--json", "--meta", cluster.meta_address]
            ).stdout
            return {d["id"]: d["chunk_count"] for d in json.loads(output)["dataservers"]}

        wait_until(
            lambda: sum(status_chunks().values()) == layout_chunks,
            STATE_WAIT_S,
            f"the status chunk counts to add up to the {layout_chunks} chunks of the layouts",
            state=status_chunks,
        )

        expected = {**base}
        for key, size in acknowledged.items():
            expected[key] = object_data(LOAD_SEED, key, size)
            assert size == mixed_object_bytes(LOAD_OBJECT_BYTES, int(key.split("-")[1]))
        assert set(listed_keys(client, PARTITION_BUCKET, "")) >= set(expected), "lost writes"
        for key, data in expected.items():
            assert client.get(PARTITION_BUCKET, key) == data, f"{key} differs after the heal"
