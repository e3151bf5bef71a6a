"""AsyncClient: the asyncio SDK.

    async with store.AsyncClient("127.0.0.1:7000") as client:
        await client.create_bucket("photos")
        await client.put("photos", "cat.jpg", data)
        data = await client.get("photos", "cat.jpg")

Every method takes `timeout_s`, the time the whole call may take. Metadata
calls default to the client's `timeout_s`. Data calls (put, get and their
variants) default to no overall limit, since their duration grows with the
object, but each chunk transfer still fails after `chunk_timeout_s`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from store._pb import common_pb2 as pb
from store._pb import meta_pb2
from store.batching import commit_batcher, stat_batcher
from store.checksum import crc32c
from store.client_multipart import MultipartMethods
from store.clustermap import ClusterView
from store.connection import Connection, Deadline
from store.download import Reader, ReadTarget
from store.errors import (
    ChecksumMismatch,
    InvalidArgument,
    Unavailable,
)
from store.limits import MAX_LIST_KEYS
from store.listing import (
    ItemCursor,
    ListItem,
    decode_token,
    encode_token,
    merge_page,
    next_start_key,
)
from store.memory import tune_malloc
from store.names import check_bucket_name, display_key, encode_key
from store.put import WriteOptions, Writer, check_system_metadata_names
from store.reader import AsyncObjectReader
from store.scheme import check as check_scheme
from store.serving import split_address
from store.sources import PutData, Source, open_path_source, open_source
from store.types import BucketInfo, ListEntry, ListPage, ObjectInfo

log = logging.getLogger(__name__)

Key = str | bytes

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_WINDOW_CHUNKS = 8
DEFAULT_CHUNK_TIMEOUT_S = 60.0


class AsyncClient(MultipartMethods):
    """Client of one cluster, reached through any of its metaservers.

    `address` is one "host:port" or several separated by commas. `window_chunks`
    bounds the chunks one put or get has in flight. `tune_memory` raises the C
    allocator's mmap and trim thresholds for the whole process so megabyte
    buffers are reused instead of page-faulted in anew (see store.memory).
    """

    def __init__(
        self,
        address: str | list[str],
        *,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        window_chunks: int = DEFAULT_WINDOW_CHUNKS,
        chunk_timeout_s: float = DEFAULT_CHUNK_TIMEOUT_S,
        tune_memory: bool = True,
    ) -> None:
        addresses = address.split(",") if isinstance(address, str) else list(address)
        addresses = [a.strip() for a in addresses if a.strip()]
        if not addresses:
            raise InvalidArgument("AsyncClient needs at least one metaserver address")
        for one in addresses:
            split_address(one)
        if window_chunks < 1:
            raise InvalidArgument(f"window_chunks {window_chunks} must be at least 1")
        if tune_memory:
            tune_malloc()
        self.timeout_s = timeout_s
        self.window_chunks = window_chunks
        self.chunk_timeout_s = chunk_timeout_s
        self._connection = Connection(addresses)
        self._reader = Reader(self._connection, window_chunks, chunk_timeout_s)
        self._stats = stat_batcher(self._connection.channels)
        self._writer = Writer(
            self._connection,
            commit_batcher(self._connection.channels),
            window_chunks,
            chunk_timeout_s,
        )

    async def __aenter__(self) -> AsyncClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self, timeout_s: float | None = None) -> None:
        """Fetch the cluster map; raises Unavailable when no metaserver responds."""
        await self._connection.refresh_map(self._deadline(timeout_s, "connect"))

    async def close(self) -> None:
        await self._connection.close()

    def _deadline(self, timeout_s: float | None, what: str) -> Deadline:
        return Deadline(self.timeout_s if timeout_s is None else timeout_s, what)

    async def cluster_map(self, timeout_s: float | None = None) -> pb.ClusterMap:
        """Return the current cluster map, fetched fresh."""
        view = await self._connection.refresh_map(self._deadline(timeout_s, "cluster map"))
        return view.map

    def bad_chunks(self) -> list[tuple[bytes, str, str]]:
        """Return the chunks that recent reads found missing or corrupt, oldest first.

        Each entry is (chunk id, dataserver id, error). Reads decode around such
        chunks when the layout allows it; repair rebuilds them.
        """
        return list(self._reader.bad_chunks)

    # Membership.

    async def drain_dataserver(
        self, dataserver_id: str, *, cancel: bool = False, timeout_s: float | None = None
    ) -> pb.DataserverInfo:
        """Stop new chunks going to a dataserver and have repair move its chunks off.

        With `cancel`, the dataserver takes new chunks again. Watch the dataserver's
        chunk count fall to zero in `cluster_map()` before removing it.
        """
        request = meta_pb2.DrainDataserverRequest(id=dataserver_id, cancel=cancel)
        info: pb.DataserverInfo = await self._connection.meta_call(
            self._deadline(timeout_s, f"drain dataserver {dataserver_id}"),
            None,
            lambda stub, _, t: stub.DrainDataserver(request, timeout=t),
            idempotent=True,
        )
        return info

    async def move_shard(
        self, shard: int, target: str, *, timeout_s: float | None = None
    ) -> meta_pb2.MoveShardResponse:
        """Move a metadata shard to the metaserver with id or address `target`.

        Writes to the shard wait while its data is copied, then go to the target.
        Reads go on at the source until the target serves the shard.
        """
        request = meta_pb2.MoveShardRequest(shard=shard, target=target)
        reply: meta_pb2.MoveShardResponse = await self._connection.meta_call(
            self._deadline(timeout_s, f"move shard {shard} to {target}"),
            None,
            lambda stub, _, t: stub.MoveShard(request, timeout=t),
            idempotent=False,
        )
        return reply

    async def remove_dataserver(
        self, dataserver_id: str, *, timeout_s: float | None = None
    ) -> None:
        """Forget a stopped dataserver; raises PreconditionFailed while layouts name its chunks."""
        request = meta_pb2.RemoveDataserverRequest(id=dataserver_id)
        await self._connection.meta_call(
            self._deadline(timeout_s, f"remove dataserver {dataserver_id}"),
            None,
            lambda stub, _, t: stub.RemoveDataserver(request, timeout=t),
            idempotent=False,
        )

    # Buckets.

    async def create_bucket(
        self, name: str, *, owner: str = "", scheme: str = "", timeout_s: float | None = None
    ) -> BucketInfo:
        """Create a bucket whose objects are protected by `scheme`.

        `scheme` is "ec:K+M" (erasure coding), "rep:N" (N copies), "auto", or empty
        for the cluster's default; it cannot change later.
        """
        check_bucket_name(name)
        if scheme:
            check_scheme(scheme)
        request = meta_pb2.CreateBucketRequest(name=name, owner=owner, scheme=scheme)
        record = await self._connection.meta_call(
            self._deadline(timeout_s, f"create bucket {name}"),
            None,
            lambda stub, _, t: stub.CreateBucket(request, timeout=t),
            idempotent=False,
        )
        return BucketInfo.from_record(record)

    async def delete_bucket(self, name: str, *, timeout_s: float | None = None) -> None:
        """Delete an empty bucket; raises BucketNotEmpty when it still has objects."""
        check_bucket_name(name)
        request = meta_pb2.DeleteBucketRequest(name=name)
        await self._connection.meta_call(
            self._deadline(timeout_s, f"delete bucket {name}"),
            None,
            lambda stub, _, t: stub.DeleteBucket(request, timeout=t),
            idempotent=False,
        )

    async def head_bucket(self, name: str, *, timeout_s: float | None = None) -> BucketInfo:
        """Return the bucket; raises NoSuchBucket when it does not exist."""
        check_bucket_name(name)
        request = meta_pb2.HeadBucketRequest(name=name)
        record = await self._connection.meta_call(
            self._deadline(timeout_s, f"head bucket {name}"),
            None,
            lambda stub, _, t: stub.HeadBucket(request, timeout=t),
            idempotent=True,
        )
        return BucketInfo.from_record(record)

    async def update_bucket_settings(
        self,
        name: str,
        *,
        set_entries: Mapping[str, str] | None = None,
        remove_entries: Iterable[str] = (),
        timeout_s: float | None = None,
    ) -> BucketInfo:
        """Set and remove settings of a bucket (its S3 CORS rules, for one) in one write."""
        check_bucket_name(name)
        request = meta_pb2.UpdateBucketSettingsRequest(
            name=name, set_settings=dict(set_entries or {}), remove_settings=list(remove_entries)
        )
        record = await self._connection.meta_call(
            self._deadline(timeout_s, f"update settings of bucket {name}"),
            None,
            lambda stub, _, t: stub.UpdateBucketSettings(request, timeout=t),
            idempotent=True,
        )
        return BucketInfo.from_record(record)

    async def list_buckets(self, *, timeout_s: float | None = None) -> list[BucketInfo]:
        reply = await self._connection.meta_call(
            self._deadline(timeout_s, "list buckets"),
            None,
            lambda stub, _, t: stub.ListBuckets(meta_pb2.ListBucketsRequest(), timeout=t),
            idempotent=True,
        )
        return [BucketInfo.from_record(record) for record in reply.buckets]

    # Writes.

    async def put(
        self,
        bucket: str,
        key: Key,
        data: PutData,
        *,
        content_type: str = "",
        metadata: Mapping[str, str] | None = None,
        system_metadata: Mapping[str, str] | None = None,
        chunk_size_bytes: int = 0,
        compute_md5: bool = False,
        checksum_algorithms: Sequence[str] = (),
        expected_checksums: Mapping[str, str] | None = None,
        content_md5: str | None = None,
        if_match: str = "",
        if_none_match: bool = False,
        if_none_match_etags: Sequence[str] = (),
        timeout_s: float | None = None,
    ) -> ObjectInfo:
        """Store an object from bytes, a binary file object or an (async) iterator of bytes.

        Streams of unknown length are read one chunk at a time. `compute_md5`
        makes the ETag the MD5 of the content (slower); otherwise large
        objects get an ETag derived from their chunk checksums.
        `checksum_algorithms` names checksums to store (crc32, crc32c,
        crc64nvme, sha1, sha256); `expected_checksums` and `content_md5`
        (base64) are checked once the last byte is read, and a mismatch
        raises BadDigest with nothing committed. `if_match` (an ETag, or "*"
        for any object), `if_none_match` (no object) and `if_none_match_etags`
        (none of these ETags) make the commit conditional (PreconditionFailed).
        """
        options = WriteOptions(
            content_type=content_type,
            metadata=metadata,
            system_metadata=system_metadata,
            chunk_size_bytes=chunk_size_bytes,
            compute_md5=compute_md5,
            checksum_algorithms=checksum_algorithms,
            expected_checksums=expected_checksums if expected_checksums is not None else {},
            content_md5=content_md5,
            if_match=if_match,
            if_none_match=if_none_match,
            if_none_match_etags=tuple(if_none_match_etags),
        )
        return await self._put(bucket, key, open_source(data), options, timeout_s)

    async def put_file(
        self,
        bucket: str,
        key: Key,
        path: str | os.PathLike[str],
        *,
        content_type: str = "",
        metadata: Mapping[str, str] | None = None,
        chunk_size_bytes: int = 0,
        compute_md5: bool = False,
        timeout_s: float | None = None,
    ) -> ObjectInfo:
        """Store the file at `path` as an object."""
        options = WriteOptions(
            content_type=content_type,
            metadata=metadata,
            chunk_size_bytes=chunk_size_bytes,
            compute_md5=compute_md5,
        )
        return await self._put(bucket, key, open_path_source(path), options, timeout_s)

    async def _put(
        self,
        bucket: str,
        key: Key,
        source: Source,
        options: WriteOptions,
        timeout_s: float | None,
    ) -> ObjectInfo:
        try:
            check_bucket_name(bucket)
            raw_key = encode_key(key)
            deadline = Deadline(timeout_s, f"put {bucket}/{display_key(raw_key)}")
            record = await self._writer.put(bucket, raw_key, source, options, deadline)
        finally:
            await source.close()
        return ObjectInfo.from_record(bucket, raw_key, record)

    async def delete(
        self, bucket: str, key: Key, *, if_match: str = "", timeout_s: float | None = None
    ) -> bool:
        """Delete an object; return False when it did not exist."""
        check_bucket_name(bucket)
        raw_key = encode_key(key)
        deadline = self._deadline(timeout_s, f"delete {bucket}/{display_key(raw_key)}")
        view = await self._connection.cluster_view(deadline)
        shard = self._connection.shard_for(view, bucket, raw_key)
        request = meta_pb2.DeleteObjectRequest(
            bucket=bucket, key=raw_key, shard=shard, if_match_etag=if_match
        )
        reply = await self._connection.meta_call(
            deadline,
            shard,
            lambda stub, _, t: stub.DeleteObject(request, timeout=t),
            idempotent=True,
        )
        return bool(reply.existed)

    async def update_system_metadata(
        self,
        bucket: str,
        key: Key,
        *,
        set_entries: Mapping[str, str] | None = None,
        remove_entries: Iterable[str] = (),
        if_version_id: str = "",
        timeout_s: float | None = None,
    ) -> ObjectInfo:
        """Set and remove system metadata entries of an object in place, as one write.

        The bytes, ETag, version id and modification time stay. With `if_version_id`,
        PreconditionFailed unless that version is still the current one.
        """
        check_bucket_name(bucket)
        check_system_metadata_names(set_entries or {})
        raw_key = encode_key(key)
        deadline = self._deadline(timeout_s, f"update {bucket}/{display_key(raw_key)}")
        view = await self._connection.cluster_view(deadline)
        shard = self._connection.shard_for(view, bucket, raw_key)
        request = meta_pb2.UpdateObjectMetadataRequest(
            bucket=bucket,
            key=raw_key,
            shard=shard,
            set_system_metadata=dict(set_entries or {}),
            remove_system_metadata=list(remove_entries),
            if_version_id=if_version_id,
        )
        record = await self._connection.meta_call(
            deadline,
            shard,
            lambda stub, _, t: stub.UpdateObjectMetadata(request, timeout=t),
            idempotent=True,
        )
        return ObjectInfo.from_record(bucket, raw_key, record)

    # Reads.

    async def _stat_record(
        self, bucket: str, key: bytes, include_inline: bool, deadline: Deadline
    ) -> pb.ObjectRecord:
        view = await self._connection.cluster_view(deadline)
        shard = self._connection.shard_for(view, bucket, key)
        request = meta_pb2.StatObjectRequest(
            bucket=bucket, key=key, shard=shard, include_inline=include_inline
        )

        def call(stub: Any, view: ClusterView, timeout: float | None) -> Any:
            return self._stats.call(view.metaserver_for_shard(shard), request, timeout)

        record: pb.ObjectRecord = await self._connection.meta_call(
            deadline, shard, call, idempotent=True
        )
        return record

    async def stat(self, bucket: str, key: Key, *, timeout_s: float | None = None) -> ObjectInfo:
        """Return an object's metadata; raises NoSuchKey or NoSuchBucket."""
        check_bucket_name(bucket)
        raw_key = encode_key(key)
        deadline = self._deadline(timeout_s, f"stat {bucket}/{display_key(raw_key)}")
        record = await self._stat_record(bucket, raw_key, False, deadline)
        return ObjectInfo.from_record(bucket, raw_key, record)

    async def _target(self, bucket: str, key: Key, deadline: Deadline) -> ReadTarget:
        check_bucket_name(bucket)
        raw_key = encode_key(key)
        record = await self._stat_record(bucket, raw_key, True, deadline)
        target = ReadTarget(bucket, raw_key, record)
        if record.is_inline and crc32c(record.inline_data) != record.inline_crc32c:
            raise ChecksumMismatch(f"inline data of {target.name()} does not match its CRC32C")
        return target

    async def get(
        self,
        bucket: str,
        key: Key,
        *,
        offset: int = 0,
        length: int | None = None,
        timeout_s: float | None = None,
    ) -> bytes:
        """Return an object's bytes, or `length` bytes from `offset` (clipped at the end)."""
        deadline = Deadline(timeout_s, f"get {bucket}/{key!r}")
        target = await self._target(bucket, key, deadline)
        start, size = _clip_range(target, offset, length)
        if target.record.is_inline:
            return target.record.inline_data[start : start + size]
        pieces = await self._reader.read_range(target, start, size, deadline)
        if len(pieces) == 1 and isinstance(pieces[0], bytes):
            return pieces[0]
        return b"".join(pieces)

    async def get_into(
        self,
        bucket: str,
        key: Key,
        buffer: Any,
        *,
        offset: int = 0,
        timeout_s: float | None = None,
    ) -> int:
        """Read the object from `offset` into a writable buffer; return the bytes copied.

        Copies min(len(buffer), size - offset) bytes straight from the network into
        the buffer (a bytearray, memoryview, mmap or NumPy array), with no
        intermediate objects: the fastest way to read large objects.
        """
        deadline = Deadline(timeout_s, f"get {bucket}/{key!r}")
        target = await self._target(bucket, key, deadline)
        out = memoryview(buffer).cast("B")
        if out.readonly:
            raise InvalidArgument("get_into needs a writable buffer")
        start, size = _clip_range(target, offset, len(out))
        if target.record.is_inline:
            out[:size] = target.record.inline_data[start : start + size]
            return size
        await self._reader.read_range_into(target, start, out[:size], deadline)
        return size

    async def get_stream(
        self,
        bucket: str,
        key: Key,
        *,
        offset: int = 0,
        length: int | None = None,
        timeout_s: float | None = None,
    ) -> AsyncIterator[bytes]:
        """Yield an object's bytes in order, reading ahead a bounded window of chunks."""
        deadline = Deadline(timeout_s, f"get {bucket}/{key!r}")
        target = await self._target(bucket, key, deadline)
        start, size = _clip_range(target, offset, length)
        if target.record.is_inline:
            if size:
                yield target.record.inline_data[start : start + size]
            return
        async for piece in self._reader.stream_range(target, start, size, deadline):
            yield piece

    async def get_file(
        self, bucket: str, key: Key, path: str | os.PathLike[str], *, timeout_s: float | None = None
    ) -> ObjectInfo:
        """Write an object to the file at `path` (replaced only once the whole object arrived)."""
        deadline = Deadline(timeout_s, f"get {bucket}/{key!r} to {path}")
        target = await self._target(bucket, key, deadline)
        final = os.fspath(path)
        temp = f"{final}.{os.getpid()}.part"
        try:
            file = await asyncio.to_thread(open, temp, "wb")
        except OSError as exc:
            raise InvalidArgument(f"cannot write {final}: {exc.strerror}") from None
        try:
            if target.record.is_inline:
                await asyncio.to_thread(file.write, target.record.inline_data)
            else:
                size = target.record.size_bytes
                async for piece in self._reader.stream_range(target, 0, size, deadline):
                    await asyncio.to_thread(file.write, piece)
            await asyncio.to_thread(file.close)
            os.replace(temp, final)
        except BaseException:
            file.close()
            if os.path.exists(temp):
                os.unlink(temp)
            raise
        return ObjectInfo.from_record(target.bucket, target.key, target.record)

    async def open(
        self, bucket: str, key: Key, *, timeout_s: float | None = None
    ) -> AsyncObjectReader:
        """Open an object for reading with seek(); sequential reads prefetch ahead."""
        deadline = self._deadline(timeout_s, f"open {bucket}/{key!r}")
        target = await self._target(bucket, key, deadline)
        return AsyncObjectReader(self._reader, target, self.timeout_s)

    # Listing.

    async def list(
        self,
        bucket: str,
        *,
        prefix: Key = "",
        delimiter: Key = "",
        start_after: Key = "",
        max_keys: int = MAX_LIST_KEYS,
        page_token: str | None = None,
        timeout_s: float | None = None,
    ) -> ListPage:
        """Return one page of keys in byte order, with common prefixes when `delimiter` is set."""
        check_bucket_name(bucket)
        if not 0 <= max_keys <= MAX_LIST_KEYS:
            raise InvalidArgument(f"max_keys {max_keys} must be between 0 and {MAX_LIST_KEYS}")
        raw_prefix = _raw(prefix)
        raw_delimiter = _raw(delimiter)
        if page_token:
            start_key = decode_token(page_token)
        elif start_after:
            start_key = _raw(start_after) + b"\x00"
        else:
            start_key = b""
        deadline = self._deadline(timeout_s, f"list {bucket}")
        if max_keys == 0:
            await self.head_bucket(bucket, timeout_s=deadline.remaining_s())
            return ListPage()

        request = meta_pb2.ListObjectsRequest(
            bucket=bucket,
            prefix=raw_prefix,
            delimiter=raw_delimiter,
            start_key=start_key,
            max_keys=max_keys,
        )
        for attempt in range(1, MAX_PAGE_ATTEMPTS + 1):
            view = await self._connection.cluster_view(deadline)
            try:
                replies = [
                    await self._connection.meta_call(
                        deadline,
                        None,
                        _list_call(self._connection, address, request, view.epoch),
                        idempotent=True,
                    )
                    for address in view.metaserver_addresses
                ]
            except _PageMapChanged:
                # A shard moved while the page was read: read every metaserver again.
                if attempt == MAX_PAGE_ATTEMPTS:
                    raise Unavailable(
                        f"list {bucket}: shards kept moving during {attempt} attempts; retry"
                    ) from None
                continue
            return _merge_replies(replies, raw_prefix, raw_delimiter, max_keys)
        raise AssertionError("unreachable")

    async def iter_pages(
        self,
        bucket: str,
        *,
        prefix: Key = "",
        delimiter: Key = "",
        start_after: Key = "",
        max_keys: int = MAX_LIST_KEYS,
        timeout_s: float | None = None,
    ) -> AsyncIterator[ListPage]:
        """Yield every page of a listing; `timeout_s` applies to each page."""
        token: str | None = None
        while True:
            page = await self.list(
                bucket,
                prefix=prefix,
                delimiter=delimiter,
                start_after=start_after,
                max_keys=max_keys,
                page_token=token,
                timeout_s=timeout_s,
            )
            yield page
            if not page.truncated or page.next_token is None:
                return
            token = page.next_token


