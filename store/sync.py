"""Client: the blocking SDK, a thin layer over AsyncClient.

The client owns an event loop in a background thread; each method submits
the matching AsyncClient coroutine there and waits for it. A Client may be
shared by many threads: their calls run concurrently on that loop.

    client = store.Client("127.0.0.1:7000")
    client.create_bucket("photos")
    client.put("photos", "cat.jpg", b"...")
    with client.open("photos", "cat.jpg") as f:
        f.seek(1024)
        header = f.read(512)
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import io
import os
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from store._pb import common_pb2 as pb
from store._pb import meta_pb2
from store.client import (
    DEFAULT_CHUNK_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    DEFAULT_WINDOW_CHUNKS,
    AsyncClient,
    Key,
)
from store.limits import MAX_LIST_KEYS
from store.reader import AsyncObjectReader
from store.sources import PutData
from store.types import (
    BucketInfo,
    ListPage,
    ObjectInfo,
    PartResult,
    PartsPage,
    UploadsPage,
    UserInfo,
)

T = TypeVar("T")

# How long Client.close waits for the loop's leftover tasks to end once cancelled.
LOOP_SETTLE_TIMEOUT_S = 1.0


async def _next(iterator: AsyncIterator[T]) -> T:
    return await anext(iterator)


async def _cancel_other_tasks(timeout_s: float) -> None:
    """Cancel the loop's other tasks and wait for them, as asyncio.run does before it returns.

    Closing a grpc.aio channel leaves each call's status task to finish on a later turn of the
    loop. Closing the loop first destroys those tasks pending, and asyncio then prints "Task was
    destroyed but it is pending!" into the output of the program using the client.
    """
    current = asyncio.current_task()
    pending = [task for task in asyncio.all_tasks() if task is not current]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=timeout_s)
    await asyncio.get_running_loop().shutdown_asyncgens()


class _LoopThread:
    """An event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="store-client-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            raise RuntimeError("a Client method was called from its own event loop thread")
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        """Drive an async iterator on the loop, yielding its items to the calling thread."""
        try:
            while True:
                try:
                    yield self.run(_next(iterator))
                except StopAsyncIteration:
                    return
        finally:
            # A generator abandoned mid-way (say, by `storectl ls | head`) may be closed only
            # after the client stopped its loop; its async iterator then goes with the loop.
            if hasattr(iterator, "aclose") and self.loop.is_running():
                self.run(iterator.aclose())

    def stop(self) -> None:
        if self.loop.is_running() and self._thread.is_alive():
            try:
                self.run(_cancel_other_tasks(LOOP_SETTLE_TIMEOUT_S))
            except (RuntimeError, concurrent.futures.CancelledError):
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()


