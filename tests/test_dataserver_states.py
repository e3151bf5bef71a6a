"""Failure detection on real processes: a stopped dataserver, a killed one, storectl node ls."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import store
from store._pb import common_pb2 as pb
from store.clustermap import state_name

from .support import CHUNK_SIZE_BYTES, ClusterFactory, chunk_files, make_data, wait_until
from .test_cli import COMMAND_TIMEOUT_S, clean_env, storectl_argv

# Heartbeats every 0.1 s keep live dataservers well inside the suspect times below.
DATA_ARGS = ["--heartbeat-interval-s", "0.1"]
STOP_S = 2.0
# The bound of the read loop while a dataserver is stopped.
MAX_READS = 100


def states_of(client: store.Client) -> dict[str, str]:
    """Return each dataserver's state name from a freshly fetched cluster map."""
    return {info.id: state_name(info.state) for info in client.cluster_map().dataservers}


def chunk_count_of(client: store.Client, dataserver_id: str) -> int:
    """Return the chunk count of a dataserver's last heartbeat."""
    for info in client.cluster_map().dataservers:
        if info.id == dataserver_id:
            return info.chunk_count
    raise AssertionError(f"dataserver {dataserver_id} is not in the cluster map")


def record_state(seen: list[str], state: str) -> None:
    """Append `state` to `seen` unless it repeats the last one."""
    if not seen or seen[-1] != state:
        seen.append(state)


def test_stopped_dataserver_only_suspect(cluster_factory: ClusterFactory) -> None:
    """SIGSTOP for 2 s makes a dataserver suspect, never down, and reads keep working."""
    meta_args = [
        "--default-scheme",
        "rep:2",
        "--dataserver-suspect-s",
        "0.5",
        "--dataserver-timeout-s",
        "4",
    ]
    cluster = cluster_factory(dataservers=3, meta_args=meta_args, data_args=DATA_ARGS)
    victim = cluster.dataservers[0]
    # A short chunk timeout lets a read give up on the stopped copy and use the other one.
    with store.Client(cluster.meta_address, chunk_timeout_s=1.0) as client:
        client.create_bucket("stops")
        objects = {f"object-{n}": make_data(3 * CHUNK_SIZE_BYTES, seed=900 + n) for n in range(3)}
        for key, data in objects.items():
            client.put("stops", key, data)
        keys = list(objects)
        chunks_before = len(chunk_files(victim))
        assert chunks_before > 0, "the victim got no chunks, so the test proves nothing"

        seen: list[str] = []
        reads = 0
        victim.signal(signal.SIGSTOP)
        try:
            started_s = time.monotonic()
            while time.monotonic() - started_s < STOP_S and reads < MAX_READS:
                states = states_of(client)
                record_state(seen, states[victim.server_id])
                others = {k: v for k, v in states.items() if k != victim.server_id}
                assert "down" not in others.values(), f"a live dataserver went down: {others}"
                key = keys[reads % len(keys)]
                assert client.get("stops", key, timeout_s=10) == objects[key], f"{key} differs"
                reads += 1
                if seen[-1] == "suspect" and "during" not in objects:
                    objects["during"] = make_data(4 * CHUNK_SIZE_BYTES, seed=910)
                    client.put("stops", "during", objects["during"], timeout_s=10)
        finally:
            victim.signal(signal.SIGCONT)

        assert "suspect" in seen, f"the stopped dataserver was never suspect: {seen}"
        assert "down" not in seen, f"a dataserver stopped for {STOP_S}s went down: {seen}"
        assert "during" in objects, "no put ran while the victim was suspect"
        wait_until(
            lambda: states_of(client)[victim.server_id] == "up",
            timeout_s=5,
            description=f"{victim.name} up again after SIGCONT",
            state=lambda: states_of(client),
        )
        assert len(chunk_files(victim)) == chunks_before, "a suspect dataserver got new chunks"
        for key, data in objects.items():
            assert client.get("stops", key) == data, f"{key} differs after SIGCONT"


def test_killed_dataserver_goes_out(cluster_factory: ClusterFactory) -> None:
    """A killed dataserver goes suspect, down and out, and a restart brings it back up."""
    meta_args = [
        "--dataserver-suspect-s",
        "0.3",
        "--dataserver-timeout-s",
        "1",
        "--dataserver-out-s",
        "1",
    ]
    cluster = cluster_factory(dataservers=3, meta_args=meta_args, data_args=DATA_ARGS)
    victim = cluster.dataservers[0]
    with store.Client(cluster.meta_address) as client:
        client.create_bucket("kills")
        data = make_data(6 * CHUNK_SIZE_BYTES, seed=920)
        client.put("kills", "object", data)
        wait_until(
            lambda: chunk_count_of(client, victim.server_id) > 0,
            timeout_s=5,
            description=f"a heartbeat of {victim.name} with its chunk count",
        )
        epoch_before = client.cluster_map().epoch

        victim.kill()
        seen: list[str] = []

        def is_out() -> bool:
            record_state(seen, states_of(client)[victim.server_id])
            return seen[-1] == "out"

        wait_until(is_out, timeout_s=10, description=f"{victim.name} out", interval_s=0.05)
        assert seen[seen.index("suspect") :] == ["suspect", "down", "out"], seen
        assert client.cluster_map().epoch >= epoch_before + 3, "a state change kept the epoch"

        nodes = {node["id"]: node for node in node_ls_json(cluster.meta_address)}
        assert set(nodes) == {process.server_id for process in cluster.dataservers}
        out = nodes[victim.server_id]
        assert out["state"] == "out"
        assert out["address"] == victim.address
        assert out["heartbeat_age_s"] >= 2.0, f"out after silence over 2 s: {out}"
        assert out["chunk_count"] > 0, f"the victim held chunks before the kill: {out}"
        for process in cluster.dataservers[1:]:
            node = nodes[process.server_id]
            assert node["state"] == "up", node
            assert node["heartbeat_age_s"] < 1.0, node
            assert node["capacity_bytes"] >= node["free_bytes"] > 0, node
            assert "domain" in node, node
            assert "used_bytes" in node, node

        cluster.restart(victim)
        assert states_of(client)[victim.server_id] == "up"
        assert client.get("kills", "object") == data, "the object read back differs"


def test_node_ls_table(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(dataservers=2)
    text = storectl("node", "ls", "--meta", cluster.meta_address)
    assert "STATE" in text, text
    assert "SINCE HEARTBEAT" in text, text
    assert "dataservers: 2 up, 0 suspect, 0 down, 0 out; cluster size 2" in text, text
    for process in cluster.dataservers:
        assert process.server_id in text, text

    status = json.loads(storectl("cluster", "status", "--meta", cluster.meta_address, "--json"))
    assert status["dataserver_states"] == {"up": 2, "suspect": 0, "down": 0, "out": 0}
    assert status["cluster_size"] == 2
    assert all(d["heartbeat_age_s"] < 5.0 for d in status["dataservers"]), status


def node_ls_json(meta_address: str) -> list[dict[str, object]]:
    nodes: list[dict[str, object]] = json.loads(
        storectl("node", "ls", "--json", "--meta", meta_address)
    )
    return nodes


def storectl(*args: str) -> str:
    """Run storectl and return its stdout, failing the test on a non-zero exit."""
    result = subprocess.run(
        [*storectl_argv(), *args],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, f"storectl {' '.join(args)}: {result.stderr}"
    return result.stdout


assert pb.DATASERVER_STATE_OUT == 4, "the proto renumbered a stored enum value"