# Reads of one listing page, each over every metaserver, while shards move.
MAX_PAGE_ATTEMPTS = 4


def _raw(value: Key) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _clip_range(target: ReadTarget, offset: int, length: int | None) -> tuple[int, int]:
    size = target.record.size_bytes
    if offset < 0 or (length is not None and length < 0):
        raise InvalidArgument(f"invalid range offset={offset} length={length} for {target.name()}")
    if offset > size:
        raise InvalidArgument(f"offset {offset} is past the end of {target.name()} ({size} bytes)")
    end = size if length is None else min(size, offset + length)
    return offset, end - offset


def _merge_replies(
    replies: list[meta_pb2.ListObjectsResponse], prefix: bytes, delimiter: bytes, max_keys: int
) -> ListPage:
    if len(replies) == 1:
        return _single_reply_page(replies[0])
    cursors = []
    any_truncated = False
    for reply in replies:
        items = [ListItem(entry.key, False, entry) for entry in reply.entries]
        items += [ListItem(common, True) for common in reply.common_prefixes]
        items.sort(key=lambda item: item.key)
        cursors.append(ItemCursor(items))
        any_truncated = any_truncated or reply.truncated
    merged, more = merge_page(cursors, prefix, delimiter, max_keys)
    truncated = more or any_truncated
    page = ListPage(
        entries=[ListEntry.from_proto(item.payload) for item in merged if not item.is_prefix],
        common_prefixes=[
            item.key.decode("utf-8", "surrogateescape") for item in merged if item.is_prefix
        ],
        truncated=truncated,
    )
    if truncated and merged:
        start = next_start_key(merged[-1])
        if start is None:
            return ListPage(page.entries, page.common_prefixes, False, None)
        return ListPage(page.entries, page.common_prefixes, True, encode_token(start))
    return page


