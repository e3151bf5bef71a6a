"""Conditional requests: If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since.

Reads follow RFC 9110 section 13.2.2, as S3 does. If-Match decides first, and
If-Unmodified-Since is ignored when If-Match is present. Then If-None-Match decides,
and If-Modified-Since is ignored when If-None-Match is present. A failed If-Match or
If-Unmodified-Since is 412, and a failed If-None-Match or If-Modified-Since is 304 on
GET and HEAD. The x-amz-copy-source-if-* headers of a copy follow the same order, and
every failure is 412.

Conditional writes (PutObject, CopyObject and CompleteMultipartUpload with If-Match
or If-None-Match) are not checked here: the SDK sends them with the commit, and the
metadata shard decides them atomically.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

from store.s3.api_errors import S3Error, not_implemented
from store.types import ObjectInfo


class NotModified(Exception):
    """A read whose If-None-Match or If-Modified-Since shows the client's copy is current."""


@dataclass(frozen=True, slots=True)
class WriteConditions:
    # An ETag the current object must have, "*" for any object, or "" for no condition.
    if_match: str = ""
    # True for If-None-Match: *, which fails when any object exists.
    if_none_match: bool = False
    # ETags the current object must not have.
    if_none_match_etags: tuple[str, ...] = ()


def check_read_conditions(headers: Mapping[str, str], info: ObjectInfo) -> None:
    """Raise PreconditionFailed (412) or NotModified (304) when a read condition fails."""
    _check(headers, info, prefix="", modified_error=NotModified())


def check_copy_source_conditions(headers: Mapping[str, str], info: ObjectInfo) -> None:
    """Raise PreconditionFailed when an x-amz-copy-source-if-* condition fails."""
    failed = _precondition_failed("x-amz-copy-source-if-none-match or -if-modified-since")
    _check(headers, info, prefix="x-amz-copy-source-", modified_error=failed)


def write_conditions(headers: Mapping[str, str]) -> WriteConditions:
    """Read If-Match / If-None-Match of a PutObject, CopyObject or CompleteMultipartUpload.

    S3 takes If-None-Match: * and If-Match with one ETag. The other forms that
    RFC 9110 defines (If-Match: *, If-None-Match with ETags) have its meaning.
    """
    if_match = headers.get("if-match")
    if if_match is not None and "," in if_match:
        raise not_implemented(f"If-Match: {if_match[:60]} on a write (send one ETag or *)")
    if_none_match = (headers.get("if-none-match") or "").strip()
    etags: tuple[str, ...] = ()
    if if_none_match and if_none_match != "*":
        etags = tuple(_strip_etag(value) for value in if_none_match.split(",") if value.strip())
    return WriteConditions(
        if_match=_strip_etag(if_match) if if_match else "",
        if_none_match=if_none_match == "*",
        if_none_match_etags=etags,
    )


def _check(
    headers: Mapping[str, str], info: ObjectInfo, prefix: str, modified_error: Exception
) -> None:
    if_match = headers.get(prefix + "if-match")
    if if_match is not None:
        if not _etag_matches(if_match, info.etag):
            raise _precondition_failed(prefix + "If-Match")
    else:
        unmodified_since = _parse_date(headers.get(prefix + "if-unmodified-since"))
        if unmodified_since is not None and _seconds(info.modified) > unmodified_since:
            raise _precondition_failed(prefix + "If-Unmodified-Since")

    if_none_match = headers.get(prefix + "if-none-match")
    if if_none_match is not None:
        if _etag_matches(if_none_match, info.etag):
            raise modified_error
    else:
        modified_since = _parse_date(headers.get(prefix + "if-modified-since"))
        if modified_since is not None and _seconds(info.modified) <= modified_since:
            raise modified_error


def _etag_matches(header: str, etag: str) -> bool:
    """Return whether an If-Match / If-None-Match list ("*" or quoted ETags) names `etag`."""
    for candidate in header.split(","):
        value = candidate.strip()
        if value == "*" or _strip_etag(value) == etag:
            return True
    return False


def _strip_etag(value: str) -> str:
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


def _parse_date(value: str | None) -> int | None:
    """Return an HTTP date as Unix seconds, or None when absent or invalid (then ignored)."""
    if not value:
        return None
    try:
        return int(parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError, IndexError):
        return None


def _seconds(moment: datetime) -> int:
    # HTTP dates have a resolution of one second.
    return int(moment.timestamp())


def _precondition_failed(condition: str) -> S3Error:
    return S3Error(
        "PreconditionFailed",
        f"At least one of the pre-conditions you specified did not hold ({condition})",
    )
