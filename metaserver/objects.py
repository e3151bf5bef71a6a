"""Object and upload operations, each run by a shard's writer (see shard.py).

Each function here builds the operation for one request. The operation reads
the current state through the GroupView, checks its conditions, stages its
writes and returns its result; when it raises, none of its writes happen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from metaserver import keys
from metaserver.catalog import Buckets
from metaserver.shard import GroupView, Shard
from store import scheme
from store._pb import common_pb2 as pb
from store._pb import meta_pb2
from store.errors import InvalidArgument, NoSuchKey, NoSuchUpload, PreconditionFailed
from store.layout import new_upload_id, split_chunk_id
from store.names import display_key

# Extra deletion passes for an abandoned upload's chunks (see GcEntry.repeats).
UPLOAD_DELETE_REPEATS = 1


def object_name(bucket: str, key: bytes) -> str:
    return f"{bucket}/{display_key(key)}"


def load_object(view: GroupView, bucket: str, key: bytes) -> pb.ObjectRecord | None:
    value = view.get(keys.object_key(bucket, key))
    return None if value is None else keys.decode_object(value)


def chunk_refs(record: pb.ObjectRecord) -> list[pb.ChunkRef]:
    return [chunk for stripe in record.layout.stripes for chunk in stripe.chunks]


def queue_garbage(
    view: GroupView,
    shard: Shard,
    chunks: Iterable[pb.ChunkRef],
    upload_ids: Iterable[str],
    not_before_unix_ns: int,
    reason: str,
    repeats: int = 0,
) -> None:
    entry = pb.GcEntry(not_before_unix_ns=not_before_unix_ns, reason=reason, repeats=repeats)
    if upload_ids:
        entry.repeats = UPLOAD_DELETE_REPEATS
    entry.chunks.extend(chunks)
    entry.upload_ids.extend(upload_ids)
    if entry.chunks or entry.upload_ids:
        view.put(keys.gc_key(shard.allocate_gc_sequence()), entry.SerializeToString())


def queue_abandoned(
    view: GroupView,
    shard: Shard,
    upload_id: str,
    abandoned: Iterable[pb.ChunkRef],
    layout: pb.Layout,
    now_unix_ns: int,
) -> None:
    """Queue for deletion the chunks a writer left on dataservers that failed mid-write.

    Only chunks of this upload are accepted, and none that the layout names on the
    same dataserver. A write the client gave up on can still land later, for
    example after a network partition heals, so the deletion is repeated once
    more after the upload settle time, as for an abandoned upload.
    """
    kept = {(chunk.chunk_id, chunk.target) for stripe in layout.stripes for chunk in stripe.chunks}
    refs = []
    for ref in abandoned:
        if split_chunk_id(ref.chunk_id)[0] != upload_id:
            raise InvalidArgument(
                f"abandoned chunk {ref.chunk_id.hex()} does not belong to upload {upload_id}"
            )
        if (ref.chunk_id, ref.target) not in kept:
            refs.append(ref)
    queue_garbage(
        view,
        shard,
        refs,
        (),
        now_unix_ns,
        f"chunks of upload {upload_id} moved off failed writes",
        repeats=UPLOAD_DELETE_REPEATS,
    )


def check_conditions(
    current: pb.ObjectRecord | None,
    if_match_etag: str,
    if_none_match_any: bool,
    name: str,
    if_none_match_etags: Sequence[str] = (),
) -> None:
    """Raise unless the current record meets a write's conditions, as RFC 9110 defines them.

    If-Match: * needs any current object. If-Match with an ETag on a missing
    object raises NoSuchKey, as S3 does.
    """
    if if_none_match_any and current is not None:
        raise PreconditionFailed(f"{name} already exists (If-None-Match: *)")
    if current is not None and current.etag in if_none_match_etags:
        raise PreconditionFailed(f"{name} has ETag {current.etag} (If-None-Match)")
    if if_match_etag == "*" and current is None:
        raise PreconditionFailed(f"{name} does not exist (If-Match: *)")
    if if_match_etag and if_match_etag != "*":
        if current is None:
            raise NoSuchKey(f"{name} does not exist (If-Match: {if_match_etag})")
        if current.etag != if_match_etag:
            raise PreconditionFailed(
                f"{name} has ETag {current.etag}, not {if_match_etag} (If-Match)"
            )


def open_upload(
    shard: Shard,
    catalog: Buckets,
    bucket: str,
    key: bytes,
    chunk_size_bytes: int,
    now_unix_ns: int,
) -> Callable[[GroupView], pb.UploadSession]:
    def run(view: GroupView) -> pb.UploadSession:
        catalog.check_writable(bucket)
        protection = catalog.scheme(bucket)
        session = pb.UploadSession(
            upload_id=new_upload_id(),
            bucket=bucket,
            key=key,
            created_unix_ns=now_unix_ns,
            chunk_size_bytes=chunk_size_bytes,
            replicas=protection.replicas,
            data_chunks=protection.data_chunks if protection.erasure_coded else 0,
            parity_chunks=protection.parity_chunks,
        )
        view.put(keys.upload_key(session.upload_id), session.SerializeToString())
        return session

    return run


def take_session(
    view: GroupView, upload_id: str, bucket: str, key: bytes, layout: pb.Layout | None = None
) -> None:
    """Check that the upload is open for (bucket, key) and stage its removal.

    With a layout, also check that it uses the scheme the upload was opened with.
    """
    value = view.get(keys.upload_key(upload_id))
    name = object_name(bucket, key)
    if value is None:
        raise NoSuchUpload(
            f"upload {upload_id} for {name} does not exist: it was committed, aborted, or "
            "expired after the upload grace period; write the object again"
        )
    session = pb.UploadSession.FromString(value)
    if session.bucket != bucket or session.key != key:
        raise NoSuchUpload(
            f"upload {upload_id} belongs to {object_name(session.bucket, session.key)}, not {name}"
        )
    if layout is not None and layout.stripes:
        wanted = scheme.of_counts(session.data_chunks, session.parity_chunks, session.replicas)
        if scheme.of_layout(layout) != wanted:
            raise InvalidArgument(
                f"layout of upload {upload_id} uses {scheme.of_layout(layout)}, but the bucket "
                f"stores {name} with {wanted}"
            )
    view.delete(keys.upload_key(upload_id))


def commit_object(
    shard: Shard,
    catalog: Buckets,
    request: meta_pb2.CommitObjectRequest,
    now_unix_ns: int,
    gc_delay_ns: int,
) -> Callable[[GroupView], pb.ObjectRecord]:
    bucket, key = request.bucket, request.key

    def run(view: GroupView) -> pb.ObjectRecord:
        catalog.check_writable(bucket)
        if request.upload_id:
            take_session(view, request.upload_id, bucket, key, request.record.layout)
            queue_abandoned(
                view,
                shard,
                request.upload_id,
                request.abandoned_chunks,
                request.record.layout,
                now_unix_ns,
            )
        current = load_object(view, bucket, key)
        # Most commits carry no condition and replace no chunks, so the object's name,
        # which only messages use, is formatted only when one of them needs it.
        if request.if_match_etag or request.if_none_match_any or request.if_none_match_etags:
            check_conditions(
                current,
                request.if_match_etag,
                request.if_none_match_any,
                object_name(bucket, key),
                request.if_none_match_etags,
            )

        record = pb.ObjectRecord()
        record.CopyFrom(request.record)
        record.version_id = request.upload_id or new_upload_id()
        record.modified_unix_ns = now_unix_ns
        record.created_unix_ns = current.created_unix_ns if current is not None else now_unix_ns
        view.put(keys.object_key(bucket, key), keys.encode_object(record))
        if current is not None and current.layout.stripes:
            queue_garbage(
                view,
                shard,
                chunk_refs(current),
                (),
                now_unix_ns + gc_delay_ns,
                f"overwrite of {object_name(bucket, key)} version {current.version_id}",
            )
        shard.counters.commits += 1
        return record

    return run


def delete_object(
    shard: Shard,
    request: meta_pb2.DeleteObjectRequest,
    now_unix_ns: int,
    gc_delay_ns: int,
) -> Callable[[GroupView], meta_pb2.DeleteObjectResponse]:
    bucket, key = request.bucket, request.key
    name = object_name(bucket, key)

    def run(view: GroupView) -> meta_pb2.DeleteObjectResponse:
        current = load_object(view, bucket, key)
        check_conditions(current, request.if_match_etag, False, name)
        if current is None:
            return meta_pb2.DeleteObjectResponse(existed=False)
        view.delete(keys.object_key(bucket, key))
        queue_garbage(
            view,
            shard,
            chunk_refs(current),
            (),
            now_unix_ns + gc_delay_ns,
            f"delete of {name} version {current.version_id}",
        )
        return meta_pb2.DeleteObjectResponse(existed=True, version_id=current.version_id)

    return run


def update_object_metadata(
    request: meta_pb2.UpdateObjectMetadataRequest,
) -> Callable[[GroupView], pb.ObjectRecord]:
    """Return a write that changes the current version's system metadata in place.

    The version id, ETag, times and layout stay, so readers of the version see the
    same bytes, and no chunk becomes garbage.
    """
    bucket, key = request.bucket, request.key
    name = object_name(bucket, key)

    def run(view: GroupView) -> pb.ObjectRecord:
        current = load_object(view, bucket, key)
        if current is None:
            raise NoSuchKey(f"object {name} does not exist; check the key, or list the bucket")
        if request.if_version_id and current.version_id != request.if_version_id:
            raise PreconditionFailed(
                f"{name} is now version {current.version_id}, not {request.if_version_id}; "
                "read the object again and retry"
            )
        for entry in request.remove_system_metadata:
            current.system_metadata.pop(entry, None)
        current.system_metadata.update(request.set_system_metadata)
        view.put(keys.object_key(bucket, key), keys.encode_object(current))
        current.ClearField("inline_data")
        return current

    return run


def abort_upload(
    shard: Shard, request: meta_pb2.AbortUploadRequest, now_unix_ns: int
) -> Callable[[GroupView], None]:
    def run(view: GroupView) -> None:
        take_session(view, request.upload_id, request.bucket, request.key)
        queue_garbage(
            view,
            shard,
            (),
            [request.upload_id],
            now_unix_ns,
            f"abort of upload {request.upload_id}",
        )

    return run


def expire_upload(
    shard: Shard, upload_id: str, cutoff_unix_ns: int, now_unix_ns: int
) -> Callable[[GroupView], bool]:
    """Turn an upload older than the cutoff into garbage; later commits of it fail."""

    def run(view: GroupView) -> bool:
        value = view.get(keys.upload_key(upload_id))
        if value is None:
            return False
        session = pb.UploadSession.FromString(value)
        if session.created_unix_ns > cutoff_unix_ns:
            return False
        view.delete(keys.upload_key(upload_id))
        queue_garbage(
            view,
            shard,
            (),
            [upload_id],
            now_unix_ns,
            f"expiry of upload {upload_id} for {object_name(session.bucket, session.key)}",
        )
        return True

    return run


def finish_garbage(sequence: int, remaining: pb.GcEntry | None) -> Callable[[GroupView], None]:
    """Remove a processed GC entry, or keep only the parts that still failed."""

    def run(view: GroupView) -> None:
        key = keys.gc_key(sequence)
        if remaining is None or not (remaining.chunks or remaining.upload_ids):
            view.delete(key)
        else:
            view.put(key, remaining.SerializeToString())

    return run
