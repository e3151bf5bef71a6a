"""MetaService handlers for shard moves (mixed into MetaService)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc.aio

from store._pb import meta_pb2
from store.errors import InvalidArgument
from store.rpc import stream_handler, unary_handler

if TYPE_CHECKING:
    from metaserver.membership import Membership
    from metaserver.service import ClusterState
    from metaserver.shard_host import ShardHost
    from metaserver.shard_move import ShardMover


class ShardHandlers:
    """Handlers that MetaService inherits; they use the attributes declared here."""

    host: ShardHost
    mover: ShardMover | None
    cluster: ClusterState

    if TYPE_CHECKING:

        @property
        def membership(self) -> Membership: ...

    @unary_handler
    async def MoveShard(
        self, request: meta_pb2.MoveShardRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.MoveShardResponse:
        self.membership  # noqa: B018 (raises, naming the primary, on a secondary)
        assert self.mover is not None
        if not request.target:
            raise InvalidArgument("MoveShard needs the target metaserver's id or address")
        return await self.mover.move(request.shard, request.target)

    @unary_handler
    async def FreezeShard(
        self, request: meta_pb2.FreezeShardRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.FreezeShardResponse:
        if not request.move_id or not request.lease_s:
            raise InvalidArgument("FreezeShard needs a move id and a lease")
        files = await self.host.freeze(request.shard, request.move_id, request.lease_s)
        return meta_pb2.FreezeShardResponse(files=files)

    @stream_handler
    async def ReadShardCheckpoint(
        self, request: meta_pb2.ReadShardCheckpointRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[meta_pb2.ShardFileChunk]:
        async for piece in self.host.checkpoint_pieces(request.shard, request.move_id):
            yield piece

    @unary_handler
    async def ImportShard(
        self, request: meta_pb2.ImportShardRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ImportShardResponse:
        if not request.move_id or not request.source_address or not request.lease_s:
            raise InvalidArgument("ImportShard needs a move id, the source's address and a lease")
        copied_bytes, copied_files = await self.host.import_shard(
            request.shard, request.move_id, request.source_address, request.lease_s
        )
        return meta_pb2.ImportShardResponse(copied_bytes=copied_bytes, copied_files=copied_files)

    @unary_handler
    async def FinishShardMove(
        self, request: meta_pb2.FinishShardMoveRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.FinishShardMoveResponse:
        if request.committed:
            self.cluster.adopt_map(request.map)
        await self.host.finish(request.shard, request.move_id, request.committed, request.map.epoch)
        return meta_pb2.FinishShardMoveResponse()
