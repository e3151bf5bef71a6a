"""Validation of bucket names, keys and user metadata, following the S3 rules."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from functools import lru_cache

from store.errors import InvalidArgument
from store.limits import (
    MAX_BUCKET_NAME_CHARS,
    MAX_KEY_BYTES,
    MAX_USER_METADATA_BYTES,
    MIN_BUCKET_NAME_CHARS,
)

_BUCKET_CHARS = re.compile(r"^[a-z0-9][a-z0-9.\-]*[a-z0-9]$")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


# Every SDK call checks its bucket name, and the IP address test alone costs microseconds.
@lru_cache(maxsize=4096)
def bucket_name_problem(name: str) -> str | None:
    """Return why `name` is not a valid bucket name, or None when it is."""
    if not MIN_BUCKET_NAME_CHARS <= len(name) <= MAX_BUCKET_NAME_CHARS:
        return (
            f"must be {MIN_BUCKET_NAME_CHARS} to {MAX_BUCKET_NAME_CHARS} characters long, "
            f"not {len(name)}"
        )
    if not _BUCKET_CHARS.match(name):
        return (
            "may contain only lowercase letters, digits, dots and hyphens, and must "
            "begin and end with a letter or digit"
        )
    if ".." in name:
        return "must not contain two adjacent dots"
    if ".-" in name or "-." in name:
        return "must not contain a dot next to a hyphen"
    try:
        ipaddress.IPv4Address(name)
        return "must not be formatted as an IP address"
    except ValueError:
        pass
    for prefix in _RESERVED_PREFIXES:
        if name.startswith(prefix):
            return f"must not start with the reserved prefix {prefix!r}"
    for suffix in _RESERVED_SUFFIXES:
        if name.endswith(suffix):
            return f"must not end with the reserved suffix {suffix!r}"
    return None


def check_bucket_name(name: str) -> str:
    """Return `name` unchanged, or raise InvalidArgument saying which rule it breaks."""
    if not isinstance(name, str):
        raise InvalidArgument(f"bucket name must be a str, not {type(name).__name__}")
    problem = bucket_name_problem(name)
    if problem is not None:
        raise InvalidArgument(f"invalid bucket name {name!r}: a bucket name {problem}")
    return name


def encode_key(key: str | bytes) -> bytes:
    """Return the key as bytes (UTF-8 for str), raising InvalidArgument when it is invalid."""
    if isinstance(key, str):
        try:
            raw = key.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidArgument(f"key {key!r} is not valid Unicode: {exc}") from None
    elif isinstance(key, bytes | bytearray | memoryview):
        raw = bytes(key)
    else:
        raise InvalidArgument(f"key must be str or bytes, not {type(key).__name__}")
    if not raw:
        raise InvalidArgument("key must not be empty")
    if len(raw) > MAX_KEY_BYTES:
        raise InvalidArgument(
            f"key {display_key(raw[:40])!r}... is {len(raw)} bytes long; the maximum is "
            f"{MAX_KEY_BYTES} bytes of UTF-8, so shorten it"
        )
    return raw


def display_key(key: bytes) -> str:
    """Return a key for messages and logs, decoding UTF-8 where it can."""
    text = key.decode("utf-8", errors="backslashreplace")
    if len(text) > 200:
        return text[:200] + "..."
    return text


def check_user_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Return user metadata as a dict, raising InvalidArgument when it is invalid or too big."""
    if not metadata:
        return {}
    total_bytes = 0
    for name, value in metadata.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidArgument(
                f"user metadata names and values must be str, got {name!r}: {value!r}"
            )
        if not name:
            raise InvalidArgument("user metadata names must not be empty")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name + value):
            raise InvalidArgument(f"user metadata {name!r} contains a control character; remove it")
        total_bytes += len(name.encode("utf-8")) + len(value.encode("utf-8"))
    if total_bytes > MAX_USER_METADATA_BYTES:
        raise InvalidArgument(
            f"user metadata is {total_bytes} bytes (names plus values); the maximum is "
            f"{MAX_USER_METADATA_BYTES} bytes, so store large values in the object itself"
        )
    return dict(metadata)
