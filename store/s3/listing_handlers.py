"""ListObjects (V1, with marker) and ListObjectsV2 (with continuation tokens).

A page comes from one SDK list call, which reads about max-keys keys whatever the
bucket's size. The V2 continuation token is the SDK's page token. A V1 marker or
V2 start-after that is a common prefix (it ends with the delimiter) skips every key
under it, as S3 does, so paging by NextMarker never repeats a prefix.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from urllib.parse import quote

from aiohttp import web

from store.errors import InvalidArgument
from store.limits import MAX_LIST_KEYS
from store.listing import ListItem, decode_token, encode_token, next_start_key
from store.s3.api_errors import S3Error
from store.s3.bucket_handlers import add_owner, bucket_info
from store.s3.context import RequestContext
from store.s3.object_headers import quoted_etag
from store.s3.responses import xml_response
from store.s3.xmlcodec import add, iso_time, new_document
from store.types import ListPage


def encoding_type(query: Mapping[str, str]) -> bool:
    """Return True for encoding-type=url; raise InvalidArgument for another value."""
    value = query.get("encoding-type")
    if value is None:
        return False
    if value.lower() != "url":
        raise S3Error("InvalidArgument", f"Invalid Encoding Method specified in Request: {value!r}")
    return True


def encode_name(name: str, url_encode: bool) -> str:
    """URL-encode a key or prefix for encoding-type=url (as S3 does, keeping '/')."""
    if not url_encode:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return quote(name.encode("utf-8", "surrogateescape"), safe="/")


def parse_max(text: str | None, name: str, maximum: int) -> int:
    """Parse max-keys and friends: an integer from 0, values above `maximum` clipped."""
    if text is None:
        return maximum
    if not text.strip().isdigit():
        raise S3Error(
            "InvalidArgument", f"Provided {name} {text[:20]!r} must be an integer of 0 or more"
        )
    return min(int(text), maximum)


def start_token(start_after: str, prefix: str, delimiter: str) -> str | None:
    """Return the SDK page token that starts a listing after `start_after`."""
    if not start_after:
        return None
    raw = start_after.encode("utf-8", "surrogateescape")
    is_prefix = (
        bool(delimiter) and start_after.startswith(prefix) and start_after.endswith(delimiter)
    )
    start = next_start_key(ListItem(raw, is_prefix))
    # NOTE: a start-after of all 0xff bytes has no successor; it then lists from itself.
    return encode_token(start if start is not None else raw)


async def list_objects_v2(context: RequestContext) -> web.StreamResponse:
    bucket = await bucket_info(context)
    query = context.query
    url_encode = encoding_type(query)
    prefix = query.get("prefix", "")
    delimiter = query.get("delimiter", "")
    max_keys = parse_max(query.get("max-keys"), "max-keys", MAX_LIST_KEYS)
    continuation = query.get("continuation-token")
    start_after = query.get("start-after", "")
    token: str | None
    if continuation is not None:
        token = _check_token(continuation)
    else:
        token = start_token(start_after, prefix, delimiter)
    page = await context.client.list(
        context.bucket, prefix=prefix, delimiter=delimiter, max_keys=max_keys, page_token=token
    )

    root = new_document("ListBucketResult")
    add(root, "Name", context.bucket)
    add(root, "Prefix", encode_name(prefix, url_encode))
    if delimiter:
        add(root, "Delimiter", encode_name(delimiter, url_encode))
    add(root, "MaxKeys", max_keys)
    if url_encode:
        add(root, "EncodingType", "url")
    add(root, "KeyCount", len(page.entries) + len(page.common_prefixes))
    add(root, "IsTruncated", page.truncated)
    if continuation is not None:
        add(root, "ContinuationToken", continuation)
    if page.truncated and page.next_token:
        add(root, "NextContinuationToken", page.next_token)
    if start_after:
        add(root, "StartAfter", encode_name(start_after, url_encode))
    fetch_owner = query.get("fetch-owner", "").lower() == "true"
    _add_page(root, page, url_encode, bucket.owner if fetch_owner else None)
    return xml_response(root)


async def list_objects(context: RequestContext) -> web.StreamResponse:
    bucket = await bucket_info(context)
    query = context.query
    url_encode = encoding_type(query)
    prefix = query.get("prefix", "")
    delimiter = query.get("delimiter", "")
    marker = query.get("marker", "")
    max_keys = parse_max(query.get("max-keys"), "max-keys", MAX_LIST_KEYS)
    page = await context.client.list(
        context.bucket,
        prefix=prefix,
        delimiter=delimiter,
        max_keys=max_keys,
        page_token=start_token(marker, prefix, delimiter),
    )

    root = new_document("ListBucketResult")
    add(root, "Name", context.bucket)
    add(root, "Prefix", encode_name(prefix, url_encode))
    add(root, "Marker", encode_name(marker, url_encode))
    if page.truncated:
        add(root, "NextMarker", encode_name(_last_name(page), url_encode))
    add(root, "MaxKeys", max_keys)
    if delimiter:
        add(root, "Delimiter", encode_name(delimiter, url_encode))
    if url_encode:
        add(root, "EncodingType", "url")
    add(root, "IsTruncated", page.truncated)
    _add_page(root, page, url_encode, bucket.owner or "root")
    return xml_response(root)


def _last_name(page: ListPage) -> str:
    """Return the greatest key or common prefix of a page: the next page's marker."""
    names = [entry.key for entry in page.entries] + page.common_prefixes
    return max(names, key=lambda name: name.encode("utf-8", "surrogateescape")) if names else ""


def _check_token(token: str) -> str:
    try:
        decode_token(token)
    except InvalidArgument:
        raise S3Error(
            "InvalidArgument",
            f"The continuation token provided is incorrect: {token[:80]!r}; pass the "
            "NextContinuationToken of the previous page",
        ) from None
    return token


def _add_page(root: ET.Element, page: ListPage, url_encode: bool, owner: str | None) -> None:
    for entry in page.entries:
        contents = add(root, "Contents")
        add(contents, "Key", encode_name(entry.key, url_encode))
        add(contents, "LastModified", iso_time(entry.modified))
        add(contents, "ETag", quoted_etag(entry.etag))
        add(contents, "Size", entry.size_bytes)
        add(contents, "StorageClass", "STANDARD")
        if owner is not None:
            add_owner(contents, "Owner", owner or "root")
    for common in page.common_prefixes:
        prefixes = add(root, "CommonPrefixes")
        add(prefixes, "Prefix", encode_name(common, url_encode))
