"""Writing objects and parts: inline or chunked storage, checksums, then the commit.

1. `store` reads the input. Up to the inline limit the bytes stay in memory;
   beyond it an upload is opened and the stripes go to the dataservers.
2. Every byte also feeds the requested digests (MD5, CRCs, SHA), and once the
   input ends they are checked against the values the caller declared.
3. `put` commits an object record; a multipart part is committed by the caller.
   A failure at any step aborts the upload, so nothing is committed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from store._pb import common_pb2 as pb
from store._pb import meta_pb2
from store.batching import Batcher
from store.checksum import crc32c
from store.clustermap import ClusterView
from store.connection import Connection, Deadline
from store.digests import Digests, check_algorithm
from store.errors import InvalidArgument, NoSuchUpload, StoreError, Unavailable
from store.names import check_user_metadata, display_key
from store.scheme import Scheme, of_counts
from store.sources import Source
from store.upload import Upload, chunk_etag

log = logging.getLogger(__name__)

# Looks at the cluster map when too few dataservers are up for a new upload.
PLACEMENT_ATTEMPTS = 5
PLACEMENT_RETRY_S = 0.3
# Names of the HTTP headers an object may keep (lowercase), and x-amz-tagging, whose value
# is the object's tags in the URL-encoded form of that header.
SYSTEM_METADATA_NAMES = frozenset(
    {
        "content-encoding",
        "content-disposition",
        "content-language",
        "cache-control",
        "expires",
        "x-amz-tagging",
    }
)


def check_system_metadata_names(names: Iterable[str]) -> None:
    """Raise InvalidArgument for a system metadata name that is not stored."""
    for name in names:
        if name not in SYSTEM_METADATA_NAMES:
            raise InvalidArgument(
                f"system metadata {name!r} is not stored; use one of "
                f"{', '.join(sorted(SYSTEM_METADATA_NAMES))}"
            )


@dataclass(slots=True)
class WriteOptions:
    """How to store and check one object or part."""

    content_type: str = ""
    metadata: Mapping[str, str] | None = None
    # Stored HTTP headers, named as in SYSTEM_METADATA_NAMES.
    system_metadata: Mapping[str, str] | None = None
    chunk_size_bytes: int = 0
    # Make the ETag the MD5 of the content (always true for parts).
    compute_md5: bool = False
    # Checksums to compute and store, by algorithm name (store.digests).
    checksum_algorithms: Sequence[str] = ()
    # Values the content must have, read only after its last byte arrived, so a
    # caller may fill the mapping from a trailer while the body streams.
    expected_checksums: Mapping[str, str] = field(default_factory=dict)
    # Base64 MD5 the content must have (the Content-MD5 header).
    content_md5: str | None = None
    if_match: str = ""
    if_none_match: bool = False
    if_none_match_etags: Sequence[str] = ()

    def check(self) -> None:
        """Raise InvalidArgument for a bad option, before any byte is read."""
        check_user_metadata(self.metadata)
        check_system_metadata_names(self.system_metadata or {})
        for name in self.checksum_algorithms:
            check_algorithm(name)

    def digests(self) -> Digests:
        algorithms = set(self.checksum_algorithms) | set(self.expected_checksums)
        md5 = self.compute_md5 or self.content_md5 is not None
        return Digests(sorted(algorithms), md5=md5)


@dataclass(slots=True)
class Stored:
    """Bytes that were stored but not yet committed."""

    size_bytes: int
    digests: Digests
    # Inline content; None when the bytes went to dataservers.
    inline_data: bytes | None = None
    upload_id: str = ""
    layout: pb.Layout = field(default_factory=pb.Layout)
    # Chunks written in part to dataservers that failed, for the commit to collect.
    abandoned: list[pb.ChunkRef] = field(default_factory=list)


class Writer:
    def __init__(
        self, connection: Connection, commits: Batcher, window: int, chunk_timeout_s: float
    ) -> None:
        self.connection = connection
        self.commits = commits
        self.window = window
        self.chunk_timeout_s = chunk_timeout_s

    async def put(
        self, bucket: str, key: bytes, source: Source, options: WriteOptions, deadline: Deadline
    ) -> pb.ObjectRecord:
        """Store the source's bytes and commit them as the object's new version."""
        options.check()
        stored = await self.store(bucket, key, source, options, deadline, allow_inline=True)
        try:
            request = meta_pb2.CommitObjectRequest(
                bucket=bucket,
                key=key,
                upload_id=stored.upload_id,
                if_match_etag=options.if_match,
                if_none_match_any=options.if_none_match,
                if_none_match_etags=options.if_none_match_etags,
                abandoned_chunks=stored.abandoned,
            )
            fill_record(request.record, stored, options)
            return await self.commit(request, deadline)
        except BaseException as error:
            if stored.upload_id:
                await self.abort_quietly(bucket, key, stored.upload_id, error)
            raise

    async def store(
        self,
        bucket: str,
        key: bytes,
        source: Source,
        options: WriteOptions,
        deadline: Deadline,
        allow_inline: bool,
    ) -> Stored:
        """Read the source to its end and keep its bytes inline or durable on dataservers."""
        view = await self.connection.cluster_view(deadline)
        digests = options.digests()
        inline_max = view.map.inline_max_bytes if allow_inline else -1
        first_size = options.chunk_size_bytes or view.map.chunk_size_bytes
        if source.size_bytes is not None and source.size_bytes <= inline_max:
            first_size = inline_max + 1
        first = await source.read_exact(first_size)
        if len(first) <= inline_max or not first:
            data = bytes(first)
            digests.update(data)
            digests.verify(options.expected_checksums, options.content_md5)
            return Stored(len(data), digests, inline_data=data if allow_inline else None)

        session = await self._open_upload(bucket, key, options.chunk_size_bytes, deadline)
        try:
            upload = await self._new_upload(bucket, key, session, digests, deadline)
            stripe_bytes = session_scheme(session).stripe_bytes(session.chunk_size_bytes)
            first = await _fill_first(source, first, stripe_bytes)
            result = await upload.write(source, first, deadline)
            digests.verify(options.expected_checksums, options.content_md5)
        except BaseException as error:
            await self.abort_quietly(bucket, key, session.upload_id, error)
            raise
        return Stored(
            result.size_bytes,
            digests,
            upload_id=session.upload_id,
            layout=result.layout,
            abandoned=result.abandoned,
        )

    async def _open_upload(
        self, bucket: str, key: bytes, chunk_size_bytes: int, deadline: Deadline
    ) -> meta_pb2.OpenUploadResponse:
        view = await self.connection.cluster_view(deadline)
        shard = self.connection.shard_for(view, bucket, key)

        def call(stub: Any, view: ClusterView, timeout: float | None) -> Any:
            request = meta_pb2.OpenUploadRequest(
                bucket=bucket,
                key=key,
                shard=shard,
                epoch=view.epoch,
                chunk_size_bytes=chunk_size_bytes,
            )
            return stub.OpenUpload(request, timeout=timeout)

        response: meta_pb2.OpenUploadResponse = await self.connection.meta_call(
            deadline, shard, call, idempotent=True
        )
        return response

    async def _new_upload(
        self,
        bucket: str,
        key: bytes,
        session: meta_pb2.OpenUploadResponse,
        digests: Digests,
        deadline: Deadline,
    ) -> Upload:
        view = await self.connection.cluster_view(deadline)
        if view.epoch < session.epoch:
            view = await self.connection.refresh_map(deadline, session.epoch)
        attempt = 0
        while True:
            attempt += 1
            try:
                return Upload(
                    self.connection,
                    view,
                    bucket,
                    key,
                    session.upload_id,
                    session.chunk_size_bytes,
                    session_scheme(session),
                    self.window,
                    self.chunk_timeout_s,
                    digests,
                )
            except Unavailable:
                # Too few dataservers up in this map; a cluster that just started may be
                # registering them, so look again a few times before giving up.
                if attempt >= PLACEMENT_ATTEMPTS:
                    raise
                await asyncio.sleep(PLACEMENT_RETRY_S)
                view = await self.connection.refresh_map(deadline, view.epoch + 1)

    async def commit(
        self, request: meta_pb2.CommitObjectRequest, deadline: Deadline
    ) -> pb.ObjectRecord:
        view = await self.connection.cluster_view(deadline)
        shard = self.connection.shard_for(view, request.bucket, request.key)
        request.shard = shard

        def call(stub: Any, view: ClusterView, timeout: float | None) -> Any:
            request.epoch = view.epoch
            return self.commits.call(view.metaserver_for_shard(shard), request, timeout)

        # A conditional commit is not repeated after an unknown outcome: its retry could
        # fail the condition that its own first attempt made false.
        conditional = bool(
            request.if_match_etag or request.if_none_match_any or request.if_none_match_etags
        )
        try:
            committed: pb.ObjectRecord = await self.connection.meta_call(
                deadline, shard, call, idempotent=not conditional
            )
        except NoSuchUpload:
            # A retried commit whose first attempt succeeded finds its session gone;
            # the object then carries the upload id as its version.
            current = await self._current(request, deadline) if request.upload_id else None
            if current is not None and current.version_id == request.upload_id:
                return current
            raise
        return committed

    async def _current(
        self, request: meta_pb2.CommitObjectRequest, deadline: Deadline
    ) -> pb.ObjectRecord | None:
        stat = meta_pb2.StatObjectRequest(
            bucket=request.bucket, key=request.key, shard=request.shard
        )
        try:
            record: pb.ObjectRecord = await self.connection.meta_call(
                deadline,
                request.shard,
                lambda stub, _, t: stub.StatObject(stat, timeout=t),
                idempotent=True,
            )
        except StoreError:
            return None
        return record

    async def abort_quietly(
        self, bucket: str, key: bytes, upload_id: str, cause: BaseException
    ) -> None:
        """Abort a failed upload so its chunks are collected now; errors are only logged."""
        view = self.connection.view
        if view is None:
            return
        shard = self.connection.shard_for(view, bucket, key)
        request = meta_pb2.AbortUploadRequest(
            bucket=bucket, key=key, shard=shard, upload_id=upload_id
        )
        try:
            await self.connection.meta_call(
                Deadline(5.0, f"abort upload {upload_id}"),
                shard,
                lambda stub, _, t: stub.AbortUpload(request, timeout=t),
                idempotent=True,
            )
            log.info(
                "aborted upload=%s of %s/%s after: %r", upload_id, bucket, display_key(key), cause
            )
        except StoreError as error:
            log.warning(
                "abort of upload=%s failed (the collector removes it after the grace period): %s",
                upload_id,
                error,
            )


def session_scheme(session: meta_pb2.OpenUploadResponse) -> Scheme:
    return of_counts(session.data_chunks, session.parity_chunks, session.replicas)


async def _fill_first(
    source: Source, first: bytes | memoryview, stripe_bytes: int
) -> bytes | memoryview:
    """Top the first read up to the upload's stripe size, which was unknown when it was read."""
    if len(first) > stripe_bytes:
        raise InvalidArgument(
            f"first read of {len(first)} bytes exceeds the stripe size {stripe_bytes}"
        )
    if len(first) == stripe_bytes:
        return first
    rest = await source.read_exact(stripe_bytes - len(first))
    return bytes(first) + bytes(rest) if rest else first


def fill_record(record: pb.ObjectRecord, stored: Stored, options: WriteOptions) -> None:
    """Set the fields of the record to commit for stored bytes, in the commit request itself."""
    record.content_type = options.content_type
    record.size_bytes = stored.size_bytes
    # Most puts carry no metadata or checksums; an update with an empty map still costs.
    if options.metadata:
        record.user_metadata.update(options.metadata)
    if options.system_metadata:
        record.system_metadata.update(options.system_metadata)
    checksums = stored.digests.values()
    if checksums:
        record.checksums.update(checksums)
    md5 = options.compute_md5 or options.content_md5 is not None
    if stored.inline_data is not None:
        record.is_inline = True
        record.inline_data = stored.inline_data
        record.inline_crc32c = crc32c(stored.inline_data)
        record.etag = _md5_hex(stored)
    else:
        record.layout.CopyFrom(stored.layout)
        record.etag = stored.digests.md5_hex() if md5 else chunk_etag(stored.layout)


def _md5_hex(stored: Stored) -> str:
    assert stored.inline_data is not None
    return hashlib.md5(stored.inline_data).hexdigest()
