"""Listing against a sorted in-memory model: prefix, delimiter, start_after, max_keys, pages.

Keys of one bucket spread over the cluster's 16 metadata shards, so every
page is a merge of per-shard scans.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import store

from .support import new_bucket_name

SEGMENTS = ["a", "b", "ab", "a-b", "é", "日本", "z", "0", "~", "x y"]
DELIMITERS = ["", "/", "-", "é", "/b"]


@dataclass(frozen=True)
class Query:
    prefix: str
    delimiter: str
    start_after: str
    max_keys: int


# An item of a listing: ("key", key) or ("prefix", common prefix), as UTF-8 bytes.
Item = tuple[str, bytes]


def model_items(keys: list[str], prefix: str, delimiter: str, start_after: str) -> list[Item]:
    """Return the whole listing in S3 order: keys in byte order, each common prefix once."""
    raw_prefix = prefix.encode()
    raw_delimiter = delimiter.encode()
    raw_start = start_after.encode()
    items: list[Item] = []
    for key in sorted(key.encode() for key in keys):
        if not key.startswith(raw_prefix) or key <= raw_start:
            continue
        position = key.find(raw_delimiter, len(raw_prefix)) if raw_delimiter else -1
        if position < 0:
            items.append(("key", key))
            continue
        common = key[: position + len(raw_delimiter)]
        if not items or items[-1] != ("prefix", common):
            items.append(("prefix", common))
    return items


def page_items(page: store.ListPage) -> list[Item]:
    """Return a page's keys and common prefixes merged in byte order."""
    items: list[Item] = [("key", entry.key.encode()) for entry in page.entries]
    items += [("prefix", common.encode()) for common in page.common_prefixes]
    return sorted(items, key=lambda item: item[1])


def list_all(client: store.Client, bucket: str, query: Query, max_pages: int) -> list[Item]:
    """Follow page tokens to the end and return every item, failing after `max_pages` pages."""
    items: list[Item] = []
    token: str | None = None
    for _ in range(max_pages):
        page = client.list(
            bucket,
            prefix=query.prefix,
            delimiter=query.delimiter,
            start_after=query.start_after,
            max_keys=query.max_keys,
            page_token=token,
        )
        assert len(page.entries) + len(page.common_prefixes) <= query.max_keys, (
            f"a page of {query} returned more than max_keys items"
        )
        items += page_items(page)
        if not page.truncated:
            return items
        assert page.next_token, f"a truncated page of {query} has no next_token"
        token = page.next_token
    raise AssertionError(f"listing {query} did not end within {max_pages} pages")


def check_query(client: store.Client, bucket: str, keys: list[str], query: Query) -> None:
    expected = model_items(keys, query.prefix, query.delimiter, query.start_after)

    page = client.list(
        bucket,
        prefix=query.prefix,
        delimiter=query.delimiter,
        start_after=query.start_after,
        max_keys=query.max_keys,
    )
    assert page_items(page) == expected[: query.max_keys], f"first page of {query} differs"
    assert page.truncated == (len(expected) > query.max_keys), (
        f"first page of {query}: truncated={page.truncated} but {len(expected)} items match"
    )
    for entry in page.entries:
        assert entry.size_bytes == len(entry.key.encode()), (
            f"entry {entry.key!r} reports {entry.size_bytes} bytes; its data is its key"
        )

    everything = list_all(client, bucket, query, max_pages=len(expected) + 2)
    assert everything == expected, f"all pages of {query} concatenated differ from the model"


key_strategy = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=3).flatmap(
    lambda parts: st.sampled_from(["/".join(parts), "/".join(parts) + "/"])
)


@st.composite
def queries(draw: st.DrawFn, keys: list[str]) -> Query:
    """Draw a query whose prefix and start_after often fall on or inside stored keys."""
    cut_points = [key[:cut] for key in keys for cut in range(len(key) + 1)] or [""]
    text = st.text(alphabet="ab/-é日~", max_size=4)
    prefix = draw(st.one_of(st.just(""), st.sampled_from(cut_points), text))
    start_after = draw(st.one_of(st.just(""), st.sampled_from(cut_points), text))
    delimiter = draw(st.sampled_from(DELIMITERS))
    max_keys = draw(st.one_of(st.integers(min_value=1, max_value=6), st.just(1000)))
    return Query(prefix, delimiter, start_after, max_keys)


def check_listing(client: store.Client, keys: list[str], data: st.DataObject) -> None:
    """Store `keys` in a new bucket and compare three drawn queries with the model."""
    bucket = new_bucket_name("list")
    client.create_bucket(bucket)
    for key in keys:
        client.put(bucket, key, key.encode())

    for _ in range(3):
        check_query(client, bucket, keys, data.draw(queries(keys)))


LISTING_SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@settings(LISTING_SETTINGS, max_examples=40)
@given(keys=st.lists(key_strategy, max_size=25, unique=True), data=st.data())
def test_list_matches_model(client: store.Client, keys: list[str], data: st.DataObject) -> None:
    check_listing(client, keys, data)


@settings(LISTING_SETTINGS, max_examples=15)
@given(keys=st.lists(key_strategy, max_size=25, unique=True), data=st.data())
def test_list_two_metaservers(
    two_meta_client: store.Client, keys: list[str], data: st.DataObject
) -> None:
    """The SDK merges the pages of two metaservers, each serving 8 of the 16 shards."""
    check_listing(two_meta_client, keys, data)


def test_list_many_keys(client: store.Client, bucket: str) -> None:
    keys = [f"dir{d}/file{f:03d}" for d in range(5) for f in range(50)] + ["top", "zz/"]
    for key in keys:
        client.put(bucket, key, key.encode())

    for query in [
        Query("", "", "", 37),
        Query("", "/", "", 2),
        Query("dir3/", "", "dir3/file010", 13),
        Query("dir", "/", "dir1/", 1000),
    ]:
        check_query(client, bucket, keys, query)


def test_list_max_keys_zero(client: store.Client, bucket: str) -> None:
    client.put(bucket, "one", b"one")

    page = client.list(bucket, max_keys=0)
    assert page.entries == [], "max_keys=0 returned entries"
    assert page.common_prefixes == [], "max_keys=0 returned common prefixes"
