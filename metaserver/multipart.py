"""Multipart upload operations, each run by a shard's writer like those in objects.py.

A multipart upload is a session record plus one record per part. A part's
bytes are written as an ordinary upload, and CommitPart moves that upload's
layout into the part record. Completion concatenates the listed parts'
layouts into the object's layout, so no data is copied; parts that were
uploaded but not listed, and parts replaced by a later upload of the same
number, go to the garbage collector.
"""

from __future__ import annotations

from collections.abc import Callable

from metaserver import keys
from metaserver.catalog import Buckets
from metaserver.objects import (
    check_conditions,
    chunk_refs,
    load_object,
    object_name,
    queue_abandoned,
    queue_garbage,
    take_session,
)
from metaserver.shard import GroupView, Shard
from store import digests
from store._pb import common_pb2 as pb
from store._pb import meta_pb2
from store.errors import (
    BadDigest,
    EntityTooSmall,
    InvalidArgument,
    InvalidPart,
    InvalidPartOrder,
    InvalidRequest,
    NoSuchUpload,
)
from store.layout import new_upload_id

MAX_PART_NUMBER = 10_000
# Upper bound on the part records one operation reads.
MAX_PARTS_SCANNED = MAX_PART_NUMBER + 1


def check_part_number(number: int) -> int:
    if not 1 <= number <= MAX_PART_NUMBER:
        raise InvalidArgument(f"part number {number} is out of range; use 1 to {MAX_PART_NUMBER}")
    return number


def _load_upload(
    view: GroupView, upload_id: str, bucket: str, key: bytes
) -> meta_pb2.MultipartUpload:
    value = view.get(keys.multipart_key(upload_id))
    name = object_name(bucket, key)
    if value is None:
        raise NoSuchUpload(
            f"multipart upload {upload_id} of {name} does not exist: it was completed or "
            "aborted, or never created"
        )
    upload = meta_pb2.MultipartUpload.FromString(value)
    if upload.bucket != bucket or upload.key != key:
        raise NoSuchUpload(
            f"multipart upload {upload_id} belongs to "
            f"{object_name(upload.bucket, upload.key)}, not {name}"
        )
    return upload


def _parts(view: GroupView, upload_id: str) -> dict[int, pb.PartInfo]:
    parts = {}
    for _, value in view.scan(keys.part_prefix(upload_id), MAX_PARTS_SCANNED):
        part = pb.PartInfo.FromString(value)
        parts[part.part_number] = part
    return parts


def _part_refs(parts: list[pb.PartInfo]) -> list[pb.ChunkRef]:
    return [chunk for part in parts for stripe in part.layout.stripes for chunk in stripe.chunks]


def _forget(
    view: GroupView, upload: meta_pb2.MultipartUpload, parts: dict[int, pb.PartInfo]
) -> None:
    view.delete(keys.multipart_key(upload.upload_id))
    view.delete(keys.upload_index_key(upload.bucket, upload.key, upload.upload_id))
    for number in parts:
        view.delete(keys.part_key(upload.upload_id, number))


def create_upload(
    catalog: Buckets, upload: meta_pb2.MultipartUpload, now_unix_ns: int
) -> Callable[[GroupView], meta_pb2.MultipartUpload]:
    def run(view: GroupView) -> meta_pb2.MultipartUpload:
        catalog.check_writable(upload.bucket)
        created = meta_pb2.MultipartUpload()
        created.CopyFrom(upload)
        created.upload_id = new_upload_id()
        created.created_unix_ns = now_unix_ns
        view.put(keys.multipart_key(created.upload_id), created.SerializeToString())
        index_key = keys.upload_index_key(created.bucket, created.key, created.upload_id)
        view.put(index_key, created.SerializeToString())
        return created

    return run


