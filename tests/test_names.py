"""Unit tests of store/names.py: S3 bucket rules, keys and user metadata."""

from __future__ import annotations

import pytest

from store.errors import InvalidArgument
from store.limits import MAX_KEY_BYTES, MAX_USER_METADATA_BYTES
from store.names import (
    bucket_name_problem,
    check_bucket_name,
    check_user_metadata,
    display_key,
    encode_key,
)

# Each invalid name with a word the reason must contain.
INVALID_BUCKETS = [
    ("", "3 to 63"),
    ("ab", "3 to 63"),
    ("a" * 64, "3 to 63"),
    ("Abc", "lowercase"),
    ("ab_c", "lowercase"),
    ("ab c", "lowercase"),
    ("-abc", "begin and end"),
    ("abc-", "begin and end"),
    (".abc", "begin and end"),
    ("a..b", "adjacent dots"),
    ("a.-b", "dot next to a hyphen"),
    ("a-.b", "dot next to a hyphen"),
    ("10.0.0.1", "IP address"),
    ("xn--abc", "xn--"),
    ("sthree-abc", "sthree-"),
    ("amzn-s3-demo-abc", "amzn-s3-demo-"),
    ("abc-s3alias", "-s3alias"),
    ("abc--ol-s3", "--ol-s3"),
    ("abc.mrap", ".mrap"),
    ("abc--x-s3", "--x-s3"),
    ("abc--table-s3", "--table-s3"),
    ("ümlaut", "lowercase"),
]

VALID_BUCKETS = ["abc", "a" * 63, "0ab", "a.b.c", "a-b-c", "1.2.3", "999.1.1.1a", "my-bucket.v2"]


@pytest.mark.parametrize(("name", "reason"), INVALID_BUCKETS)
def test_bucket_name_invalid(name: str, reason: str) -> None:
    problem = bucket_name_problem(name)
    assert problem is not None, f"{name!r} was accepted"
    assert reason in problem, f"the reason for {name!r} is {problem!r}, expected {reason!r}"

    with pytest.raises(InvalidArgument) as caught:
        check_bucket_name(name)
    assert repr(name) in str(caught.value), f"the error does not name {name!r}"


@pytest.mark.parametrize("name", VALID_BUCKETS)
def test_bucket_name_valid(name: str) -> None:
    assert bucket_name_problem(name) is None, f"{name!r} was rejected"
    assert check_bucket_name(name) == name, "check_bucket_name changed a valid name"


def test_bucket_name_not_str() -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_bucket_name(b"bytes-name")  # type: ignore[arg-type]
    assert "bytes" in str(caught.value), f"the error does not name the type: {caught.value}"


def test_encode_key_valid() -> None:
    assert encode_key("日本/ファイル") == "日本/ファイル".encode(), "str keys are UTF-8"
    assert encode_key(b"\x00\xff") == b"\x00\xff", "bytes keys pass through"
    assert encode_key(bytearray(b"ab")) == b"ab", "bytearray keys become bytes"  # type: ignore[arg-type]
    assert encode_key("k" * MAX_KEY_BYTES) == b"k" * MAX_KEY_BYTES, "a maximum-length key"


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("", "empty"),
        (b"", "empty"),
        ("k" * (MAX_KEY_BYTES + 1), str(MAX_KEY_BYTES + 1)),
        ("é" * (MAX_KEY_BYTES // 2 + 1), str(MAX_KEY_BYTES + 2)),
        ("\ud800", "Unicode"),
        (42, "int"),
    ],
)
def test_encode_key_invalid(key: object, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        encode_key(key)  # type: ignore[arg-type]
    assert fragment in str(caught.value), f"the error for {key!r:.40} lacks {fragment!r}"


def test_display_key() -> None:
    assert display_key("日本".encode()) == "日本", "UTF-8 keys display as text"
    assert display_key(b"\xff") == "\\xff", "other bytes display escaped"
    assert display_key(b"k" * 300) == "k" * 200 + "...", "long keys are cut at 200 characters"


def test_metadata_valid() -> None:
    at_limit = {"name": "v" * (MAX_USER_METADATA_BYTES - 4)}
    assert check_user_metadata(None) == {}, "None means no metadata"
    assert check_user_metadata(at_limit) == at_limit, "metadata at the size limit"
    assert check_user_metadata({"é": "日本"}) == {"é": "日本"}, "non-ASCII metadata"


@pytest.mark.parametrize(
    ("metadata", "fragment"),
    [
        ({"name": "v" * (MAX_USER_METADATA_BYTES - 3)}, str(MAX_USER_METADATA_BYTES + 1)),
        ({"é": "v" * (MAX_USER_METADATA_BYTES - 1)}, str(MAX_USER_METADATA_BYTES + 1)),
        ({"": "value"}, "empty"),
        ({"name": "line\nbreak"}, "control character"),
        ({"name\x7f": "value"}, "control character"),
        ({"name": 5}, "must be str"),
    ],
)
def test_metadata_invalid(metadata: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_user_metadata(metadata)  # type: ignore[arg-type]
    assert fragment in str(caught.value), f"the error lacks {fragment!r}: {caught.value}"
