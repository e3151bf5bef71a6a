"""Key and value encoding inside a metadata shard's RocksDB database.

    "O" bucket 0x00 key   object record (bucket names never contain 0x00, so
                          keys of one bucket sort together, in byte order)
    "U" upload id (16 B)  open upload session
    "G" sequence (u64 BE) garbage-collection entry, oldest first
    "M" upload id         multipart upload session
    "P" upload id, part number (u32 BE)
                          a part of a multipart upload, waiting for completion
    "L" bucket 0x00 key 0x00 upload id
                          index of multipart uploads, for listing them
    "R" bucket 0x00 key   chunks of the object reported missing or corrupt,
                          waiting for repair
    "X"                   position of the metadata scrub: the last object key
                          (bucket 0x00 key) it checked

An object value is a u32 length, the ListEntry summary (size, ETag, mtime)
and the full ObjectRecord, so listings decode only the summary.
"""

from __future__ import annotations

import struct

from store._pb import common_pb2 as pb
from store.listing import ListItem

OBJECT_TAG = b"O"
UPLOAD_TAG = b"U"
GC_TAG = b"G"
MULTIPART_TAG = b"M"
PART_TAG = b"P"
UPLOAD_INDEX_TAG = b"L"
REPAIR_TAG = b"R"
SCRUB_CURSOR_KEY = b"X"
_SUMMARY_LENGTH = struct.Struct("<I")
_SEQUENCE = struct.Struct(">Q")


def bucket_prefix(bucket: str) -> bytes:
    """Return the prefix shared by every object key of `bucket`."""
    return OBJECT_TAG + bucket.encode() + b"\0"


def object_key(bucket: str, key: bytes) -> bytes:
    return bucket_prefix(bucket) + key


def repair_key(bucket: str, key: bytes) -> bytes:
    return REPAIR_TAG + bucket.encode() + b"\0" + key


def split_name(suffix: bytes) -> tuple[str, bytes]:
    """Return (bucket, key) of a key suffix "bucket 0x00 key" under the "O" or "R" tag."""
    bucket, _, key = suffix.partition(b"\0")
    return bucket.decode(), key


def upload_key(upload_id: str) -> bytes:
    return UPLOAD_TAG + bytes.fromhex(upload_id)


def multipart_key(upload_id: str) -> bytes:
    return MULTIPART_TAG + bytes.fromhex(upload_id)


def part_prefix(upload_id: str) -> bytes:
    return PART_TAG + bytes.fromhex(upload_id)


def part_key(upload_id: str, part_number: int) -> bytes:
    return part_prefix(upload_id) + part_number.to_bytes(4, "big")


def upload_index_prefix(bucket: str) -> bytes:
    """Return the prefix of the multipart upload index entries of `bucket`."""
    return UPLOAD_INDEX_TAG + bucket.encode() + b"\0"


def upload_index_key(bucket: str, key: bytes, upload_id: str) -> bytes:
    # 0x00 after the key sorts a key's uploads before any longer key that extends it.
    return upload_index_prefix(bucket) + key + b"\0" + bytes.fromhex(upload_id)


def upload_index_start(key_marker: bytes, upload_id_marker: str) -> bytes:
    """Return where a listing of uploads after (key_marker, upload_id_marker) starts."""
    if not key_marker:
        return b""
    if not upload_id_marker:
        return key_marker + b"\x01"
    return key_marker + b"\0" + bytes.fromhex(upload_id_marker) + b"\0"


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


_ONE_BYTE_VARINTS = [bytes((value,)) for value in range(0x80)]


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _ONE_BYTE_VARINTS[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Wire tags of ListObjectsResponse.entries (1), .common_prefixes (2), .truncated (3)
# and ListEntry.key (1).
_ENTRIES_TAG = b"\x0a"
_PREFIXES_TAG = b"\x12"
_TRUNCATED_TRUE = b"\x18\x01"
_ENTRY_KEY_TAG = b"\x0a"


def encode_listing(items: list[ListItem], truncated: bool) -> bytes:
    """Serialize a ListObjectsResponse straight from stored values.

    Each entry is the key field followed by the ListEntry summary kept in front of
    the record, so a listing builds no message objects per key (protobuf accepts
    fields in any order).
    """
    parts: list[bytes] = []
    for item in items:
        if item.is_prefix:
            parts += (_PREFIXES_TAG, _varint(len(item.key)), item.key)
            continue
        value = item.payload
        (summary_bytes,) = _SUMMARY_LENGTH.unpack_from(value)
        summary = value[_SUMMARY_LENGTH.size : _SUMMARY_LENGTH.size + summary_bytes]
        key_length = _varint(len(item.key))
        entry_bytes = 1 + len(key_length) + len(item.key) + summary_bytes
        parts += (_ENTRIES_TAG, _varint(entry_bytes), _ENTRY_KEY_TAG, key_length, item.key, summary)
    if truncated:
        parts.append(_TRUNCATED_TRUE)
    return b"".join(parts)


def decode_summary(value: bytes) -> bytes:
    """Return the serialized ListEntry (without its key) stored ahead of a record."""
    (summary_bytes,) = _SUMMARY_LENGTH.unpack_from(value)
    return value[_SUMMARY_LENGTH.size : _SUMMARY_LENGTH.size + summary_bytes]
