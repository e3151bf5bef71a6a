"""Key and value encoding inside a metadata shard's RocksDB database.

    "O" bucket 0x00 key   object record (bucket names never contain 0x00, so
                          keys of one bucket sort together, in byte order)
    "U" upload id (16 B)  open upload session
    "G" sequence (u64 BE) garbage-collection entry, oldest first

An object value is a u32 length, the ListEntry summary (size, ETag, mtime)
and the full ObjectRecord, so listings decode only the summary.
"""

from __future__ import annotations

import struct

from store._pb import common_pb2 as pb

OBJECT_TAG = b"O"
UPLOAD_TAG = b"U"
GC_TAG = b"G"
_SUMMARY_LENGTH = struct.Struct("<I")
_SEQUENCE = struct.Struct(">Q")


def bucket_prefix(bucket: str) -> bytes:
    """Return the prefix shared by every object key of `bucket`."""
    return OBJECT_TAG + bucket.encode() + b"\0"


def object_key(bucket: str, key: bytes) -> bytes:
    return bucket_prefix(bucket) + key


def upload_key(upload_id: str) -> bytes:
    return UPLOAD_TAG + bytes.fromhex(upload_id)


def gc_key(sequence: int) -> bytes:
    return GC_TAG + _SEQUENCE.pack(sequence)


def gc_sequence(key: bytes) -> int:
    assert key.startswith(GC_TAG)
    return int(_SEQUENCE.unpack(key[1:])[0])


def encode_object(record: pb.ObjectRecord) -> bytes:
    """Encode a record with its listing summary in front."""
    summary = pb.ListEntry(
        size_bytes=record.size_bytes, etag=record.etag, modified_unix_ns=record.modified_unix_ns
    ).SerializeToString()
    return _SUMMARY_LENGTH.pack(len(summary)) + summary + record.SerializeToString()


def decode_object(value: bytes) -> pb.ObjectRecord:
    (summary_bytes,) = _SUMMARY_LENGTH.unpack_from(value)
    return pb.ObjectRecord.FromString(value[_SUMMARY_LENGTH.size + summary_bytes :])


def decode_summary(value: bytes) -> bytes:
    """Return the serialized ListEntry (without its key) stored ahead of a record."""
    (summary_bytes,) = _SUMMARY_LENGTH.unpack_from(value)
    return value[_SUMMARY_LENGTH.size : _SUMMARY_LENGTH.size + summary_bytes]
