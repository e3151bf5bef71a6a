"""The MetaService gRPC servicer.

A metaserver is either the primary, which keeps the bucket catalog and the
cluster map (Membership), or a secondary, which follows the primary through a
PrimaryLink. Both serve the object operations of their own shards.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import grpc.aio

from metaserver import keys, objects
from metaserver.catalog import BucketCatalog, BucketMirror, Buckets
from metaserver.follower import PrimaryLink
from metaserver.gc import GarbageCollector
from metaserver.membership import Membership
from metaserver.repair import Repairer
from metaserver.repair_ops import queue_reports
from metaserver.service_multipart import MultipartHandlers
from metaserver.service_shards import ShardHandlers
from metaserver.shard import GroupView, Shard
from metaserver.shard_host import ShardHost
from metaserver.shard_move import MOVE_LEASE_S, ShardMover
from metaserver.users import UserDirectory
from store import scheme
from store._pb import common_pb2 as pb
from store._pb import meta_pb2, meta_pb2_grpc
from store.channels import ChannelPool
from store.checksum import crc32c
from store.clustermap import state_name
from store.errors import (
    BucketNotEmpty,
    InvalidArgument,
    NoSuchKey,
    PreconditionFailed,
    StaleEpoch,
    StoreError,
    Unavailable,
)
from store.layout import check_layout, check_upload_id
from store.limits import MAX_CHUNK_SIZE_BYTES, MAX_LIST_KEYS, MIN_CHUNK_SIZE_BYTES
from store.listing import merge_page
from store.names import check_bucket_name, check_user_metadata, display_key, encode_key
from store.rpc import error_from_rpc, unary_handler
from store.shardmap import format_shard_ranges, shard_of

log = logging.getLogger(__name__)

# Timeout of calls between metaservers.
PEER_TIMEOUT_S = 10.0


class ClusterState(Protocol):
    """The cluster state the service reads: Membership or PrimaryLink."""

    @property
    def epoch(self) -> int: ...

    @property
    def config(self) -> pb.ClusterMap: ...

    dataservers: dict[str, pb.DataserverInfo]

    def cluster_map(self) -> pb.ClusterMap: ...

    def adopt_map(self, cluster_map: pb.ClusterMap) -> None: ...


@dataclass(slots=True)
class ServiceSettings:
    gc_delay_s: float
    started_unix_ms: int
    shard_move_lease_s: int = MOVE_LEASE_S


# Chunks in one ReportBadChunks call.
MAX_REPORTED_CHUNKS = 1000


class MetaService(MultipartHandlers, ShardHandlers, meta_pb2_grpc.MetaServiceServicer):
    def __init__(
        self,
        server_id: str,
        host: ShardHost,
        buckets: Buckets,
        cluster: ClusterState,
        collector: GarbageCollector,
        settings: ServiceSettings,
        users: UserDirectory | None = None,
        repairer: Repairer | None = None,
    ) -> None:
        self.server_id = server_id
        self.address = ""
        self.host = host
        # Shared with the host, so shards it gains or loses show here at once.
        self.shards = host.serving
        self.buckets = buckets
        self.cluster = cluster
        self.collector = collector
        self.settings = settings
        # The primary's user directory; None on secondaries.
        self.users = users
        self.repairer = repairer
        self._peers = ChannelPool()
        self.mover = (
            ShardMover(cluster, self._peers, settings.shard_move_lease_s)
            if isinstance(cluster, Membership)
            else None
        )

    @property
    def membership(self) -> Membership:
        """The cluster map authority; raises on a secondary."""
        if not isinstance(self.cluster, Membership):
            link = self.cluster
            assert isinstance(link, PrimaryLink)
            raise InvalidArgument(
                f"metaserver {self.server_id} is a secondary; send this request to the primary "
                f"metaserver at {link.primary_address}"
            )
        return self.cluster

    async def _ensure_bucket(self, name: str) -> None:
        if isinstance(self.cluster, PrimaryLink):
            await self.cluster.ensure_bucket(name)

    async def _forward(self, what: str, call: Callable[[Any], Awaitable[Any]]) -> Any:
        """Run a bucket call on the primary (from a secondary) and return its reply."""
        assert isinstance(self.cluster, PrimaryLink)
        try:
            return await call(self.cluster.primary())
        except grpc.RpcError as exc:
            raise error_from_rpc(
                exc, f"{what} via primary {self.cluster.primary_address}"
            ) from None

    async def close(self) -> None:
        await self._peers.close()

    # Helpers.

    async def _shard_in_bucket(self, bucket: str, key: bytes, shard_number: int) -> Shard:
        """Return the local shard for (bucket, key) once the bucket is known to exist."""
        shard = self._shard(bucket, key, shard_number)
        await self._ensure_bucket(bucket)
        self.buckets.get(bucket)
        return shard

    def _shard(self, bucket: str, key: bytes, shard_number: int) -> Shard:
        """Return the local shard for (bucket, key), checking the caller's routing."""
        check_bucket_name(bucket)
        encode_key(key)
        if not self.cluster.config.shard_count:
            raise Unavailable(
                f"metaserver {self.server_id} has not registered with its primary yet; retry"
            )
        expected = shard_of(bucket, key, self.cluster.config.shard_count)
        if shard_number != expected:
            raise InvalidArgument(
                f"{bucket}/{display_key(key)} belongs to shard {expected}, request named "
                f"shard {shard_number}"
            )
        shard = self.shards.get(expected)
        if shard is None:
            raise StaleEpoch(
                f"metaserver {self.server_id} does not serve shard {expected} at epoch "
                f"{self.cluster.epoch}; refresh the cluster map",
                self.cluster.epoch,
            )
        return shard

    def _listed_shards(self, requested: Sequence[int]) -> list[Shard]:
        """Return the shards a listing covers: `requested`, or every local one when empty."""
        if not requested:
            return list(self.shards.values())
        missing = [number for number in requested if number not in self.shards]
        if missing:
            raise StaleEpoch(
                f"metaserver {self.server_id} does not serve shards "
                f"{format_shard_ranges(missing)} at epoch {self.cluster.epoch}; refresh the "
                "cluster map",
                self.cluster.epoch,
            )
        return [self.shards[number] for number in requested]

    async def _check_epoch(self, epoch: int) -> None:
        if epoch > self.cluster.epoch and isinstance(self.cluster, PrimaryLink):
            # The client saw a newer map than this secondary: catch up with the primary.
            await self.cluster.sync_once()
        if epoch < self.cluster.epoch:
            raise StaleEpoch(
                f"cluster map epoch {epoch} is older than the metaserver's "
                f"{self.cluster.epoch}; refresh the cluster map",
                self.cluster.epoch,
            )

    # Cluster map and membership.

    @unary_handler
    async def GetClusterMap(
        self, request: meta_pb2.GetClusterMapRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClusterMap:
        if isinstance(self.cluster, PrimaryLink):
            # A secondary's copy lags the primary by up to a heartbeat; clients get the source.
            try:
                await self.cluster.sync_once()
            except StoreError as error:
                log.warning("serving a cached cluster map epoch=%d: %s", self.cluster.epoch, error)
        return self.cluster.cluster_map()

    @unary_handler
    async def RegisterDataserver(
        self, request: meta_pb2.RegisterDataserverRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.RegisterDataserverResponse:
        if not request.info.id or not request.info.address:
            raise InvalidArgument("RegisterDataserver needs the dataserver's id and address")
        self.membership.register(request.info)
        return meta_pb2.RegisterDataserverResponse(
            epoch=self.cluster.epoch, cluster_id=self.cluster.config.cluster_id
        )

    @unary_handler
    async def Heartbeat(
        self, request: meta_pb2.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.HeartbeatResponse:
        known = self.membership.heartbeat(request.info)
        return meta_pb2.HeartbeatResponse(epoch=self.cluster.epoch, known=known)

    @unary_handler
    async def RegisterMetaserver(
        self, request: meta_pb2.RegisterMetaserverRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.RegisterMetaserverResponse:
        membership = self.membership
        if not request.info.id or not request.info.address or request.info.primary:
            raise InvalidArgument("RegisterMetaserver needs a secondary's id, address and shards")
        membership.register_metaserver(request.info)
        catalog = self.buckets
        reply = meta_pb2.RegisterMetaserverResponse(
            epoch=membership.epoch, bucket_version=catalog.version
        )
        if request.known_epoch < membership.epoch:
            reply.map.CopyFrom(membership.cluster_map())
        if request.known_bucket_version != catalog.version:
            reply.buckets_changed = True
            reply.buckets.extend(catalog.sorted_records())
        return reply

    @unary_handler
    async def FenceBucket(
        self, request: meta_pb2.FenceBucketRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.FenceBucketResponse:
        mirror = self.buckets
        if not isinstance(mirror, BucketMirror):
            raise InvalidArgument("FenceBucket is sent by the primary to secondaries only")
        if request.release:
            mirror.release(request.name, request.deleted)
            return meta_pb2.FenceBucketResponse()
        mirror.fence(request.name)
        return meta_pb2.FenceBucketResponse(
            has_objects=await _shards_have_objects(self.shards, request.name)
        )

    # Buckets.

    @unary_handler
    async def CreateBucket(
        self, request: meta_pb2.CreateBucketRequest, context: grpc.aio.ServicerContext
    ) -> pb.BucketRecord:
        if isinstance(self.buckets, BucketCatalog):
            wanted = request.scheme or self.cluster.config.default_scheme or scheme.AUTO
            servers = self.membership.dataservers.values()
            protection = scheme.resolve(wanted, servers)
            live = sum(1 for info in servers if info.state != pb.DATASERVER_STATE_OUT)
            if request.scheme and protection.width > live:
                raise InvalidArgument(
                    f"scheme {protection} puts {protection.width} chunks of each stripe on "
                    f"different dataservers, but the cluster has {live}; add dataservers "
                    "first, or choose a narrower scheme"
                )
            return self.buckets.create(request.name, request.owner, protection)
        record = await self._forward(
            "create bucket", lambda stub: stub.CreateBucket(request, timeout=PEER_TIMEOUT_S)
        )
        assert isinstance(self.buckets, BucketMirror)
        self.buckets.learn(record)
        return record

    @unary_handler
    async def DeleteBucket(
        self, request: meta_pb2.DeleteBucketRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.DeleteBucketResponse:
        catalog = self.buckets
        if not isinstance(catalog, BucketCatalog):
            return await self._forward(
                "delete bucket", lambda stub: stub.DeleteBucket(request, timeout=PEER_TIMEOUT_S)
            )
        name = request.name
        catalog.begin_delete(name)
        deleted = False
        try:
            # Each check runs in a shard's writer after every commit already admitted;
            # commits admitted later see the fence.
            if await _shards_have_objects(self.shards, name) or await self._peers_have_objects(
                name
            ):
                raise BucketNotEmpty(f"bucket {name!r} is not empty; delete its objects first")
            deleted = True
        finally:
            catalog.finish_delete(name, deleted)
            await self._release_peers(name, deleted)
        return meta_pb2.DeleteBucketResponse()

    def _secondaries(self) -> list[pb.MetaserverInfo]:
        return [m for m in self.membership.metaservers.values() if m.id != self.server_id]

    async def _peers_have_objects(self, name: str) -> bool:
        request = meta_pb2.FenceBucketRequest(name=name)
        for peer in self._secondaries():
            try:
                reply = await self._peers.meta(peer.address).FenceBucket(
                    request, timeout=PEER_TIMEOUT_S
                )
            except grpc.RpcError as exc:
                error = error_from_rpc(exc, f"metaserver {peer.id} at {peer.address}")
                raise Unavailable(
                    f"cannot delete bucket {name!r} while a metaserver is unreachable: {error}"
                ) from None
            if reply.has_objects:
                return True
        return False

    async def _release_peers(self, name: str, deleted: bool) -> None:
        request = meta_pb2.FenceBucketRequest(name=name, release=True, deleted=deleted)
        for peer in self._secondaries():
            try:
                await self._peers.meta(peer.address).FenceBucket(request, timeout=PEER_TIMEOUT_S)
            except grpc.RpcError as exc:
                # The peer's mirror catches up at its next heartbeat to the primary.
                log.warning(
                    "releasing bucket fence bucket=%s on metaserver=%s failed: %s",
                    name,
                    peer.id,
                    error_from_rpc(exc, peer.address),
                )

    @unary_handler
    async def UpdateBucketSettings(
        self, request: meta_pb2.UpdateBucketSettingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.BucketRecord:
        if isinstance(self.buckets, BucketCatalog):
            return self.buckets.update_settings(
                request.name, request.set_settings, request.remove_settings
            )
        record = await self._forward(
            "update bucket settings",
            lambda stub: stub.UpdateBucketSettings(request, timeout=PEER_TIMEOUT_S),
        )
        assert isinstance(self.buckets, BucketMirror)
        self.buckets.learn(record)
        return record

    @unary_handler
    async def HeadBucket(
        self, request: meta_pb2.HeadBucketRequest, context: grpc.aio.ServicerContext
    ) -> pb.BucketRecord:
        await self._ensure_bucket(request.name)
        return self.buckets.get(request.name)

    @unary_handler
    async def ListBuckets(
        self, request: meta_pb2.ListBucketsRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ListBucketsResponse:
        if not isinstance(self.buckets, BucketCatalog):
            return await self._forward(
                "list buckets", lambda stub: stub.ListBuckets(request, timeout=PEER_TIMEOUT_S)
            )
        return meta_pb2.ListBucketsResponse(buckets=self.buckets.sorted_records())

    # Objects.

    @unary_handler
    async def OpenUpload(
        self, request: meta_pb2.OpenUploadRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.OpenUploadResponse:
        shard = self._shard(request.bucket, request.key, request.shard)
        await self._check_epoch(request.epoch)
        await self._ensure_bucket(request.bucket)
        config = self.cluster.config
        chunk_size = request.chunk_size_bytes or config.chunk_size_bytes
        if not MIN_CHUNK_SIZE_BYTES <= chunk_size <= MAX_CHUNK_SIZE_BYTES:
            raise InvalidArgument(
                f"chunk size {chunk_size} must be between {MIN_CHUNK_SIZE_BYTES} and "
                f"{MAX_CHUNK_SIZE_BYTES} bytes"
            )
        session = await shard.submit(
            "open_upload",
            objects.open_upload(
                shard,
                self.buckets,
                request.bucket,
                request.key,
                chunk_size,
                time.time_ns(),
            ),
        )
        return meta_pb2.OpenUploadResponse(
            upload_id=session.upload_id,
            chunk_size_bytes=session.chunk_size_bytes,
            replicas=session.replicas,
            epoch=self.cluster.epoch,
            data_chunks=session.data_chunks,
            parity_chunks=session.parity_chunks,
        )

    @unary_handler
    async def CommitObject(
        self, request: meta_pb2.CommitObjectRequest, context: grpc.aio.ServicerContext
    ) -> pb.ObjectRecord:
        record = await (await self._enqueue_commit(request))
        # The caller has the bytes; the reply carries only the metadata.
        record.ClearField("inline_data")
        return record

    @unary_handler
    async def CommitObjects(
        self, request: meta_pb2.CommitObjectsRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.CommitObjectsResponse:
        # Queue every commit first so each shard's writer sees the whole batch at once.
        pending: list[asyncio.Future[pb.ObjectRecord] | StoreError] = []
        for commit in request.commits:
            try:
                pending.append(await self._enqueue_commit(commit))
            except StoreError as error:
                pending.append(error)
        response = meta_pb2.CommitObjectsResponse()
        for item in pending:
            result = response.results.add()
            try:
                if isinstance(item, StoreError):
                    raise item
                record = await item
            except StoreError as error:
                _set_error(result, error)
                continue
            record.ClearField("inline_data")
            result.record.CopyFrom(record)
        return response

    async def _enqueue_commit(
        self, request: meta_pb2.CommitObjectRequest
    ) -> asyncio.Future[pb.ObjectRecord]:
        """Check a commit and queue it in its shard's writer."""
        shard = self._shard(request.bucket, request.key, request.shard)
        await self._check_record(request)
        await self._ensure_bucket(request.bucket)
        committed = shard.enqueue(
            "commit_object",
            objects.commit_object(
                shard, self.buckets, request, time.time_ns(), int(self.settings.gc_delay_s * 1e9)
            ),
        )
        self._queue_lost_chunks(shard, request)
        return committed

    def _queue_lost_chunks(self, shard: Shard, request: meta_pb2.CommitObjectRequest) -> None:
        """Queue a repair of chunks the commit places on dataservers that are out.

        An upload that wrote a chunk before its dataserver went out may commit after the
        repair scan passed: the scan would not look again, so the commit reports it.
        """
        lost = [
            meta_pb2.BadChunk(
                bucket=request.bucket,
                key=request.key,
                chunk_id=chunk.chunk_id,
                dataserver_id=chunk.target,
                reason="committed on a dataserver that is out",
            )
            for stripe in request.record.layout.stripes
            for chunk in stripe.chunks
            if (info := self.cluster.dataservers.get(chunk.target)) is not None
            and info.state == pb.DATASERVER_STATE_OUT
        ]
        if not lost:
            return
        queued = shard.enqueue("queue_lost_chunks", queue_reports(lost, time.time_ns()))
        queued.add_done_callback(_log_queue_failure)
        if self.repairer is not None:
            self.repairer.wake()

    async def _check_record(self, request: meta_pb2.CommitObjectRequest) -> None:
        record = request.record
        check_user_metadata(record.user_metadata)
        if not request.upload_id:
            self._check_inline(request)
            return
        name = f"{request.bucket}/{display_key(request.key)}"
        check_upload_id(request.upload_id)
        if record.is_inline or record.inline_data:
            raise InvalidArgument(
                f"commit of upload {request.upload_id} must not carry inline data"
            )
        check_layout(record.layout, record.size_bytes, request.upload_id)
        await self._check_targets(record.layout, name)

    def _check_inline(self, request: meta_pb2.CommitObjectRequest) -> None:
        """Raise InvalidArgument unless a commit without an upload carries valid inline data."""
        record = request.record
        data = record.inline_data
        limit = self.cluster.config.inline_max_bytes
        problem = ""
        if not record.is_inline or record.layout.stripes:
            problem = "a commit without an upload id must be inline"
        elif len(data) > limit:
            problem = (
                f"inline data is {len(data)} bytes; objects over {limit} bytes must be written "
                "to dataservers through an upload"
            )
        elif len(data) != record.size_bytes:
            problem = f"inline data is {len(data)} bytes, the record's size is {record.size_bytes}"
        elif crc32c(data) != record.inline_crc32c:
            problem = "inline data does not match its CRC32C; retry"
        if problem:
            raise InvalidArgument(f"{request.bucket}/{display_key(request.key)}: {problem}")

    async def _check_targets(self, layout: pb.Layout, name: str) -> None:
        """Raise InvalidArgument when a layout names a dataserver the cluster map lacks."""
        targets = {chunk.target for stripe in layout.stripes for chunk in stripe.chunks}
        unknown = targets - self.cluster.dataservers.keys()
        if unknown and isinstance(self.cluster, PrimaryLink):
            # A secondary's copy of the map may lag the client's; catch up once.
            await self.cluster.sync_once()
            unknown = targets - self.cluster.dataservers.keys()
        if unknown:
            raise InvalidArgument(f"{name}: layout names unknown dataservers {sorted(unknown)}")

    @unary_handler
    async def AbortUpload(
        self, request: meta_pb2.AbortUploadRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.AbortUploadResponse:
        shard = self._shard(request.bucket, request.key, request.shard)
        check_upload_id(request.upload_id)
        await shard.submit("abort_upload", objects.abort_upload(shard, request, time.time_ns()))
        self.collector.wake()
        return meta_pb2.AbortUploadResponse()

    @unary_handler
    async def StatObject(
        self, request: meta_pb2.StatObjectRequest, context: grpc.aio.ServicerContext
    ) -> pb.ObjectRecord:
        return await self._stat(request)

    @unary_handler
    async def StatObjects(
        self, request: meta_pb2.StatObjectsRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.StatObjectsResponse:
        response = meta_pb2.StatObjectsResponse()
        for stat in request.stats:
            result = response.results.add()
            try:
                result.record.CopyFrom(await self._stat(stat))
            except StoreError as error:
                _set_error(result, error)
        return response

    async def _stat(self, request: meta_pb2.StatObjectRequest) -> pb.ObjectRecord:
        shard = self._shard(request.bucket, request.key, request.shard)
        record = await shard.get_object(request.bucket, request.key)
        if record is None:
            await self._ensure_bucket(request.bucket)
            self.buckets.get(request.bucket)
            raise NoSuchKey(
                f"object {request.bucket}/{display_key(request.key)} does not exist; check the "
                "key, or list the bucket"
            )
        if not request.include_inline:
            record.ClearField("inline_data")
        return record

    @unary_handler
    async def DeleteObject(
        self, request: meta_pb2.DeleteObjectRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.DeleteObjectResponse:
        shard = await self._shard_in_bucket(request.bucket, request.key, request.shard)
        return await shard.submit(
            "delete_object",
            objects.delete_object(
                shard, request, time.time_ns(), int(self.settings.gc_delay_s * 1e9)
            ),
        )

    @unary_handler
    async def UpdateObjectMetadata(
        self, request: meta_pb2.UpdateObjectMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ObjectRecord:
        shard = await self._shard_in_bucket(request.bucket, request.key, request.shard)
        return await shard.submit("update_object_metadata", objects.update_object_metadata(request))

    @unary_handler
    async def ListObjects(
        self, request: meta_pb2.ListObjectsRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ListObjectsResponse:
        await self._ensure_bucket(request.bucket)
        self.buckets.get(request.bucket)
        max_keys = request.max_keys or MAX_LIST_KEYS
        if max_keys > MAX_LIST_KEYS:
            raise InvalidArgument(f"max_keys {max_keys} is over the maximum of {MAX_LIST_KEYS}")
        cursors = [
            shard.scan_objects(request.bucket, request.prefix, request.start_key)
            for shard in self._listed_shards(request.shards)
        ]
        items, truncated = merge_page(cursors, request.prefix, request.delimiter, max_keys)
        return meta_pb2.ListObjectsResponse.FromString(keys.encode_listing(items, truncated))

    # Operations.

    # Repair.

    @unary_handler
    async def ReportBadChunks(
        self, request: meta_pb2.ReportBadChunksRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ReportBadChunksResponse:
        if len(request.chunks) > MAX_REPORTED_CHUNKS:
            raise InvalidArgument(
                f"{len(request.chunks)} chunks in one report; send at most {MAX_REPORTED_CHUNKS}"
            )
        shard = None
        for report in request.chunks:
            shard = self._shard(report.bucket, report.key, request.shard)
        if shard is None:
            return meta_pb2.ReportBadChunksResponse()
        queued = await shard.submit(
            "report_bad_chunks", queue_reports(list(request.chunks), time.time_ns())
        )
        for report in request.chunks:
            log.warning(
                "bad chunk reported object=%s/%s chunk=%s dataserver=%s: %s",
                report.bucket,
                display_key(report.key),
                report.chunk_id.hex(),
                report.dataserver_id,
                report.reason,
            )
        if queued and self.repairer is not None:
            self.repairer.wake()
        return meta_pb2.ReportBadChunksResponse(queued=queued)

    # Membership changes.

    @unary_handler
    async def DrainDataserver(
        self, request: meta_pb2.DrainDataserverRequest, context: grpc.aio.ServicerContext
    ) -> pb.DataserverInfo:
        info = self.membership.set_draining(request.id, not request.cancel)
        if self.repairer is not None:
            self.repairer.wake()
        return info

    @unary_handler
    async def RemoveDataserver(
        self, request: meta_pb2.RemoveDataserverRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.RemoveDataserverResponse:
        membership = self.membership
        info = membership.get(request.id)
        chunks, objects = await self._count_refs_everywhere(request.id)
        if chunks:
            raise PreconditionFailed(
                f"dataserver {request.id} ({state_name(info.state)}) still stores {chunks} "
                f"chunks of {objects} objects that layouts name, so removing it would lose "
                f"them or their protection. Drain it first (storectl node drain {request.id}) "
                "and wait until it holds none, or, if it is out, wait for repair to rebuild "
                "its chunks"
            )
        membership.remove(request.id)
        return meta_pb2.RemoveDataserverResponse()

    async def _count_refs_everywhere(self, dataserver_id: str) -> tuple[int, int]:
        chunks, objects = await asyncio.to_thread(self._count_refs, dataserver_id)
        request = meta_pb2.CountChunkRefsRequest(dataserver_id=dataserver_id)
        for peer in self._secondaries():
            try:
                reply = await self._peers.meta(peer.address).CountChunkRefs(
                    request, timeout=PEER_TIMEOUT_S * 6
                )
            except grpc.RpcError as exc:
                error = error_from_rpc(exc, f"metaserver {peer.id} at {peer.address}")
                raise Unavailable(
                    f"cannot check the chunks of dataserver {dataserver_id} while a metaserver "
                    f"is unreachable: {error}"
                ) from None
            chunks += reply.chunks
            objects += reply.objects
        return chunks, objects

    @unary_handler
    async def CountChunkRefs(
        self, request: meta_pb2.CountChunkRefsRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.CountChunkRefsResponse:
        chunks, objects = await asyncio.to_thread(self._count_refs, request.dataserver_id)
        return meta_pb2.CountChunkRefsResponse(chunks=chunks, objects=objects)

    def _count_refs(self, dataserver_id: str) -> tuple[int, int]:
        """Count the chunks, and the objects, of local shards that a dataserver holds."""
        chunks = objects = 0
        for shard in self.shards.values():
            for record in shard.records():
                held = sum(
                    1
                    for stripe in record.layout.stripes
                    for chunk in stripe.chunks
                    if chunk.target == dataserver_id
                )
                chunks += held
                objects += held > 0
        return chunks, objects

    @unary_handler
    async def GetStatus(
        self, request: meta_pb2.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.MetaserverStatus:
        status = meta_pb2.MetaserverStatus(
            id=self.server_id,
            address=self.address,
            epoch=self.cluster.epoch,
            gc_chunks_deleted=self.collector.counters.chunks_deleted,
            gc_uploads_expired=self.collector.counters.uploads_expired,
            started_unix_ms=self.settings.started_unix_ms,
        )
        if self.repairer is not None:
            status.repair.CopyFrom(self.repairer.status())
        for number, shard in sorted(self.shards.items()):
            status.shards.add(
                shard=number,
                estimated_keys=shard.estimated_keys(),
                disk_bytes=shard.disk_bytes(),
                gc_entries=shard.count_prefix(keys.GC_TAG, 100_000),
                open_uploads=shard.count_prefix(keys.UPLOAD_TAG, 100_000),
                commits=shard.counters.commits,
                sync_writes=shard.counters.sync_writes,
                frozen=shard.frozen,
            )
        return status


def _log_queue_failure(future: asyncio.Future[int]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning(
            "queueing the repair of chunks on out dataservers failed: %s", future.exception()
        )


def _set_error(result: meta_pb2.RecordResult, error: StoreError) -> None:
    result.error_code = error.code
    result.error_message = str(error)
    result.server_epoch = getattr(error, "server_epoch", 0) or 0


async def _shards_have_objects(shards: dict[int, Shard], bucket: str) -> bool:
    """Check each shard for objects of `bucket`, inside its writer (after queued commits)."""
    for shard in shards.values():
        if await shard.submit("bucket_empty_check", _has_objects_check(shard, bucket)):
            return True
    return False


def _has_objects_check(shard: Shard, bucket: str) -> Callable[[GroupView], bool]:
    def run(view: GroupView) -> bool:
        return shard.has_objects(bucket)

    return run
