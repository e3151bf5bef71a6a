"""AsyncClient methods for multipart uploads and users (AsyncClient inherits them).

A multipart upload collects parts uploaded in any order, possibly in
parallel, and completes into one object whose layout is the parts' layouts
one after another: completion copies no data. Each part is stored like an
object of its own (its chunks durable on dataservers, its MD5 as its ETag)
and then attached to the upload.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from store._pb import common_pb2 as pb
from store._pb import meta_pb2
from store.connection import Connection, Deadline
from store.digests import FULL_OBJECT, check_algorithm
from store.errors import InvalidArgument
from store.layout import check_upload_id
from store.limits import MAX_LIST_KEYS, MIB
from store.names import check_bucket_name, display_key, encode_key
from store.put import WriteOptions, Writer
from store.sources import PutData, open_source
from store.types import (
    MultipartUploadInfo,
    ObjectInfo,
    PartResult,
    PartsPage,
    UploadsPage,
    UserInfo,
)

if TYPE_CHECKING:
    from store.client import Key

# Every part but the last must be at least this big, as in S3.
MIN_PART_SIZE_BYTES = 5 * MIB
MAX_PART_NUMBER = 10_000
MAX_LIST_PARTS = 1000


class MultipartMethods:
    _connection: Connection
    _writer: Writer

    if TYPE_CHECKING:

        def _deadline(self, timeout_s: float | None, what: str) -> Deadline: ...

    async def _call(
        self, deadline: Deadline, bucket: str, key: bytes | None, method: str, request: Any
    ) -> Any:
        """Call `method` on the key's metaserver, or on the primary when `key` is None."""
        shard = None
        if key is not None:
            view = await self._connection.cluster_view(deadline)
            shard = self._connection.shard_for(view, bucket, key)
            request.shard = shard
        return await self._connection.meta_call(
            deadline,
            shard,
            lambda stub, _, timeout: getattr(stub, method)(request, timeout=timeout),
            idempotent=method not in ("CompleteMultipartUpload", "CreateMultipartUpload"),
        )

    async def create_multipart_upload(
        self,
        bucket: str,
        key: Key,
        *,
        content_type: str = "",
        metadata: Mapping[str, str] | None = None,
        system_metadata: Mapping[str, str] | None = None,
        checksum_algorithm: str = "",
        checksum_type: str = "",
        owner: str = "",
        timeout_s: float | None = None,
    ) -> str:
        """Start a multipart upload and return its upload id.

        `checksum_algorithm` makes every part carry that checksum; the object's
        is COMPOSITE (a checksum of the parts' checksums) or FULL_OBJECT (a CRC of
        the whole content), as `checksum_type` says.
        """
        check_bucket_name(bucket)
        raw_key = encode_key(key)
        WriteOptions(metadata=metadata, system_metadata=system_metadata).check()
        algorithm = check_algorithm(checksum_algorithm) if checksum_algorithm else ""
        if checksum_type == FULL_OBJECT and algorithm.startswith("sha"):
            raise InvalidArgument(f"{algorithm} has no FULL_OBJECT form; use COMPOSITE")
        upload = meta_pb2.MultipartUpload(
            bucket=bucket,
            key=raw_key,
            content_type=content_type,
            checksum_algorithm=algorithm,
            checksum_type=checksum_type,
            owner=owner,
        )
        upload.user_metadata.update(metadata or {})
        upload.system_metadata.update(system_metadata or {})
        request = meta_pb2.CreateMultipartUploadRequest(upload=upload)
        deadline = self._deadline(timeout_s, f"create multipart upload of {bucket}/{key!r}")
        created: meta_pb2.MultipartUpload = await self._call(
            deadline, bucket, raw_key, "CreateMultipartUpload", request
        )
        return created.upload_id

    async def upload_part(
        self,
        bucket: str,
        key: Key,
        upload_id: str,
        part_number: int,
        data: PutData,
        *,
        content_md5: str | None = None,
        checksum_algorithms: Sequence[str] = (),
        expected_checksums: Mapping[str, str] | None = None,
        chunk_size_bytes: int = 0,
        timeout_s: float | None = None,
    ) -> PartResult:
        """Store one part; uploading a part number again replaces that part."""
        check_bucket_name(bucket)
        raw_key = encode_key(key)
        check_upload_id(upload_id)
        if not 1 <= part_number <= MAX_PART_NUMBER:
            raise InvalidArgument(
                f"part number {part_number} is out of range; use 1 to {MAX_PART_NUMBER}"
            )
        options = WriteOptions(
            chunk_size_bytes=chunk_size_bytes,
            compute_md5=True,
            checksum_algorithms=checksum_algorithms,
            expected_checksums=expected_checksums if expected_checksums is not None else {},
            content_md5=content_md5,
        )
        options.check()
        name = f"part {part_number} of {bucket}/{display_key(raw_key)}"
        # A data call: no overall limit unless the caller sets one (see AsyncClient).
        deadline = Deadline(timeout_s, f"upload {name}")
        source = open_source(data)
        try:
            stored = await self._writer.store(
                bucket, raw_key, source, options, deadline, allow_inline=False
            )
        finally:
            await source.close()
        part = pb.PartInfo(
            part_number=part_number,
            size_bytes=stored.size_bytes,
            etag=stored.digests.md5_hex(),
            layout=stored.layout,
        )
        part.checksums.update(stored.digests.values())
        request = meta_pb2.CommitPartRequest(
            bucket=bucket,
            key=raw_key,
            upload_id=upload_id,
            chunk_upload_id=stored.upload_id,
            part=part,
            abandoned_chunks=stored.abandoned,
        )
        try:
            committed: pb.PartInfo = await self._call(
                deadline, bucket, raw_key, "CommitPart", request
            )
        except BaseException as error:
            if stored.upload_id:
                await self._writer.abort_quietly(bucket, raw_key, stored.upload_id, error)
            raise
        return PartResult.from_proto(committed)

    async def complete_multipart_upload(
        self,
        bucket: str,
        key: Key,
        upload_id: str,
        parts: Sequence[tuple[int, str]],
        *,
        if_match: str = "",
        if_none_match: bool = False,
        if_none_match_etags: Sequence[str] = (),
        min_part_size_bytes: int = MIN_PART_SIZE_BYTES,
        part_checksums: Mapping[int, Mapping[str, str]] | None = None,
        require_part_checksums: bool = False,
        expected_checksums: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> ObjectInfo:
        """Complete the upload from (part number, ETag) pairs in ascending part order.

        `part_checksums` maps part numbers to the checksums the client lists for
        them (algorithm to base64 value). With `require_part_checksums`, an
        upload created with a COMPOSITE checksum needs its algorithm's value for
        every part (InvalidRequest otherwise). The object's checksums come from
        the uploaded parts, and `expected_checksums` are values they must have
        (BadDigest otherwise). A failed check completes nothing.
        """
        check_bucket_name(bucket)
        raw_key = encode_key(key)
        check_upload_id(upload_id)
        request = meta_pb2.CompleteMultipartUploadRequest(
            bucket=bucket,
            key=raw_key,
            upload_id=upload_id,
            if_match_etag=if_match,
            if_none_match_any=if_none_match,
            if_none_match_etags=if_none_match_etags,
            min_part_size_bytes=min_part_size_bytes,
            expected_checksums=expected_checksums or {},
            require_part_checksums=require_part_checksums,
        )
        listed_checksums = part_checksums or {}
        for number, etag in parts:
            request.parts.add(
                part_number=number, etag=etag, checksums=listed_checksums.get(number, {})
            )
        deadline = self._deadline(timeout_s, f"complete upload {upload_id} of {bucket}/{key!r}")
        record: pb.ObjectRecord = await self._call(
            deadline, bucket, raw_key, "CompleteMultipartUpload", request
        )
        return ObjectInfo.from_record(bucket, raw_key, record)

    async def abort_multipart_upload(
        self, bucket: str, key: Key, upload_id: str, *, timeout_s: float | None = None
    ) -> None:
        """Abort the upload; its parts' chunks are deleted."""
        check_bucket_name(bucket)
        raw_key = encode_key(key)
        check_upload_id(upload_id)
        request = meta_pb2.AbortMultipartUploadRequest(
            bucket=bucket, key=raw_key, upload_id=upload_id
        )
        deadline = self._deadline(timeout_s, f"abort upload {upload_id} of {bucket}/{key!r}")
        await self._call(deadline, bucket, raw_key, "AbortMultipartUpload", request)

    async def list_parts(
        self,
        bucket: str,
        key: Key,
        upload_id: str,
        *,
        part_number_marker: int = 0,
        max_parts: int = MAX_LIST_PARTS,
        timeout_s: float | None = None,
    ) -> PartsPage:
        """Return the upload's parts after `part_number_marker`, in part order."""
        check_bucket_name(bucket)
        raw_key = encode_key(key)
        check_upload_id(upload_id)
        if not 1 <= max_parts <= MAX_LIST_PARTS:
            raise InvalidArgument(f"max_parts {max_parts} must be between 1 and {MAX_LIST_PARTS}")
        request = meta_pb2.ListPartsRequest(
            bucket=bucket,
            key=raw_key,
            upload_id=upload_id,
            part_number_marker=part_number_marker,
            max_parts=max_parts,
        )
        deadline = self._deadline(timeout_s, f"list parts of upload {upload_id}")
        reply: meta_pb2.ListPartsResponse = await self._call(
            deadline, bucket, raw_key, "ListParts", request
        )
        parts = [PartResult.from_proto(part) for part in reply.parts]
        return PartsPage(
            MultipartUploadInfo.from_proto(reply.upload),
            parts,
            reply.truncated,
            parts[-1].part_number if parts else part_number_marker,
        )

    async def list_multipart_uploads(
        self,
        bucket: str,
        *,
        prefix: Key = "",
        key_marker: Key = "",
        upload_id_marker: str = "",
        max_uploads: int = MAX_LIST_KEYS,
        timeout_s: float | None = None,
    ) -> UploadsPage:
        """Return the bucket's uploads in progress after the markers, by key then upload id."""
        check_bucket_name(bucket)
        if not 1 <= max_uploads <= MAX_LIST_KEYS:
            raise InvalidArgument(
                f"max_uploads {max_uploads} must be between 1 and {MAX_LIST_KEYS}"
            )
        if upload_id_marker:
            check_upload_id(upload_id_marker)
        request = meta_pb2.ListMultipartUploadsRequest(
            bucket=bucket,
            prefix=_raw(prefix),
            key_marker=_raw(key_marker),
            upload_id_marker=upload_id_marker,
            max_uploads=max_uploads,
        )
        deadline = self._deadline(timeout_s, f"list multipart uploads of {bucket}")
        view = await self._connection.cluster_view(deadline)
        replies: list[meta_pb2.ListMultipartUploadsResponse] = []
        for address in view.metaserver_addresses:
            call = _uploads_call(self._connection, address, request)
            replies.append(await self._connection.meta_call(deadline, None, call, idempotent=True))
        return _merge_uploads(replies, max_uploads)

    # Users.

    async def create_user(
        self,
        name: str,
        *,
        access_key: str = "",
        secret_key: str = "",
        timeout_s: float | None = None,
    ) -> UserInfo:
        """Create a user; the reply carries the new secret key, shown nowhere else."""
        request = meta_pb2.CreateUserRequest(
            name=name, access_key=access_key, secret_key=secret_key
        )
        deadline = self._deadline(timeout_s, f"create user {name}")
        record: pb.UserRecord = await self._call(deadline, "", None, "CreateUser", request)
        return UserInfo.from_record(record)

    async def delete_user(self, name: str, *, timeout_s: float | None = None) -> None:
        deadline = self._deadline(timeout_s, f"delete user {name}")
        await self._call(deadline, "", None, "DeleteUser", meta_pb2.DeleteUserRequest(name=name))

    async def list_users(self, *, timeout_s: float | None = None) -> list[UserInfo]:
        """Return every user, without secret keys."""
        deadline = self._deadline(timeout_s, "list users")
        reply: meta_pb2.ListUsersResponse = await self._call(
            deadline, "", None, "ListUsers", meta_pb2.ListUsersRequest()
        )
        return [UserInfo.from_record(record) for record in reply.users]

    async def get_credentials(self, access_key: str, *, timeout_s: float | None = None) -> UserInfo:
        """Return the user of an access key with its secret; raises NotFound for none."""
        deadline = self._deadline(timeout_s, "look up an access key")
        request = meta_pb2.GetCredentialsRequest(access_key=access_key)
        record: pb.UserRecord = await self._call(deadline, "", None, "GetCredentials", request)
        return UserInfo.from_record(record)


def _uploads_call(
    connection: Connection, address: str, request: meta_pb2.ListMultipartUploadsRequest
) -> Any:
    """Build a ListMultipartUploads call on one metaserver; each lists its own shards."""

    def call(_stub: Any, _view: Any, timeout: float | None) -> Any:
        return connection.meta_stub(address).ListMultipartUploads(request, timeout=timeout)

    return call


def _raw(value: Key) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _merge_uploads(
    replies: list[meta_pb2.ListMultipartUploadsResponse], max_uploads: int
) -> UploadsPage:
    merged = sorted(
        (upload for reply in replies for upload in reply.uploads),
        key=lambda upload: (upload.key, bytes.fromhex(upload.upload_id)),
    )
    truncated = len(merged) > max_uploads or any(reply.truncated for reply in replies)
    kept = merged[:max_uploads]
    uploads = [MultipartUploadInfo.from_proto(upload) for upload in kept]
    last = uploads[-1] if uploads and truncated else None
    return UploadsPage(
        uploads,
        truncated,
        last.key if last else "",
        last.upload_id if last else "",
    )