def commit_part(
    shard: Shard, request: meta_pb2.CommitPartRequest, now_unix_ns: int
) -> Callable[[GroupView], pb.PartInfo]:
    part_number = check_part_number(request.part.part_number)

    def run(view: GroupView) -> pb.PartInfo:
        _load_upload(view, request.upload_id, request.bucket, request.key)
        if request.chunk_upload_id:
            take_session(
                view, request.chunk_upload_id, request.bucket, request.key, request.part.layout
            )
            queue_abandoned(
                view,
                shard,
                request.chunk_upload_id,
                request.abandoned_chunks,
                request.part.layout,
                now_unix_ns,
            )
        part_key = keys.part_key(request.upload_id, part_number)
        previous = view.get(part_key)
        if previous is not None:
            replaced = pb.PartInfo.FromString(previous)
            queue_garbage(
                view,
                shard,
                _part_refs([replaced]),
                (),
                now_unix_ns,
                f"part {part_number} of upload {request.upload_id} uploaded again",
            )
        part = pb.PartInfo()
        part.CopyFrom(request.part)
        part.modified_unix_ns = now_unix_ns
        view.put(part_key, part.SerializeToString())
        return part

    return run


def complete_upload(
    shard: Shard,
    catalog: Buckets,
    request: meta_pb2.CompleteMultipartUploadRequest,
    now_unix_ns: int,
    gc_delay_ns: int,
) -> Callable[[GroupView], pb.ObjectRecord]:
    bucket, key = request.bucket, request.key
    name = object_name(bucket, key)

    def run(view: GroupView) -> pb.ObjectRecord:
        catalog.check_writable(bucket)
        try:
            upload = _load_upload(view, request.upload_id, bucket, key)
        except NoSuchUpload:
            replayed = _completed_record(view, request)
            if replayed is None:
                raise
            return replayed
        uploaded = _parts(view, request.upload_id)
        listed = _listed_parts(request, upload, uploaded, name)
        current = load_object(view, bucket, key)
        check_conditions(
            current,
            request.if_match_etag,
            request.if_none_match_any,
            name,
            request.if_none_match_etags,
        )

        record = _assemble(upload, listed)
        _check_expected_checksums(request, upload, record, name)
        record.version_id = request.upload_id
        record.modified_unix_ns = now_unix_ns
        record.created_unix_ns = current.created_unix_ns if current is not None else now_unix_ns
        view.put(keys.object_key(bucket, key), keys.encode_object(record))
        _forget(view, upload, uploaded)

        used = {part.part_number for part in listed}
        unused = [part for number, part in uploaded.items() if number not in used]
        queue_garbage(
            view,
            shard,
            _part_refs(unused),
            (),
            now_unix_ns,
            f"parts of upload {request.upload_id} left out of {name}",
        )
        if current is not None:
            queue_garbage(
                view,
                shard,
                chunk_refs(current),
                (),
                now_unix_ns + gc_delay_ns,
                f"overwrite of {name} version {current.version_id}",
            )
        shard.counters.commits += 1
        return record

    return run


def _completed_record(
    view: GroupView, request: meta_pb2.CompleteMultipartUploadRequest
) -> pb.ObjectRecord | None:
    """Return the object this upload already completed into with the same part list.

    A client whose complete timed out after the commit retries it. Ceph RGW
    returns the completed object for such a retry instead of NoSuchUpload, and
    the Ceph S3 conformance tests (ceph/s3-tests) expect that. The object must
    still be the version that this upload created (its version id is the upload
    id), and the retry must list the same parts and ETags. The check reads the
    shard inside the same transaction, so it never reports a version that another
    write already replaced.
    """
    current = load_object(view, request.bucket, request.key)
    if current is None or current.version_id != request.upload_id:
        return None
    if [entry.part_number for entry in request.parts] != [p.part_number for p in current.parts]:
        return None
    for entry, part in zip(request.parts, current.parts, strict=True):
        # As in a first complete, an empty ETag accepts the part as uploaded.
        if entry.etag and entry.etag.strip('"') != part.etag:
            return None
    return current


