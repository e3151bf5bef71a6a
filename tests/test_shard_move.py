"""Moving metadata shards between metaserver processes while clients keep working."""

from __future__ import annotations

import asyncio
import random
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

import store
from store._pb import meta_pb2, meta_pb2_grpc
from store.cluster import LocalCluster
from store.shardmap import shard_of

from .support import SHARD_COUNT as SHARDS
from .support import ClusterFactory, make_data, wait_until

LOAD_WRITERS = 8
# Every third object is big enough for dataserver chunks, the rest are inline.
CHUNKED_OBJECT_BYTES = 300_000
HELD_PATTERN = re.compile(r"shard=\d+ retired; (\d+) held operations")


def start_two_metaservers(cluster_factory: ClusterFactory) -> LocalCluster:
    return cluster_factory(dataservers=3, metaservers=2)


def owners(client: store.Client) -> dict[int, str]:
    return {shard: m.id for m in client.cluster_map().metaservers for shard in m.shards}


def keys_in_shard(bucket: str, shard: int, count: int, label: str) -> list[str]:
    found: list[str] = []
    number = 0
    while len(found) < count:
        key = f"{label}/{number:06d}"
        if shard_of(bucket, key.encode(), SHARDS) == shard:
            found.append(key)
        number += 1
    return found


def held_operations(cluster: LocalCluster) -> int:
    total = 0
    for process in cluster.metaservers:
        total += sum(int(n) for n in HELD_PATTERN.findall(process.log_path.read_text()))
    return total


def test_move_shards_under_load(cluster_factory: ClusterFactory) -> None:
    """Writes, reads and listings run on while shards move both ways; nothing is lost."""
    cluster = start_two_metaservers(cluster_factory)
    bucket = "moving"
    with store.Client(cluster.meta_address) as client:
        client.create_bucket(bucket, scheme="ec:2+1")
        before = owners(client)
        epoch_before = client.cluster_map().epoch
    primary_id, secondary_id = (m.server_id for m in cluster.metaservers)
    moves = [(0, secondary_id), (1, secondary_id), (9, primary_id), (0, primary_id)]
    acknowledged: dict[str, bytes] = {}
    failures: list[str] = []

    async def writer(index: int, keys: list[str], stop: asyncio.Event, aclient) -> None:  # type: ignore[no-untyped-def]
        for number, key in enumerate(keys):
            if stop.is_set():
                return
            size = CHUNKED_OBJECT_BYTES if number % 3 == 0 else 100 + number
            data = make_data(size, seed=index * 10_000 + number)
            try:
                await aclient.put(bucket, key, data)
            except store.StoreError as error:
                failures.append(f"put {key}: {error}")
                continue
            acknowledged[key] = data

    async def reader(stop: asyncio.Event, aclient) -> None:  # type: ignore[no-untyped-def]
        rng = random.Random(7)
        while not stop.is_set():
            if not acknowledged:
                await asyncio.sleep(0.01)
                continue
            key = rng.choice(list(acknowledged))
            try:
                assert await aclient.get(bucket, key) == acknowledged[key], f"{key} differs"
                page = await aclient.list(bucket, prefix=key.split("/")[0] + "/", max_keys=50)
                assert page.entries, f"listing under {key.split('/')[0]}/ came back empty"
            except store.StoreError as error:
                failures.append(f"read {key}: {error}")

    async def scenario() -> list[meta_pb2.MoveShardResponse]:
        async with store.AsyncClient(cluster.meta_address, timeout_s=60) as aclient:
            stop = asyncio.Event()
            # The writers aim at the shards that move, so some writes meet a freeze.
            tasks = [
                asyncio.create_task(
                    writer(i, keys_in_shard(bucket, moves[i % 4][0], 400, f"w{i}"), stop, aclient)
                )
                for i in range(LOAD_WRITERS)
            ]
            tasks += [asyncio.create_task(reader(stop, aclient)) for _ in range(3)]
            replies = []
            for shard, target in moves:
                await asyncio.sleep(0.7)
                replies.append(await aclient.move_shard(shard, target))
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*tasks)
            return replies

    replies = asyncio.run(scenario())
    assert not failures, f"{len(failures)} client calls failed, first: {failures[:3]}"
    assert len(acknowledged) > 50, f"only {len(acknowledged)} writes in the load"
    for reply, (shard, target) in zip(replies, moves, strict=True):
        assert reply.shard == shard, f"move reply {reply}"
        assert reply.target_id == target, f"move reply {reply}"
    assert held_operations(cluster) > 0, "no write met a frozen shard; the load missed the moves"

    with store.Client(cluster.meta_address) as client:
        after = owners(client)
        assert after[1] == secondary_id, f"owners after: {after}"
        assert after[9] == primary_id, f"owners after: {after}"
        assert after[0] == before[0], f"shard 0 went and came back, owners {after}"
        assert client.cluster_map().epoch >= epoch_before + len(moves), "the epoch did not grow"
        for key, data in acknowledged.items():
            assert client.get(bucket, key) == data, f"{key} reads back different after the moves"
        listed = [e.key for page in client.iter_pages(bucket) for e in page.entries]
        assert sorted(listed) == sorted(acknowledged), "the listing lost or doubled keys"

    # The source's copy is deleted once the moved shard is no longer read there.
    source_copy = cluster.metaservers[0].directory / "shards" / "0001"
    wait_until(lambda: not source_copy.exists(), 30, f"{source_copy} still exists")


