"""Stored form of object records: the summary's fields are kept once and restored on read."""

from __future__ import annotations

import struct

from metaserver import keys
from store._pb import common_pb2 as pb

MODIFIED_UNIX_NS = 1_796_446_160_695_981_668


def inline_record(created_unix_ns: int) -> pb.ObjectRecord:
    record = pb.ObjectRecord(
        size_bytes=5,
        etag="5d41402abc4b2a76b9719d911017c592",
        content_type="text/plain",
        created_unix_ns=created_unix_ns,
        modified_unix_ns=MODIFIED_UNIX_NS,
        version_id="f15998a9c85ac39f2e319a5e1d1cc404",
        inline_data=b"hello",
        inline_crc32c=0x9A71BB4C,
        is_inline=True,
    )
    record.user_metadata["owner"] = "ml"
    return record


def test_first_version_round_trip() -> None:
    record = inline_record(created_unix_ns=MODIFIED_UNIX_NS)
    value = keys.encode_object(record)
    assert keys.decode_object(value) == record
    assert record == inline_record(created_unix_ns=MODIFIED_UNIX_NS)


def test_overwritten_version_keeps_creation_time() -> None:
    record = inline_record(created_unix_ns=MODIFIED_UNIX_NS - 10**9)
    decoded = keys.decode_object(keys.encode_object(record))
    assert decoded.created_unix_ns == MODIFIED_UNIX_NS - 10**9
    assert decoded == record


def test_summary_fields_stored_once() -> None:
    record = inline_record(created_unix_ns=MODIFIED_UNIX_NS)
    value = keys.encode_object(record)
    assert value.count(record.etag.encode()) == 1
    summary = pb.ListEntry.FromString(keys.decode_summary(value))
    assert summary.size_bytes == 5
    assert summary.etag == record.etag
    assert summary.modified_unix_ns == MODIFIED_UNIX_NS


def test_earlier_form_with_every_field_decodes() -> None:
    record = inline_record(created_unix_ns=MODIFIED_UNIX_NS - 1)
    summary = pb.ListEntry(
        size_bytes=record.size_bytes, etag=record.etag, modified_unix_ns=record.modified_unix_ns
    ).SerializeToString()
    value = struct.pack("<I", len(summary)) + summary + record.SerializeToString()
    assert keys.decode_object(value) == record