def _listed_parts(
    request: meta_pb2.CompleteMultipartUploadRequest,
    upload: meta_pb2.MultipartUpload,
    uploaded: dict[int, pb.PartInfo],
    name: str,
) -> list[pb.PartInfo]:
    """Check the client's part list against the uploaded parts and return them in order."""
    if not request.parts:
        raise InvalidArgument(f"completing {name} needs at least one part")
    listed: list[pb.PartInfo] = []
    previous_number = 0
    for entry in request.parts:
        if entry.part_number <= previous_number:
            raise InvalidPartOrder(
                f"part {entry.part_number} follows part {previous_number}; list the parts of "
                f"{name} in ascending order, each once"
            )
        previous_number = entry.part_number
        part = uploaded.get(entry.part_number)
        if part is None or (entry.etag and entry.etag.strip('"') != part.etag):
            found = "was not uploaded" if part is None else f"has ETag {part.etag}"
            raise InvalidPart(
                f"part {entry.part_number} of {name} {found}, not ETag {entry.etag}; upload it "
                "again or list the ETag its upload returned"
            )
        _check_part_checksums(entry, upload, request.require_part_checksums, name)
        listed.append(part)
    for part in listed[:-1]:
        if part.size_bytes < request.min_part_size_bytes:
            raise EntityTooSmall(
                f"part {part.part_number} of {name} is {part.size_bytes} bytes; every part but "
                f"the last must be at least {request.min_part_size_bytes} bytes"
            )
    return listed


def _check_part_checksums(
    entry: meta_pb2.CompletedPart,
    upload: meta_pb2.MultipartUpload,
    required: bool,
    name: str,
) -> None:
    """Raise InvalidRequest when `required` and the part lacks the upload's COMPOSITE checksum.

    Amazon S3 requires the part checksums of such an upload in the complete
    request. The object's checksum is computed from the uploaded parts' own
    values, and the client's expected value, if sent, is compared with it.
    NOTE: a listed value that differs from the uploaded part's is not rejected,
    as in Ceph RGW: the Ceph S3 tests list one part's checksum for every part.
    """
    algorithm = upload.checksum_algorithm
    composite = (upload.checksum_type or digests.COMPOSITE) == digests.COMPOSITE
    if required and algorithm and composite and algorithm not in entry.checksums:
        raise InvalidRequest(
            f"The upload of {name} was created using a {algorithm} checksum. The complete "
            f"request must include the checksum for each part. It was missing for part "
            f"{entry.part_number} in the request."
        )


def _check_expected_checksums(
    request: meta_pb2.CompleteMultipartUploadRequest,
    upload: meta_pb2.MultipartUpload,
    record: pb.ObjectRecord,
    name: str,
) -> None:
    """Raise unless the completed object has every checksum the client expects."""
    for algorithm, value in sorted(request.expected_checksums.items()):
        if algorithm != upload.checksum_algorithm:
            created = upload.checksum_algorithm or "no checksum algorithm"
            raise InvalidRequest(
                f"the complete request of {name} sends a {algorithm} checksum, but the upload "
                f"was created with {created}; send the checksum of the upload's algorithm"
            )
        if record.checksums[algorithm] != value:
            raise BadDigest(
                f"the {algorithm} checksum of {name} is {record.checksums[algorithm]}, but the "
                f"complete request expects {value}; check the parts the request lists"
            )