def test_moved_shards_survive_restart(cluster_factory: ClusterFactory) -> None:
    cluster = start_two_metaservers(cluster_factory)
    secondary_id = cluster.metaservers[1].server_id
    with store.Client(cluster.meta_address) as client:
        client.create_bucket("restart-moved")
        keys = keys_in_shard("restart-moved", 2, 20, "k")
        for key in keys:
            client.put("restart-moved", key, key.encode())
        client.move_shard(2, secondary_id)
    for process in reversed(cluster.metaservers):
        process.stop()
    deadline_s = time.monotonic() + 30
    for process in cluster.metaservers:
        process.start(detach=False)
        process.wait_listening(deadline_s)
    cluster.wait_ready(deadline_s)
    with store.Client(cluster.meta_address, timeout_s=30) as client:
        assert owners(client)[2] == secondary_id, "the move did not survive a restart"
        for key in keys:
            assert client.get("restart-moved", key) == key.encode(), f"{key} lost"
        client.put("restart-moved", keys[0], b"rewritten")
        assert client.get("restart-moved", keys[0]) == b"rewritten"


def test_move_errors_name_the_fix(cluster_factory: ClusterFactory) -> None:
    cluster = start_two_metaservers(cluster_factory)
    primary_id = cluster.metaservers[0].server_id
    with store.Client(cluster.meta_address) as client:
        epoch = client.cluster_map().epoch
        with pytest.raises(store.InvalidArgument, match="shards are 0-15"):
            client.move_shard(SHARDS, primary_id)
        with pytest.raises(store.NotFound, match="no metaserver has id or address 'ms-nope'"):
            client.move_shard(3, "ms-nope")
        with pytest.raises(store.InvalidArgument, match="already served by metaserver"):
            client.move_shard(3, primary_id)
        assert client.cluster_map().epoch == epoch, "a refused move changed the map"
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "store.cli",
            "shard",
            "move",
            "3",
            "ms-nope",
            "--dir",
            str(cluster.root),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode != 0, f"storectl exited 0: {cli.stdout}"
    assert "ms-nope" in cli.stderr, f"storectl said: {cli.stderr}"


def test_move_to_dead_target_fails(cluster_factory: ClusterFactory) -> None:
    """A target killed before the move: the move fails naming it, the source keeps the shard."""
    cluster = start_two_metaservers(cluster_factory)
    target = cluster.metaservers[1]
    target.kill()
    with store.Client(cluster.meta_address, timeout_s=20) as client:
        client.create_bucket("dead-target")
        epoch = client.cluster_map().epoch
        started_s = time.monotonic()
        with pytest.raises(store.StoreError, match=f"import on metaserver {target.address}"):
            client.move_shard(4, target.server_id)
        assert owners(client)[4] == cluster.metaservers[0].server_id, "shard 4 changed owner"
        assert client.cluster_map().epoch == epoch, "a failed move changed the map"
        key = keys_in_shard("dead-target", 4, 1, "after")[0]
        client.put("dead-target", key, b"still writable")
        assert client.get("dead-target", key) == b"still writable"
        assert time.monotonic() - started_s < 15, "the shard stayed frozen after the failed move"


