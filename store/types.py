"""Plain result types returned by the SDK."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from store._pb import common_pb2 as pb
from store._pb import meta_pb2
from store.scheme import of_layout


def _time(unix_ns: int) -> datetime:
    return datetime.fromtimestamp(unix_ns / 1e9, tz=UTC)


def decode_key(raw: bytes) -> str:
    """Return a key as str; keys that are not UTF-8 keep their bytes as surrogate escapes."""
    return raw.decode("utf-8", errors="surrogateescape")


@dataclass(frozen=True, slots=True)
class BucketInfo:
    name: str
    created: datetime
    owner: str
    # "ec:K+M" or "rep:N"; buckets older than schemes keep one copy ("rep:1").
    scheme: str = "rep:1"
    # Settings the S3 gateway keeps for the bucket, by name ("cors").
    settings: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_record(cls, record: pb.BucketRecord) -> BucketInfo:
        return cls(
            record.name,
            _time(record.created_unix_ns),
            record.owner,
            record.scheme or "rep:1",
            _dict(record.settings),
        )


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    bucket: str
    key: str
    size_bytes: int
    etag: str
    content_type: str
    metadata: dict[str, str]
    created: datetime
    modified: datetime
    version_id: str
    chunk_size_bytes: int
    stripe_count: int
    is_inline: bool
    # The protection of the object's chunks, "ec:K+M" or "rep:N"; empty when inline.
    scheme: str = ""
    # Chunks stored on dataservers, parity and copies included.
    chunk_count: int = 0
    # Stored HTTP headers (content-encoding, cache-control, ...).
    system_metadata: dict[str, str] = field(default_factory=dict)
    # Base64 checksums by algorithm name; "-N" ends a composite multipart checksum.
    checksums: dict[str, str] = field(default_factory=dict)
    checksum_type: str = ""
    # The parts of an object completed from a multipart upload.
    parts: list[PartRange] = field(default_factory=list)

    @classmethod
    def from_record(cls, bucket: str, key: bytes, record: pb.ObjectRecord) -> ObjectInfo:
        # Every stat and put returns one of these, so the fields of an inline record,
        # which has no layout, and empty maps skip their conversions.
        created = _time(record.created_unix_ns)
        modified_unix_ns = record.modified_unix_ns
        modified = (
            created if modified_unix_ns == record.created_unix_ns else _time(modified_unix_ns)
        )
        chunk_size_bytes = stripe_count = chunk_count = 0
        scheme = ""
        if not record.is_inline:
            layout = record.layout
            chunk_size_bytes = layout.chunk_size_bytes
            stripe_count = len(layout.stripes)
            chunk_count = sum(len(stripe.chunks) for stripe in layout.stripes)
            scheme = str(of_layout(layout))
        return cls(
            bucket=bucket,
            key=decode_key(key),
            size_bytes=record.size_bytes,
            etag=record.etag,
            content_type=record.content_type,
            metadata=_dict(record.user_metadata),
            created=created,
            modified=modified,
            version_id=record.version_id,
            chunk_size_bytes=chunk_size_bytes,
            stripe_count=stripe_count,
            is_inline=record.is_inline,
            scheme=scheme,
            chunk_count=chunk_count,
            system_metadata=_dict(record.system_metadata),
            checksums=_dict(record.checksums),
            checksum_type=record.checksum_type,
            parts=[
                PartRange(
                    part.part_number, part.offset_bytes, part.size_bytes, _dict(part.checksums)
                )
                for part in record.parts
            ]
            if record.parts
            else [],
        )


def _dict(entries: Mapping[str, str]) -> dict[str, str]:
    return dict(entries) if entries else {}


@dataclass(frozen=True, slots=True)
class PartRange:
    """The byte range of one part of a multipart object, with the part's own checksums."""

    part_number: int
    offset_bytes: int
    size_bytes: int
    # Base64 checksums of the part's bytes by algorithm name, as its upload stored them.
    checksums: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class PartResult:
    """A part of a multipart upload."""

    part_number: int
    etag: str
    size_bytes: int
    checksums: dict[str, str]
    modified_unix_ns: int

    @property
    def modified(self) -> datetime:
        return _time(self.modified_unix_ns)

    @classmethod
    def from_proto(cls, part: pb.PartInfo) -> PartResult:
        return cls(
            part.part_number,
            part.etag,
            part.size_bytes,
            dict(part.checksums),
            part.modified_unix_ns,
        )


@dataclass(slots=True)
class MultipartUploadInfo:
    bucket: str
    key: str
    upload_id: str
    created: datetime
    content_type: str
    metadata: dict[str, str]
    system_metadata: dict[str, str]
    checksum_algorithm: str
    checksum_type: str
    owner: str

    @classmethod
    def from_proto(cls, upload: meta_pb2.MultipartUpload) -> MultipartUploadInfo:
        return cls(
            upload.bucket,
            decode_key(upload.key),
            upload.upload_id,
            _time(upload.created_unix_ns),
            upload.content_type,
            dict(upload.user_metadata),
            dict(upload.system_metadata),
            upload.checksum_algorithm,
            upload.checksum_type,
            upload.owner,
        )


@dataclass(slots=True)
class PartsPage:
    upload: MultipartUploadInfo
    parts: list[PartResult]
    truncated: bool
    # Pass as part_number_marker for the next page.
    next_part_number_marker: int


@dataclass(slots=True)
class UploadsPage:
    uploads: list[MultipartUploadInfo]
    truncated: bool
    # Pass as key_marker and upload_id_marker for the next page.
    next_key_marker: str
    next_upload_id_marker: str


@dataclass(slots=True)
class UserInfo:
    name: str
    access_key: str
    # Empty in listings.
    secret_key: str
    created: datetime

    @classmethod
    def from_record(cls, record: pb.UserRecord) -> UserInfo:
        return cls(record.name, record.access_key, record.secret_key, _time(record.created_unix_ns))


@dataclass(slots=True)
class ListEntry:
    key: str
    size_bytes: int
    etag: str
    modified_unix_ns: int

    @property
    def modified(self) -> datetime:
        # Built on access: a datetime per key would be a quarter of a listing's cost.
        return _time(self.modified_unix_ns)

    @classmethod
    def from_proto(cls, entry: pb.ListEntry) -> ListEntry:
        return cls(decode_key(entry.key), entry.size_bytes, entry.etag, entry.modified_unix_ns)


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a listing. Pass `next_token` back to get the next page."""

    entries: list[ListEntry] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    next_token: str | None = None


__all__ = [
    "BucketInfo",
    "ListEntry",
    "ListPage",
    "MultipartUploadInfo",
    "ObjectInfo",
    "PartRange",
    "PartResult",
    "PartsPage",
    "UploadsPage",
    "UserInfo",
]