def _assemble(upload: meta_pb2.MultipartUpload, parts: list[pb.PartInfo]) -> pb.ObjectRecord:
    """Build the object record whose layout is the parts' layouts one after another."""
    record = pb.ObjectRecord(content_type=upload.content_type)
    record.user_metadata.update(upload.user_metadata)
    record.system_metadata.update(upload.system_metadata)
    first_layout = next((p.layout for p in parts if p.layout.stripes), pb.Layout())
    record.layout.chunk_size_bytes = first_layout.chunk_size_bytes
    record.layout.replicas = first_layout.replicas
    record.layout.data_chunks = first_layout.data_chunks
    record.layout.parity_chunks = first_layout.parity_chunks
    record.layout.shared_domains = any(p.layout.shared_domains for p in parts)
    offset = 0
    for part in parts:
        for stripe in part.layout.stripes:
            moved = record.layout.stripes.add()
            moved.CopyFrom(stripe)
            moved.offset_bytes = offset + stripe.offset_bytes
        record.parts.add(
            part_number=part.part_number,
            size_bytes=part.size_bytes,
            etag=part.etag,
            checksums=part.checksums,
            modified_unix_ns=part.modified_unix_ns,
            offset_bytes=offset,
        )
        offset += part.size_bytes
    record.size_bytes = offset
    record.etag = digests.multipart_etag([part.etag for part in parts])
    _add_checksums(record, upload, parts)
    return record


def _add_checksums(
    record: pb.ObjectRecord, upload: meta_pb2.MultipartUpload, parts: list[pb.PartInfo]
) -> None:
    algorithm = upload.checksum_algorithm
    if not algorithm:
        _add_default_checksum(record, parts)
        return
    values = [part.checksums.get(algorithm, "") for part in parts]
    if not all(values):
        missing = [p.part_number for p, v in zip(parts, values, strict=True) if not v]
        raise InvalidPart(
            f"parts {missing} were uploaded without the {algorithm} checksum the upload requires"
        )
    record.checksum_type = upload.checksum_type or digests.COMPOSITE
    if record.checksum_type == digests.FULL_OBJECT:
        sizes = [part.size_bytes for part in parts]
        record.checksums[algorithm] = digests.full_object(
            algorithm, list(zip(values, sizes, strict=True))
        )
    else:
        record.checksums[algorithm] = digests.composite(algorithm, values)


def _add_default_checksum(record: pb.ObjectRecord, parts: list[pb.PartInfo]) -> None:
    """Give an upload created without a checksum algorithm S3's default object checksum.

    That is the full-object CRC-64/NVME, combined from the parts' values. Parts stored
    before the gateway computed it for every part have none, and then neither has the
    object.
    """
    values = [part.checksums.get(digests.DEFAULT_ALGORITHM, "") for part in parts]
    if not parts or not all(values):
        return
    sizes = [part.size_bytes for part in parts]
    record.checksum_type = digests.FULL_OBJECT
    record.checksums[digests.DEFAULT_ALGORITHM] = digests.full_object(
        digests.DEFAULT_ALGORITHM, list(zip(values, sizes, strict=True))
    )


def abort_upload(
    shard: Shard, request: meta_pb2.AbortMultipartUploadRequest, now_unix_ns: int
) -> Callable[[GroupView], None]:
    def run(view: GroupView) -> None:
        upload = _load_upload(view, request.upload_id, request.bucket, request.key)
        parts = _parts(view, request.upload_id)
        _forget(view, upload, parts)
        queue_garbage(
            view,
            shard,
            _part_refs(list(parts.values())),
            (),
            now_unix_ns,
            f"abort of multipart upload {request.upload_id}",
        )

    return run


def list_parts(
    shard: Shard, request: meta_pb2.ListPartsRequest, max_parts: int
) -> meta_pb2.ListPartsResponse:
    """Return the parts after the marker, without their layouts (a read, not an operation)."""
    view = GroupView(shard.db, {})
    upload = _load_upload(view, request.upload_id, request.bucket, request.key)
    response = meta_pb2.ListPartsResponse(upload=upload)
    for number, part in sorted(_parts(view, request.upload_id).items()):
        if number <= request.part_number_marker:
            continue
        if len(response.parts) == max_parts:
            response.truncated = True
            break
        part.ClearField("layout")
        response.parts.append(part)
    return response