def _single_reply_page(reply: meta_pb2.ListObjectsResponse) -> ListPage:
    """Build the page of a single metaserver's reply, which needs no merge."""
    entries = [ListEntry.from_proto(entry) for entry in reply.entries]
    prefixes = list(reply.common_prefixes)
    page = ListPage(
        entries=entries,
        common_prefixes=[common.decode("utf-8", "surrogateescape") for common in prefixes],
        truncated=reply.truncated,
    )
    if not reply.truncated:
        return page
    last_key = reply.entries[-1].key if reply.entries else b""
    last_prefix = prefixes[-1] if prefixes else b""
    last = ListItem(last_prefix, True) if last_prefix > last_key else ListItem(last_key, False)
    start = next_start_key(last)
    if start is None:
        return ListPage(page.entries, page.common_prefixes, False, None)
    return ListPage(page.entries, page.common_prefixes, True, encode_token(start))


class _PageMapChanged(Exception):
    """The cluster map changed while a listing page was being read."""


def _list_call(
    connection: Connection, address: str, request: meta_pb2.ListObjectsRequest, epoch: int
) -> Callable[[Any, ClusterView, float | None], Awaitable[meta_pb2.ListObjectsResponse]]:
    """Build a ListObjects call on one metaserver for the shards the map at `epoch` gives it.

    When a stale-epoch error made the caller refresh the map, the whole page starts again.
    """

    def call(_stub: Any, view: ClusterView, timeout: float | None) -> Awaitable[Any]:
        if view.epoch != epoch:
            raise _PageMapChanged()
        one = meta_pb2.ListObjectsRequest()
        one.CopyFrom(request)
        one.shards.extend(view.shards_of(address))
        return connection.meta_stub(address).ListObjects(one, timeout=timeout)

    return call
