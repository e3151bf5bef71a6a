"""ObjectInfo, the SDK's result of stat and put, built from object records."""

from __future__ import annotations

import pytest

from store._pb import common_pb2 as pb
from store.types import ObjectInfo


@pytest.mark.parametrize("modified_unix_ns", [1_700_000_000_000_000_000, 1_700_000_001_500_000_000])
def test_object_info_inline_record(modified_unix_ns: int) -> None:
    record = pb.ObjectRecord(
        size_bytes=5,
        etag="e",
        is_inline=True,
        created_unix_ns=1_700_000_000_000_000_000,
        modified_unix_ns=modified_unix_ns,
    )
    info = ObjectInfo.from_record("b", b"k", record)
    assert info.modified.timestamp() == modified_unix_ns / 1e9, "modified time is wrong"
    assert info.created.timestamp() == 1_700_000_000.0, "created time is wrong"
    assert (info.scheme, info.chunk_count, info.stripe_count) == ("", 0, 0), "inline has chunks"
    assert (info.metadata, info.checksums, info.parts) == ({}, {}, []), "empty fields are not empty"


def test_object_info_chunked_record() -> None:
    record = pb.ObjectRecord(size_bytes=10, etag="e", created_unix_ns=1, modified_unix_ns=2)
    record.layout.chunk_size_bytes = 4096
    record.layout.replicas = 2
    for _ in range(3):
        stripe = record.layout.stripes.add()
        stripe.chunks.add(target="d1")
        stripe.chunks.add(target="d2")
    record.user_metadata["color"] = "red"
    info = ObjectInfo.from_record("b", b"k", record)
    assert info.scheme == "rep:2", f"scheme {info.scheme}"
    assert (info.stripe_count, info.chunk_count) == (3, 6), "stripe or chunk count is wrong"
    assert info.chunk_size_bytes == 4096, f"chunk size {info.chunk_size_bytes}"
    assert info.metadata == {"color": "red"}, f"metadata {info.metadata}"