def test_freeze_lease_ends_by_itself(cluster_factory: ClusterFactory) -> None:
    """A freeze that no move finishes (its primary died) ends after its lease."""
    cluster = start_two_metaservers(cluster_factory)
    primary = cluster.metaservers[0]
    with store.Client(cluster.meta_address, timeout_s=30) as client:
        client.create_bucket("leased")
        key = keys_in_shard("leased", 5, 1, "held")[0]
        lease_s = 2

        async def freeze_then_put() -> float:
            async with grpc.aio.insecure_channel(primary.address) as channel:
                stub = meta_pb2_grpc.MetaServiceStub(channel)
                await stub.FreezeShard(
                    meta_pb2.FreezeShardRequest(shard=5, move_id="lease-test", lease_s=lease_s)
                )
            started_s = time.monotonic()
            async with store.AsyncClient(cluster.meta_address, timeout_s=30) as aclient:
                await aclient.put("leased", key, b"after the lease")
            return time.monotonic() - started_s

        waited_s = asyncio.run(freeze_then_put())
        assert lease_s - 0.5 < waited_s < lease_s + 5, f"the put waited {waited_s:.1f}s"
        assert client.get("leased", key) == b"after the lease"
    log = Path(primary.log_path).read_text()
    assert "not finished within its lease" in log, "the lease expiry was not logged"


def test_primary_killed_mid_move(cluster_factory: ClusterFactory) -> None:
    """The primary dies while the target is stalled: the source thaws after the lease."""
    lease_s = 3
    cluster = cluster_factory(
        dataservers=1, metaservers=3, meta_args=["--shard-move-lease-s", str(lease_s)]
    )
    primary, source, target = cluster.metaservers
    shard = 6
    with store.Client(cluster.meta_address, timeout_s=30) as client:
        assert owners(client)[shard] == source.server_id, f"owners: {owners(client)}"
        client.create_bucket("orphaned-move")
        keys = keys_in_shard("orphaned-move", shard, 10, "k")
        for key in keys[:-1]:
            client.put("orphaned-move", key, key.encode())
        epoch = client.cluster_map().epoch

        target.signal(signal.SIGSTOP)
        try:
            with ThreadPoolExecutor(1) as pool:
                move = pool.submit(client.move_shard, shard, target.server_id, timeout_s=30)
                wait_until(
                    lambda: f"shard={shard} frozen for move" in source.log_path.read_text(),
                    15,
                    "the source never froze the shard",
                )
                primary.kill()
                with pytest.raises(store.StoreError):
                    move.result(timeout=30)

            # The source holds the write until the lease ends, then runs it.
            started_s = time.monotonic()
            client.put("orphaned-move", keys[-1], b"written after the lease")
            waited_s = time.monotonic() - started_s
        finally:
            target.signal(signal.SIGCONT)
        assert waited_s < lease_s + 5, f"the write waited {waited_s:.1f}s for a {lease_s}s lease"
        assert waited_s > 0.5, f"the write waited only {waited_s:.2f}s: the shard was not frozen"
        assert "not finished within its lease" in source.log_path.read_text()

    cluster.restart(primary)
    with store.Client(cluster.meta_address, timeout_s=30) as client:
        assert owners(client)[shard] == source.server_id, "the abandoned move changed the owner"
        assert client.cluster_map().epoch == epoch, "the abandoned move changed the epoch"
        for key in keys[:-1]:
            assert client.get("orphaned-move", key) == key.encode(), f"{key} lost"
        assert client.get("orphaned-move", keys[-1]) == b"written after the lease"
    leftovers = lambda: [  # noqa: E731
        path.name
        for path in (target.directory / "shards").iterdir()
        if path.name.startswith(f"{shard:04d}")
    ]
    wait_until(lambda: not leftovers(), 20, f"the target kept the import: {leftovers()}")
