"""Plain result types returned by the SDK."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from store._pb import common_pb2 as pb


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

    @classmethod
    def from_record(cls, record: pb.BucketRecord) -> BucketInfo:
        return cls(record.name, _time(record.created_unix_ns), record.owner)


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

    @classmethod
    def from_record(cls, bucket: str, key: bytes, record: pb.ObjectRecord) -> ObjectInfo:
        return cls(
            bucket=bucket,
            key=decode_key(key),
            size_bytes=record.size_bytes,
            etag=record.etag,
            content_type=record.content_type,
            metadata=dict(record.user_metadata),
            created=_time(record.created_unix_ns),
            modified=_time(record.modified_unix_ns),
            version_id=record.version_id,
            chunk_size_bytes=record.layout.chunk_size_bytes,
            stripe_count=len(record.layout.stripes),
            is_inline=record.is_inline,
        )


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


__all__ = ["BucketInfo", "ListEntry", "ListPage", "ObjectInfo"]
