"""The MetaService gRPC servicer."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc.aio

from metaserver import keys, objects
from metaserver.catalog import BucketCatalog
from metaserver.gc import GarbageCollector
from metaserver.membership import Membership
from metaserver.shard import GroupView, Shard
from store._pb import common_pb2 as pb
from store._pb import meta_pb2, meta_pb2_grpc
from store.checksum import crc32c
from store.errors import BucketNotEmpty, InvalidArgument, NoSuchKey, StaleEpoch
from store.layout import check_layout, check_upload_id
from store.limits import MAX_CHUNK_SIZE_BYTES, MAX_LIST_KEYS, MIN_CHUNK_SIZE_BYTES
from store.listing import merge_page
from store.names import check_bucket_name, check_user_metadata, display_key, encode_key
from store.rpc import unary_handler
from store.shardmap import shard_of


@dataclass(slots=True)
class ServiceSettings:
    gc_delay_s: float
    started_unix_ms: int


class MetaService(meta_pb2_grpc.MetaServiceServicer):
    def __init__(
        self,
        server_id: str,
        shards: dict[int, Shard],
        catalog: BucketCatalog,
        membership: Membership,
        collector: GarbageCollector,
        settings: ServiceSettings,
    ) -> None:
        self.server_id = server_id
        self.address = ""
        self.shards = shards
        self.catalog = catalog
        self.membership = membership
        self.collector = collector
        self.settings = settings

    # Helpers.

    def _shard(self, bucket: str, key: bytes, shard_number: int) -> Shard:
        """Return the local shard for (bucket, key), checking the caller's routing."""
        check_bucket_name(bucket)
        encode_key(key)
        expected = shard_of(bucket, key, self.membership.config.shard_count)
        if shard_number != expected:
            raise InvalidArgument(
                f"{bucket}/{display_key(key)} belongs to shard {expected}, request named "
                f"shard {shard_number}"
            )
        shard = self.shards.get(expected)
        if shard is None:
            error = StaleEpoch(
                f"metaserver {self.server_id} does not serve shard {expected} at epoch "
                f"{self.membership.epoch}; refresh the cluster map"
            )
            error.server_epoch = self.membership.epoch  # type: ignore[attr-defined]
            raise error
        return shard

    def _check_epoch(self, epoch: int) -> None:
        if epoch < self.membership.epoch:
            error = StaleEpoch(
                f"cluster map epoch {epoch} is older than the metaserver's "
                f"{self.membership.epoch}; refresh the cluster map"
            )
            error.server_epoch = self.membership.epoch  # type: ignore[attr-defined]
            raise error

    # Cluster map and membership.

    @unary_handler
    async def GetClusterMap(
        self, request: meta_pb2.GetClusterMapRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClusterMap:
        return self.membership.cluster_map()

    @unary_handler
    async def RegisterDataserver(
        self, request: meta_pb2.RegisterDataserverRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.RegisterDataserverResponse:
        if not request.info.id or not request.info.address:
            raise InvalidArgument("RegisterDataserver needs the dataserver's id and address")
        self.membership.register(request.info)
        return meta_pb2.RegisterDataserverResponse(
            epoch=self.membership.epoch, cluster_id=self.membership.config.cluster_id
        )

    @unary_handler
    async def Heartbeat(
        self, request: meta_pb2.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.HeartbeatResponse:
        known = self.membership.heartbeat(request.info)
        return meta_pb2.HeartbeatResponse(epoch=self.membership.epoch, known=known)

    # Buckets.

    @unary_handler
    async def CreateBucket(
        self, request: meta_pb2.CreateBucketRequest, context: grpc.aio.ServicerContext
    ) -> pb.BucketRecord:
        return self.catalog.create(request.name, request.owner)

    @unary_handler
    async def DeleteBucket(
        self, request: meta_pb2.DeleteBucketRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.DeleteBucketResponse:
        name = request.name
        self.catalog.begin_delete(name)
        deleted = False
        try:
            # Each check runs in the shard's writer, after every commit that was already
            # admitted; commits admitted later see the bucket as being deleted.
            for shard in self.shards.values():
                if await shard.submit("bucket_empty_check", _has_objects_check(shard, name)):
                    raise BucketNotEmpty(f"bucket {name!r} is not empty; delete its objects first")
            deleted = True
        finally:
            self.catalog.finish_delete(name, deleted)
        return meta_pb2.DeleteBucketResponse()

    @unary_handler
    async def HeadBucket(
        self, request: meta_pb2.HeadBucketRequest, context: grpc.aio.ServicerContext
    ) -> pb.BucketRecord:
        return self.catalog.get(request.name)

    @unary_handler
    async def ListBuckets(
        self, request: meta_pb2.ListBucketsRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ListBucketsResponse:
        names = sorted(self.catalog.buckets)
        return meta_pb2.ListBucketsResponse(buckets=[self.catalog.buckets[n] for n in names])

    # Objects.

    @unary_handler
    async def OpenUpload(
        self, request: meta_pb2.OpenUploadRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.OpenUploadResponse:
        shard = self._shard(request.bucket, request.key, request.shard)
        self._check_epoch(request.epoch)
        config = self.membership.config
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
                self.catalog,
                request.bucket,
                request.key,
                chunk_size,
                config.replicas,
                time.time_ns(),
            ),
        )
        return meta_pb2.OpenUploadResponse(
            upload_id=session.upload_id,
            chunk_size_bytes=session.chunk_size_bytes,
            replicas=session.replicas,
            epoch=self.membership.epoch,
        )

    @unary_handler
    async def CommitObject(
        self, request: meta_pb2.CommitObjectRequest, context: grpc.aio.ServicerContext
    ) -> pb.ObjectRecord:
        shard = self._shard(request.bucket, request.key, request.shard)
        self._check_record(request)
        return await shard.submit(
            "commit_object",
            objects.commit_object(
                shard, self.catalog, request, time.time_ns(), int(self.settings.gc_delay_s * 1e9)
            ),
        )

    def _check_record(self, request: meta_pb2.CommitObjectRequest) -> None:
        record = request.record
        check_user_metadata(record.user_metadata)
        name = f"{request.bucket}/{display_key(request.key)}"
        if not request.upload_id:
            if not record.is_inline or record.layout.stripes:
                raise InvalidArgument(f"commit of {name} without an upload id must be inline")
            limit = self.membership.config.inline_max_bytes
            if len(record.inline_data) > limit:
                raise InvalidArgument(
                    f"inline data of {name} is {len(record.inline_data)} bytes; objects over "
                    f"{limit} bytes must be written to dataservers through an upload"
                )
            if len(record.inline_data) != record.size_bytes:
                raise InvalidArgument(
                    f"{name}: inline data is {len(record.inline_data)} bytes, size says "
                    f"{record.size_bytes}"
                )
            if crc32c(record.inline_data) != record.inline_crc32c:
                raise InvalidArgument(f"{name}: inline data does not match its CRC32C; retry")
            return
        check_upload_id(request.upload_id)
        if record.is_inline or record.inline_data:
            raise InvalidArgument(
                f"commit of upload {request.upload_id} must not carry inline data"
            )
        check_layout(record.layout, record.size_bytes, request.upload_id)
        for stripe in record.layout.stripes:
            for chunk in stripe.chunks:
                if chunk.target not in self.membership.dataservers:
                    raise InvalidArgument(f"{name}: layout names unknown dataserver {chunk.target}")

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
        shard = self._shard(request.bucket, request.key, request.shard)
        record = shard.get_object(request.bucket, request.key)
        if record is None:
            self.catalog.get(request.bucket)
            raise NoSuchKey(f"object {request.bucket}/{display_key(request.key)} does not exist")
        if not request.include_inline:
            record.ClearField("inline_data")
        return record

    @unary_handler
    async def DeleteObject(
        self, request: meta_pb2.DeleteObjectRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.DeleteObjectResponse:
        shard = self._shard(request.bucket, request.key, request.shard)
        self.catalog.get(request.bucket)
        return await shard.submit(
            "delete_object",
            objects.delete_object(
                shard, request, time.time_ns(), int(self.settings.gc_delay_s * 1e9)
            ),
        )

    @unary_handler
    async def ListObjects(
        self, request: meta_pb2.ListObjectsRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ListObjectsResponse:
        self.catalog.get(request.bucket)
        max_keys = request.max_keys or MAX_LIST_KEYS
        if max_keys > MAX_LIST_KEYS:
            raise InvalidArgument(f"max_keys {max_keys} is over the maximum of {MAX_LIST_KEYS}")
        cursors = [
            shard.scan_objects(request.bucket, request.prefix, request.start_key)
            for shard in self.shards.values()
        ]
        items, truncated = merge_page(cursors, request.prefix, request.delimiter, max_keys)
        response = meta_pb2.ListObjectsResponse(truncated=truncated)
        for item in items:
            if item.is_prefix:
                response.common_prefixes.append(item.key)
            else:
                entry = response.entries.add()
                entry.MergeFromString(keys.decode_summary(item.payload))
                entry.key = item.key
        return response

    # Operations.

    @unary_handler
    async def GetStatus(
        self, request: meta_pb2.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.MetaserverStatus:
        status = meta_pb2.MetaserverStatus(
            id=self.server_id,
            address=self.address,
            epoch=self.membership.epoch,
            gc_chunks_deleted=self.collector.counters.chunks_deleted,
            gc_uploads_expired=self.collector.counters.uploads_expired,
            started_unix_ms=self.settings.started_unix_ms,
        )
        for number, shard in sorted(self.shards.items()):
            status.shards.add(
                shard=number,
                estimated_keys=shard.estimated_keys(),
                disk_bytes=shard.disk_bytes(),
                gc_entries=shard.count_prefix(keys.GC_TAG, 100_000),
                open_uploads=shard.count_prefix(keys.UPLOAD_TAG, 100_000),
                commits=shard.counters.commits,
                sync_writes=shard.counters.sync_writes,
            )
        return status


def _has_objects_check(shard: Shard, bucket: str) -> Callable[[GroupView], bool]:
    def run(view: GroupView) -> bool:
        return shard.has_objects(bucket)

    return run
