"""MetaService handlers for multipart uploads and users (mixed into MetaService)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import grpc.aio

from metaserver import keys, multipart
from metaserver.shard import ShardCursor
from metaserver.users import UserDirectory
from store import digests
from store._pb import common_pb2 as pb
from store._pb import meta_pb2
from store.errors import InvalidArgument, NoSuchUser
from store.layout import check_layout, check_upload_id
from store.limits import MAX_LIST_KEYS
from store.listing import merge_page
from store.names import check_user_metadata
from store.rpc import unary_handler

if TYPE_CHECKING:
    from metaserver.catalog import Buckets
    from metaserver.gc import GarbageCollector
    from metaserver.membership import Membership
    from metaserver.shard import Shard

MAX_LIST_PARTS = 1000


class MultipartHandlers:
    """Handlers that MetaService inherits; they use the attributes declared here."""

    shards: dict[int, Shard]
    buckets: Buckets
    collector: GarbageCollector
    users: UserDirectory | None
    settings: Any

    if TYPE_CHECKING:

        def _shard(self, bucket: str, key: bytes, shard_number: int) -> Shard: ...

        async def _ensure_bucket(self, name: str) -> None: ...

        async def _check_targets(self, layout: pb.Layout, name: str) -> None: ...

        @property
        def membership(self) -> Membership: ...

    @unary_handler
    async def CreateMultipartUpload(
        self, request: meta_pb2.CreateMultipartUploadRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.MultipartUpload:
        upload = request.upload
        shard = self._shard(upload.bucket, upload.key, request.shard)
        check_user_metadata(upload.user_metadata)
        if upload.checksum_algorithm:
            upload.checksum_algorithm = digests.check_algorithm(upload.checksum_algorithm)
        if upload.checksum_type not in ("", digests.COMPOSITE, digests.FULL_OBJECT):
            raise InvalidArgument(
                f"invalid checksum type {upload.checksum_type!r}; use COMPOSITE or FULL_OBJECT"
            )
        await self._ensure_bucket(upload.bucket)
        return await shard.submit(
            "create_multipart_upload",
            multipart.create_upload(self.buckets, upload, time.time_ns()),
        )

    @unary_handler
    async def CommitPart(
        self, request: meta_pb2.CommitPartRequest, context: grpc.aio.ServicerContext
    ) -> pb.PartInfo:
        shard = self._shard(request.bucket, request.key, request.shard)
        check_upload_id(request.upload_id)
        multipart.check_part_number(request.part.part_number)
        if request.part.size_bytes:
            check_upload_id(request.chunk_upload_id)
            check_layout(request.part.layout, request.part.size_bytes, request.chunk_upload_id)
            await self._check_targets(request.part.layout, f"part {request.part.part_number}")
        elif request.part.layout.stripes:
            raise InvalidArgument("an empty part must not have a layout")
        return await shard.submit(
            "commit_part", multipart.commit_part(shard, request, time.time_ns())
        )

    @unary_handler
    async def CompleteMultipartUpload(
        self, request: meta_pb2.CompleteMultipartUploadRequest, context: grpc.aio.ServicerContext
    ) -> pb.ObjectRecord:
        shard = self._shard(request.bucket, request.key, request.shard)
        check_upload_id(request.upload_id)
        await self._ensure_bucket(request.bucket)
        record = await shard.submit(
            "complete_multipart_upload",
            multipart.complete_upload(
                shard, self.buckets, request, time.time_ns(), int(self.settings.gc_delay_s * 1e9)
            ),
        )
        self.collector.wake()
        return record

    @unary_handler
    async def AbortMultipartUpload(
        self, request: meta_pb2.AbortMultipartUploadRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.AbortMultipartUploadResponse:
        shard = self._shard(request.bucket, request.key, request.shard)
        check_upload_id(request.upload_id)
        await shard.submit(
            "abort_multipart_upload", multipart.abort_upload(shard, request, time.time_ns())
        )
        self.collector.wake()
        return meta_pb2.AbortMultipartUploadResponse()

    @unary_handler
    async def ListParts(
        self, request: meta_pb2.ListPartsRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ListPartsResponse:
        shard = self._shard(request.bucket, request.key, request.shard)
        check_upload_id(request.upload_id)
        max_parts = min(request.max_parts or MAX_LIST_PARTS, MAX_LIST_PARTS)
        return multipart.list_parts(shard, request, max_parts)

    @unary_handler
    async def ListMultipartUploads(
        self, request: meta_pb2.ListMultipartUploadsRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ListMultipartUploadsResponse:
        await self._ensure_bucket(request.bucket)
        self.buckets.get(request.bucket)
        max_uploads = min(request.max_uploads or MAX_LIST_KEYS, MAX_LIST_KEYS)
        if request.upload_id_marker:
            check_upload_id(request.upload_id_marker)
        start = keys.upload_index_start(request.key_marker, request.upload_id_marker)
        scope = keys.upload_index_prefix(request.bucket)
        cursors = [
            ShardCursor(shard.db, scope, request.prefix, start) for shard in self.shards.values()
        ]
        items, truncated = merge_page(cursors, request.prefix, b"", max_uploads)
        response = meta_pb2.ListMultipartUploadsResponse(truncated=truncated)
        for item in items:
            response.uploads.add().MergeFromString(item.payload)
        return response

    # Users.

    def _users(self) -> UserDirectory:
        users = self.users
        if users is None:
            self.membership  # noqa: B018 - raises the error that names the primary
            raise AssertionError("the primary always has a user directory")
        return users

    @unary_handler
    async def CreateUser(
        self, request: meta_pb2.CreateUserRequest, context: grpc.aio.ServicerContext
    ) -> pb.UserRecord:
        return self._users().create(request.name, request.access_key, request.secret_key)

    @unary_handler
    async def DeleteUser(
        self, request: meta_pb2.DeleteUserRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.DeleteUserResponse:
        self._users().delete(request.name)
        return meta_pb2.DeleteUserResponse()

    @unary_handler
    async def ListUsers(
        self, request: meta_pb2.ListUsersRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ListUsersResponse:
        return meta_pb2.ListUsersResponse(users=self._users().list())

    @unary_handler
    async def GetCredentials(
        self, request: meta_pb2.GetCredentialsRequest, context: grpc.aio.ServicerContext
    ) -> pb.UserRecord:
        record = self._users().by_access_key(request.access_key)
        if record is None:
            raise NoSuchUser(f"no user has the access key {request.access_key}")
        return record
