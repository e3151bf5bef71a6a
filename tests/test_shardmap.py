"""Unit tests of store/shardmap.py: the stable key-to-shard hash and shard range syntax."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.errors import InvalidArgument
from store.shardmap import format_shard_ranges, parse_shard_ranges, shard_of

# Computed once with this implementation: blake2b-64 of bucket, NUL and key, little-endian,
# modulo the shard count.
PINNED_SHARDS = [
    ("photos", b"cat.jpg", 16, 8),
    ("photos", b"cat.jpg", 64, 8),
    ("logs", b"2024/01/01.gz", 16, 1),
    ("a-b", "日本".encode(), 4096, 2878),
]


@pytest.mark.parametrize(("bucket", "key", "shard_count", "shard"), PINNED_SHARDS)
def test_shard_of_pinned(bucket: str, key: bytes, shard_count: int, shard: int) -> None:
    """Existing clusters find their keys only while the hash stays exactly the same."""
    assert shard_of(bucket, key, shard_count) == shard, (
        f"shard_of({bucket!r}, {key!r}, {shard_count}) changed; existing clusters would lose keys"
    )


def test_shard_of_bucket_matters() -> None:
    shards = {shard_of(bucket, b"same-key", 64) for bucket in ["aaa", "bbb", "ccc", "ddd", "eee"]}
    assert len(shards) > 1, "the bucket name does not affect the shard"


def test_shard_of_spread() -> None:
    counts = Counter(shard_of("bucket", f"key-{index}".encode(), 16) for index in range(16_000))
    assert set(counts) == set(range(16)), f"some shards got no keys: {counts}"
    for shard, count in counts.items():
        assert 800 <= count <= 1200, f"shard {shard} got {count} of 16000 keys, expected ~1000"


@given(
    bucket=st.text(alphabet="abc-.0", min_size=3, max_size=10),
    key=st.binary(min_size=1, max_size=50),
    shard_count=st.integers(min_value=1, max_value=4096),
)
def test_shard_of_in_range(bucket: str, key: bytes, shard_count: int) -> None:
    shard = shard_of(bucket, key, shard_count)
    assert 0 <= shard < shard_count, f"shard {shard} outside 0-{shard_count - 1}"
    assert shard_of(bucket, key, shard_count) == shard, "shard_of is not deterministic"


@pytest.mark.parametrize(
    ("text", "count", "shards"),
    [
        ("0-7,12,14-15", 16, [0, 1, 2, 3, 4, 5, 6, 7, 12, 14, 15]),
        ("3", 4, [3]),
        (" 1 , 0 ", 4, [0, 1]),
        ("0-3,2-5", 8, [0, 1, 2, 3, 4, 5]),
    ],
)
def test_parse_shard_ranges(text: str, count: int, shards: list[int]) -> None:
    assert parse_shard_ranges(text, count) == shards, f"parse of {text!r}"


@pytest.mark.parametrize(
    ("text", "count"),
    [("", 16), ("x", 16), ("16", 16), ("8-3", 16), ("-1", 16), ("0-", 16), ("0", 0), ("0", 5000)],
)
def test_parse_shard_ranges_invalid(text: str, count: int) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_shard_ranges(text, count)
    message = str(caught.value)
    assert repr(text) in message or str(count) in message, f"the error names no value: {message}"


@given(st.sets(st.integers(min_value=0, max_value=63), min_size=1))
def test_format_round_trip(shards: set[int]) -> None:
    text = format_shard_ranges(list(shards))
    assert parse_shard_ranges(text, 64) == sorted(shards), f"{text!r} did not round-trip"


def test_format_compact() -> None:
    assert format_shard_ranges([5, 0, 1, 2, 7, 6]) == "0-2,5-7", "ranges are not compact"
