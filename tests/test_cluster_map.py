"""The cluster map on real processes: stale epochs, dataservers going down, metaservers."""

from __future__ import annotations

import asyncio

import pytest

import store
from store._pb import common_pb2 as pb

from .support import CHUNK_SIZE_BYTES, ClusterFactory, chunk_files, make_data, wait_until

DATASERVER_TIMEOUT_S = 1.0


def test_stale_epoch_refreshes_map(cluster_factory: ClusterFactory) -> None:
    """A client whose cached map predates a new dataserver refreshes it and writes there."""
    cluster = cluster_factory(dataservers=2)
    with store.Client(cluster.meta_address) as client:
        client.create_bucket("epochs")
        epoch_before = client.async_client._connection.view.epoch  # type: ignore[union-attr]
        newcomer = cluster.add_dataserver()

        data = make_data(24 * CHUNK_SIZE_BYTES, seed=700)
        client.put("epochs", "after-join", data)

        epoch_after = client.async_client._connection.view.epoch  # type: ignore[union-attr]
        assert epoch_after > epoch_before, "the client did not refresh its cluster map"
        assert client.get("epochs", "after-join") == data, "the object read back differs"
        assert chunk_files(newcomer), "the new dataserver got no chunks of a 24-stripe object"


def test_down_dataserver_gets_no_chunks(cluster_factory: ClusterFactory) -> None:
    """A dataserver that stops heartbeating is marked down, skipped by writes, then rejoins."""
    meta_args = [
        "--dataserver-suspect-s",
        str(DATASERVER_TIMEOUT_S / 2),
        "--dataserver-timeout-s",
        str(DATASERVER_TIMEOUT_S),
    ]
    data_args = ["--heartbeat-interval-s", "0.1"]
    cluster = cluster_factory(dataservers=3, meta_args=meta_args, data_args=data_args)
    victim = cluster.dataservers[0]
    with store.Client(cluster.meta_address) as client:
        client.create_bucket("downs", scheme="rep:1")
        before = make_data(6 * CHUNK_SIZE_BYTES, seed=701)
        client.put("downs", "before", before)
        chunks_before = len(chunk_files(victim))
        assert chunks_before > 0, "the victim got no chunks, so the test proves nothing"

        victim.kill()
        wait_until(
            lambda: _state(client, victim.server_id) == pb.DATASERVER_STATE_DOWN,
            timeout_s=15,
            description=f"{victim.name} marked down",
        )
        during = make_data(12 * CHUNK_SIZE_BYTES, seed=702)
        client.put("downs", "during", during)
        assert client.get("downs", "during") == during, "an object written around it differs"
        with pytest.raises(store.Unavailable) as caught:
            client.get("downs", "before")
        assert victim.server_id in str(caught.value), f"error does not name it: {caught.value}"

        cluster.restart(victim)
        assert len(chunk_files(victim)) == chunks_before, "the down dataserver got new chunks"
        assert _state(client, victim.server_id) == pb.DATASERVER_STATE_UP, "it did not rejoin"
        assert client.get("downs", "before") == before, "the object read back differs"


def _state(client: store.Client, dataserver_id: str) -> int:
    for info in client.cluster_map().dataservers:
        if info.id == dataserver_id:
            return info.state
    raise AssertionError(f"dataserver {dataserver_id} is not in the cluster map")


def test_bucket_delete_across_metaservers(cluster_factory: ClusterFactory) -> None:
    """Deleting a bucket checks the shards of every metaserver and reaches all of them."""
    cluster = cluster_factory(dataservers=1, metaservers=2)
    owners = {
        m.id: list(m.shards) for m in store.Client(cluster.meta_address).cluster_map().metaservers
    }
    assert len(owners) == 2, f"expected 2 metaservers in the map, got {owners}"

    async def scenario() -> None:
        async with store.AsyncClient(cluster.meta_address) as client:
            await client.create_bucket("spread")
            keys = [f"dir{i % 5}/key-{i:04d}" for i in range(200)]
            await asyncio.gather(*(client.put("spread", key, b"x") for key in keys))
            listed = [
                e.key
                async for page in client.iter_pages("spread", max_keys=37)
                for e in page.entries
            ]
            assert listed == sorted(keys), "the merged listing of two metaservers differs"

            with pytest.raises(store.BucketNotEmpty):
                await client.delete_bucket("spread")
            await asyncio.gather(*(client.delete("spread", key) for key in keys))
            await client.delete_bucket("spread")
            with pytest.raises(store.NoSuchBucket):
                await client.put("spread", keys[-1], b"y")
            names = [bucket.name for bucket in await client.list_buckets()]
            assert "spread" not in names, f"the deleted bucket is still listed: {names}"

    asyncio.run(scenario())