class Client:
    """Blocking client of one cluster; see AsyncClient for the meaning of each argument."""

    def __init__(
        self,
        address: str | list[str],
        *,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        window_chunks: int = DEFAULT_WINDOW_CHUNKS,
        chunk_timeout_s: float = DEFAULT_CHUNK_TIMEOUT_S,
        connect: bool = True,
    ) -> None:
        self._loop = _LoopThread()
        try:
            self._async = self._loop.run(
                self._make(address, timeout_s, window_chunks, chunk_timeout_s)
            )
            if connect:
                self._loop.run(self._async.connect())
        except BaseException:
            self._loop.stop()
            raise

    @staticmethod
    async def _make(
        address: str | list[str],
        timeout_s: float | None,
        window_chunks: int,
        chunk_timeout_s: float,
    ) -> AsyncClient:
        # grpc.aio objects must be created on the loop that uses them.
        return AsyncClient(
            address,
            timeout_s=timeout_s,
            window_chunks=window_chunks,
            chunk_timeout_s=chunk_timeout_s,
        )

    def close(self) -> None:
        self._loop.run(self._async.close())
        self._loop.stop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def async_client(self) -> AsyncClient:
        return self._async

    def cluster_map(self, *, timeout_s: float | None = None) -> pb.ClusterMap:
        return self._loop.run(self._async.cluster_map(timeout_s))

    def bad_chunks(self) -> list[tuple[bytes, str, str]]:
        """As AsyncClient.bad_chunks."""
        return self._async.bad_chunks()

    # Membership.

    def drain_dataserver(
        self, dataserver_id: str, *, cancel: bool = False, timeout_s: float | None = None
    ) -> pb.DataserverInfo:
        """As AsyncClient.drain_dataserver."""
        return self._loop.run(
            self._async.drain_dataserver(dataserver_id, cancel=cancel, timeout_s=timeout_s)
        )

    def move_shard(
        self, shard: int, target: str, *, timeout_s: float | None = None
    ) -> meta_pb2.MoveShardResponse:
        """As AsyncClient.move_shard."""
        return self._loop.run(self._async.move_shard(shard, target, timeout_s=timeout_s))

    def remove_dataserver(self, dataserver_id: str, *, timeout_s: float | None = None) -> None:
        """As AsyncClient.remove_dataserver."""
        self._loop.run(self._async.remove_dataserver(dataserver_id, timeout_s=timeout_s))

    # Buckets.

    def create_bucket(
        self, name: str, *, owner: str = "", scheme: str = "", timeout_s: float | None = None
    ) -> BucketInfo:
        """Create a bucket; `scheme` as in AsyncClient.create_bucket."""
        return self._loop.run(
            self._async.create_bucket(name, owner=owner, scheme=scheme, timeout_s=timeout_s)
        )

    def delete_bucket(self, name: str, *, timeout_s: float | None = None) -> None:
        self._loop.run(self._async.delete_bucket(name, timeout_s=timeout_s))

    def head_bucket(self, name: str, *, timeout_s: float | None = None) -> BucketInfo:
        return self._loop.run(self._async.head_bucket(name, timeout_s=timeout_s))

    def update_bucket_settings(self, name: str, **options: Any) -> BucketInfo:
        return self._loop.run(self._async.update_bucket_settings(name, **options))

    def list_buckets(self, *, timeout_s: float | None = None) -> list[BucketInfo]:
        return self._loop.run(self._async.list_buckets(timeout_s=timeout_s))

    # Objects.

    def put(
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
        """Store an object from bytes, a binary file object or an iterator of bytes."""
        return self._loop.run(
            self._async.put(
                bucket,
                key,
                data,
                content_type=content_type,
                metadata=metadata,
                system_metadata=system_metadata,
                chunk_size_bytes=chunk_size_bytes,
                compute_md5=compute_md5,
                checksum_algorithms=checksum_algorithms,
                expected_checksums=expected_checksums,
                content_md5=content_md5,
                if_match=if_match,
                if_none_match=if_none_match,
                if_none_match_etags=if_none_match_etags,
                timeout_s=timeout_s,
            )
        )

    def put_file(
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
        return self._loop.run(
            self._async.put_file(
                bucket,
                key,
                path,
                content_type=content_type,
                metadata=metadata,
                chunk_size_bytes=chunk_size_bytes,
                compute_md5=compute_md5,
                timeout_s=timeout_s,
            )
        )

    def get(
        self,
        bucket: str,
        key: Key,
        *,
        offset: int = 0,
        length: int | None = None,
        timeout_s: float | None = None,
    ) -> bytes:
        return self._loop.run(
            self._async.get(bucket, key, offset=offset, length=length, timeout_s=timeout_s)
        )

    def get_into(
        self,
        bucket: str,
        key: Key,
        buffer: Any,
        *,
        offset: int = 0,
        timeout_s: float | None = None,
    ) -> int:
        """Read the object from `offset` into a writable buffer; see AsyncClient.get_into."""
        return self._loop.run(
            self._async.get_into(bucket, key, buffer, offset=offset, timeout_s=timeout_s)
        )

    def get_stream(
        self,
        bucket: str,
        key: Key,
        *,
        offset: int = 0,
        length: int | None = None,
        timeout_s: float | None = None,
    ) -> Iterator[bytes]:
        return self._loop.iterate(
            self._async.get_stream(bucket, key, offset=offset, length=length, timeout_s=timeout_s)
        )

    def get_file(
        self, bucket: str, key: Key, path: str | os.PathLike[str], *, timeout_s: float | None = None
    ) -> ObjectInfo:
        return self._loop.run(self._async.get_file(bucket, key, path, timeout_s=timeout_s))

    def open(self, bucket: str, key: Key, *, timeout_s: float | None = None) -> ObjectFile:
        reader = self._loop.run(self._async.open(bucket, key, timeout_s=timeout_s))
        return ObjectFile(self._loop, reader)

    def stat(self, bucket: str, key: Key, *, timeout_s: float | None = None) -> ObjectInfo:
        return self._loop.run(self._async.stat(bucket, key, timeout_s=timeout_s))

    def delete(
        self, bucket: str, key: Key, *, if_match: str = "", timeout_s: float | None = None
    ) -> bool:
        return self._loop.run(
            self._async.delete(bucket, key, if_match=if_match, timeout_s=timeout_s)
        )

    def update_system_metadata(self, bucket: str, key: Key, **options: Any) -> ObjectInfo:
        return self._loop.run(self._async.update_system_metadata(bucket, key, **options))

    def list(
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
        return self._loop.run(
            self._async.list(
                bucket,
                prefix=prefix,
                delimiter=delimiter,
                start_after=start_after,
                max_keys=max_keys,
                page_token=page_token,
                timeout_s=timeout_s,
            )
        )

    def iter_pages(
        self,
        bucket: str,
        *,
        prefix: Key = "",
        delimiter: Key = "",
        start_after: Key = "",
        max_keys: int = MAX_LIST_KEYS,
        timeout_s: float | None = None,
    ) -> Iterator[ListPage]:
        return self._loop.iterate(
            self._async.iter_pages(
                bucket,
                prefix=prefix,
                delimiter=delimiter,
                start_after=start_after,
                max_keys=max_keys,
                timeout_s=timeout_s,
            )
        )

    # Multipart uploads and users; see AsyncClient for each method.

    def create_multipart_upload(self, bucket: str, key: Key, **options: Any) -> str:
        return self._loop.run(self._async.create_multipart_upload(bucket, key, **options))

    def upload_part(
        self,
        bucket: str,
        key: Key,
        upload_id: str,
        part_number: int,
        data: PutData,
        **options: Any,
    ) -> PartResult:
        return self._loop.run(
            self._async.upload_part(bucket, key, upload_id, part_number, data, **options)
        )

    def complete_multipart_upload(
        self,
        bucket: str,
        key: Key,
        upload_id: str,
        parts: Sequence[tuple[int, str]],
        **options: Any,
    ) -> ObjectInfo:
        return self._loop.run(
            self._async.complete_multipart_upload(bucket, key, upload_id, parts, **options)
        )

    def abort_multipart_upload(self, bucket: str, key: Key, upload_id: str, **options: Any) -> None:
        self._loop.run(self._async.abort_multipart_upload(bucket, key, upload_id, **options))

    def list_parts(self, bucket: str, key: Key, upload_id: str, **options: Any) -> PartsPage:
        return self._loop.run(self._async.list_parts(bucket, key, upload_id, **options))

    def list_multipart_uploads(self, bucket: str, **options: Any) -> UploadsPage:
        return self._loop.run(self._async.list_multipart_uploads(bucket, **options))

    def create_user(self, name: str, **options: Any) -> UserInfo:
        return self._loop.run(self._async.create_user(name, **options))

    def delete_user(self, name: str, **options: Any) -> None:
        self._loop.run(self._async.delete_user(name, **options))

    def list_users(self, **options: Any) -> builtins.list[UserInfo]:
        return self._loop.run(self._async.list_users(**options))

    def get_credentials(self, access_key: str, **options: Any) -> UserInfo:
        return self._loop.run(self._async.get_credentials(access_key, **options))


class ObjectFile(io.RawIOBase):
    """A read-only, seekable binary file over one object version."""

    def __init__(self, loop: _LoopThread, reader: AsyncObjectReader) -> None:
        super().__init__()
        self._loop = loop
        self._reader = reader
        self.name = reader.name
        self.size_bytes = reader.size_bytes

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._reader.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        return self._reader.seek(offset, whence)

    def limit(self, end_bytes: int) -> None:
        """Prefetch nothing at or past `end_bytes`; see AsyncObjectReader.limit."""
        self._checkClosed()
        self._reader.limit(end_bytes)

    def read(self, size: int | None = -1) -> bytes:
        self._checkClosed()
        return self._loop.run(self._reader.read(-1 if size is None else size))

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        self._checkClosed()
        return self._loop.run(self._reader.readinto(memoryview(buffer).cast("B")))

    def close(self) -> None:
        if not self.closed:
            try:
                self._loop.run(self._reader.close())
            except (RuntimeError, concurrent.futures.CancelledError):
                pass
        super().close()
