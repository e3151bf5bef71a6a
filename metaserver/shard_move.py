"""Moving a shard to another metaserver, run by the primary.

The steps, each an RPC to one end (see metaserver/shard_host.py):

1. FreezeShard on the source: its writes are held and a checkpoint taken.
2. ImportShard on the target: it copies the checkpoint and opens it.
3. The primary assigns the shard to the target: one persisted new epoch.
4. FinishShardMove on both ends: the target serves the shard, the source
   fails the writes it held with StaleEpoch and deletes its copy.

A failure before step 3 abandons the move: FinishShardMove with committed
false lets the source serve its writes again and the target drop its copy.
A failure after step 3 changes nothing for clients: each end also finishes
when its next heartbeat brings the new map.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import grpc

from metaserver.membership import Membership
from store._pb import meta_pb2
from store.channels import ChannelPool
from store.errors import InvalidArgument, StoreError, Unavailable
from store.rpc import error_from_rpc

log = logging.getLogger(__name__)

# The default lease: the longest time the source keeps the shard's writes waiting, so the
# copy must finish within it.
MOVE_LEASE_S = 300
FINISH_TIMEOUT_S = 10.0


class ShardMover:
    """Runs one shard move at a time on the primary."""

    def __init__(self, membership: Membership, channels: ChannelPool, lease_s: int) -> None:
        assert lease_s > 0
        self.membership = membership
        self.channels = channels
        self.lease_s = lease_s
        self._lock = asyncio.Lock()

    async def move(self, shard: int, target_name: str) -> meta_pb2.MoveShardResponse:
        shard_count = self.membership.config.shard_count
        if not 0 <= shard < shard_count:
            raise InvalidArgument(f"shard {shard} does not exist; shards are 0-{shard_count - 1}")
        if self._lock.locked():
            raise Unavailable("another shard move is running; retry when it ends")
        async with self._lock:
            return await self._move(shard, target_name)

    async def _move(self, shard: int, target_name: str) -> meta_pb2.MoveShardResponse:
        source = self.membership.shard_owner(shard)
        target = self.membership.metaserver(target_name)
        if target.id == source.id:
            raise InvalidArgument(f"shard {shard} is already served by metaserver {source.id}")

        move_id = f"{shard:04d}-{uuid.uuid4().hex[:8]}"
        log.info(
            "shard move started move=%s shard=%d from=%s to=%s",
            move_id,
            shard,
            source.id,
            target.id,
        )

        started_s = time.monotonic()
        source_stub = self.channels.meta(source.address)
        target_stub = self.channels.meta(target.address)
        await self._call(
            source.address,
            "freeze",
            source_stub.FreezeShard(
                meta_pb2.FreezeShardRequest(shard=shard, move_id=move_id, lease_s=self.lease_s),
                timeout=self.lease_s,
            ),
        )
        frozen_s = time.monotonic()

        try:
            imported = await self._call(
                target.address,
                "import",
                target_stub.ImportShard(
                    meta_pb2.ImportShardRequest(
                        shard=shard,
                        move_id=move_id,
                        source_address=source.address,
                        lease_s=self.lease_s,
                    ),
                    timeout=self.lease_s - (frozen_s - started_s),
                ),
            )
            self.membership.assign_shard(shard, source.id, target.id)
        except BaseException as error:
            log.error("shard move abandoned move=%s shard=%d: %s", move_id, shard, error)
            await self._finish([source.address, target.address], shard, move_id, committed=False)
            raise

        committed_s = time.monotonic()
        await self._finish([target.address, source.address], shard, move_id, committed=True)
        response = meta_pb2.MoveShardResponse(
            shard=shard,
            source_id=source.id,
            target_id=target.id,
            epoch=self.membership.epoch,
            copied_bytes=imported.copied_bytes,
            copied_files=imported.copied_files,
            frozen_ms=int((committed_s - frozen_s) * 1000),
            total_ms=int((time.monotonic() - started_s) * 1000),
        )
        log.info(
            "shard move done move=%s shard=%d from=%s to=%s epoch=%d bytes=%d frozen_ms=%d "
            "total_ms=%d",
            move_id,
            shard,
            source.id,
            target.id,
            response.epoch,
            response.copied_bytes,
            response.frozen_ms,
            response.total_ms,
        )
        return response

    async def _call(self, address: str, step: str, call: object) -> meta_pb2.ImportShardResponse:
        try:
            return await call  # type: ignore[misc]
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, f"shard move {step} on metaserver {address}") from None

    async def _finish(
        self, addresses: list[str], shard: int, move_id: str, committed: bool
    ) -> None:
        """Tell each end how the move ended; an end that misses it learns from the map."""
        request = meta_pb2.FinishShardMoveRequest(
            shard=shard, move_id=move_id, committed=committed, map=self.membership.cluster_map()
        )
        for address in addresses:
            try:
                await self._call(
                    address,
                    "finish",
                    self.channels.meta(address).FinishShardMove(request, timeout=FINISH_TIMEOUT_S),
                )
            except StoreError as error:
                log.warning(
                    "shard move=%s finish on %s failed (it follows the map later): %s",
                    move_id,
                    address,
                    error,
                )
