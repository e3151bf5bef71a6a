"""Unit tests of store/listing.py: the k-way merge of shard cursors and page tokens."""

from __future__ import annotations

import bisect
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.errors import InvalidArgument
from store.listing import (
    ItemCursor,
    ListItem,
    decode_token,
    encode_token,
    merge_page,
    next_start_key,
    prefix_successor,
)

# ("key", key) or ("prefix", common prefix).
Item = tuple[str, bytes]


def model_items(keys: set[bytes], prefix: bytes, delimiter: bytes, start: bytes) -> list[Item]:
    """Return the whole listing from `start` (inclusive) in byte order, each prefix once."""
    items: list[Item] = []
    for key in sorted(keys):
        if not key.startswith(prefix) or key < start:
            continue
        position = key.find(delimiter, len(prefix)) if delimiter else -1
        if position < 0:
            items.append(("key", key))
            continue
        common = key[: position + len(delimiter)]
        if not items or items[-1] != ("prefix", common):
            items.append(("prefix", common))
    return items


class CountingCursor:
    """A cursor over sorted keys that counts the keys it visits."""

    def __init__(self, keys: list[bytes]) -> None:
        self.keys = keys
        self.index = 0
        self.visited = 0

    def current(self) -> bytes | None:
        return self.keys[self.index] if self.index < len(self.keys) else None

    def payload(self) -> bytes:
        return b"payload of " + self.keys[self.index]

    def advance(self) -> bytes | None:
        self.index += 1
        self.visited += 1
        return self.current()

    def seek(self, key: bytes) -> None:
        self.index = max(self.index, bisect.bisect_left(self.keys, key))
        self.visited += 1


def shard_cursors(
    keys: set[bytes], shards: int, prefix: bytes, start: bytes
) -> list[CountingCursor]:
    """Split keys over `shards` cursors, keeping only keys a shard scan would return."""
    parts: list[list[bytes]] = [[] for _ in range(shards)]
    for key in sorted(keys):
        if key.startswith(prefix) and key >= start:
            parts[zlib.crc32(key) % shards].append(key)
    return [CountingCursor(part) for part in parts]


def as_items(items: list[ListItem]) -> list[Item]:
    return [("prefix" if item.is_prefix else "key", item.key) for item in items]


key_bytes = st.lists(
    st.sampled_from([b"a", b"b", b"/", b"-", b"\xc3\xa9", b"\xff", b"z"]), max_size=6
)
keys_strategy = st.sets(key_bytes.map(b"".join).filter(bool), max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    keys=keys_strategy,
    shards=st.integers(min_value=1, max_value=16),
    prefix=key_bytes.map(b"".join),
    delimiter=st.sampled_from([b"", b"/", b"-", b"ab", b"\xff"]),
    start=key_bytes.map(b"".join),
    max_keys=st.integers(min_value=0, max_value=12),
)
def test_merge_page_model(
    keys: set[bytes], shards: int, prefix: bytes, delimiter: bytes, start: bytes, max_keys: int
) -> None:
    expected = model_items(keys, prefix, delimiter, start)
    items, more = merge_page(
        shard_cursors(keys, shards, prefix, start), prefix, delimiter, max_keys
    )

    assert as_items(items) == expected[:max_keys], "the page differs from the model"
    assert more == (len(expected) > max_keys), f"more={more} with {len(expected)} matching items"
    for item in items:
        if not item.is_prefix:
            assert item.payload == b"payload of " + item.key, f"payload of {item.key!r} mixed up"


@settings(max_examples=100, deadline=None)
@given(
    keys=keys_strategy,
    shards=st.integers(min_value=1, max_value=16),
    delimiter=st.sampled_from([b"", b"/", b"-"]),
    max_keys=st.integers(min_value=1, max_value=5),
)
def test_merge_pages_follow_tokens(
    keys: set[bytes], shards: int, delimiter: bytes, max_keys: int
) -> None:
    expected = model_items(keys, b"", delimiter, b"")
    collected: list[Item] = []
    start = b""
    for _ in range(len(expected) + 2):
        cursors = shard_cursors(keys, shards, b"", start)
        items, more = merge_page(cursors, b"", delimiter, max_keys)
        collected += as_items(items)
        if not more:
            break
        following = next_start_key(items[-1])
        assert following is not None, f"no start key after {items[-1]} though more follow"
        start = decode_token(encode_token(following))
    assert collected == expected, "pages joined by their tokens differ from the whole listing"


def test_merge_page_duplicates_once() -> None:
    cursors = [
        ItemCursor([ListItem(b"a", False, 1), ListItem(b"b", False, 1)]),
        ItemCursor([ListItem(b"a", False, 2), ListItem(b"c", False, 2)]),
    ]

    items, more = merge_page(cursors, b"", b"", 10)
    assert [item.key for item in items] == [b"a", b"b", b"c"], "a key in two cursors repeated"
    assert not more, "more=True after every key was returned"


def test_merge_page_skips_rolled_up_keys() -> None:
    """A page of one common prefix reads a few keys, not all the keys it rolls up."""
    keys = {b"dir/%05d" % index for index in range(5000)} | {b"end"}
    cursors = shard_cursors(keys, 16, b"", b"")

    items, more = merge_page(cursors, b"", b"/", 2)
    visited = sum(cursor.visited for cursor in cursors)
    assert as_items(items) == [("prefix", b"dir/"), ("key", b"end")], "wrong page"
    assert not more, "more=True after the last key"
    assert visited <= 4 * len(cursors), f"the page visited {visited} keys for 2 items"


def test_merge_page_reads_about_max_keys() -> None:
    keys = {b"key%05d" % index for index in range(5000)}
    cursors = shard_cursors(keys, 16, b"", b"")

    items, more = merge_page(cursors, b"", b"", 10)
    visited = sum(cursor.visited for cursor in cursors)
    assert len(items) == 10, f"a page of 10 returned {len(items)} items"
    assert more, "more=False with 4990 keys left"
    assert visited <= 10, f"a page of 10 keys visited {visited} keys"


@pytest.mark.parametrize(
    ("prefix", "successor"),
    [(b"a", b"b"), (b"a/", b"a0"), (b"a\xff", b"b"), (b"\xff\xff", None), (b"", None)],
)
def test_prefix_successor(prefix: bytes, successor: bytes | None) -> None:
    assert prefix_successor(prefix) == successor, f"successor of {prefix!r}"


def test_next_start_key() -> None:
    assert next_start_key(ListItem(b"key", False)) == b"key\x00", "after a key"
    assert next_start_key(ListItem(b"dir/", True)) == b"dir0", "after a common prefix"


@pytest.mark.parametrize("start", [b"", b"k", b"\x00\xff binary", "日本/".encode()])
def test_token_round_trip(start: bytes) -> None:
    assert decode_token(encode_token(start)) == start, f"token of {start!r} did not round-trip"


@pytest.mark.parametrize("token", ["", "not base64!", "a2V5", "eDF4eA=="])
def test_token_invalid(token: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        decode_token(token)
    assert "page token" in str(caught.value), f"unclear error for token {token!r}"
