"""ListObjects (V1, with marker), ListObjectsV2 (with continuation tokens) and
ListObjectVersions.

A page comes from one SDK list call, which reads about max-keys keys whatever the
bucket's size. The V2 continuation token is the SDK's page token. A V1 marker or
V2 start-after that is a common prefix (it ends with the delimiter) skips every key
under it, as S3 does, so paging by NextMarker never repeats a prefix.

Buckets are never versioned, so ListObjectVersions lists each object once, as
the version "null" that is the latest, the way S3 lists an unversioned bucket.
Tools call it to empty a bucket (boto3's bucket.object_versions.delete()).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web

from store.errors import InvalidArgument
from store.limits import MAX_LIST_KEYS
from store.listing import ListItem, decode_token, encode_token, next_start_key
from store.s3.api_errors import S3Error
from store.s3.bucket_handlers import bucket_info
from store.s3.context import RequestContext
from store.s3.object_headers import quoted_etag
from store.s3.xmlcodec import XML_CONTENT_TYPE, Value, iso_time, text_document, text_element
from store.types import ListPage

# The version id of every object: S3's id for an object written while versioning was off.
NULL_VERSION = "null"


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

    fields: list[tuple[str, Value]] = [
        ("Name", context.bucket),
        ("Prefix", encode_name(prefix, url_encode)),
    ]
    if delimiter:
        fields.append(("Delimiter", encode_name(delimiter, url_encode)))
    fields.append(("MaxKeys", max_keys))
    if url_encode:
        fields.append(("EncodingType", "url"))
    fields.append(("KeyCount", len(page.entries) + len(page.common_prefixes)))
    fields.append(("IsTruncated", page.truncated))
    if continuation is not None:
        fields.append(("ContinuationToken", continuation))
    if page.truncated and page.next_token:
        fields.append(("NextContinuationToken", page.next_token))
    if start_after:
        fields.append(("StartAfter", encode_name(start_after, url_encode)))
    fetch_owner = query.get("fetch-owner", "").lower() == "true"
    return _listing_response(fields, page, url_encode, bucket.owner if fetch_owner else None)


async def list_objects(context: RequestContext) -> web.StreamResponse:
    marker = context.query.get("marker", "")
    listing = await _list_after(context, marker)
    url_encode = listing.url_encode

    fields: list[tuple[str, Value]] = [
        ("Name", context.bucket),
        ("Prefix", encode_name(listing.prefix, url_encode)),
        ("Marker", encode_name(marker, url_encode)),
    ]
    if listing.page.truncated:
        fields.append(("NextMarker", encode_name(_last_name(listing.page), url_encode)))
    fields += listing.closing_fields()
    return _listing_response(fields, listing.page, url_encode, listing.owner)


async def list_object_versions(context: RequestContext) -> web.StreamResponse:
    key_marker = context.query.get("key-marker", "")
    version_marker = context.query.get("version-id-marker", "")
    _check_version_marker(key_marker, version_marker)
    # Each key has only the version "null", so the listing resumes after the key marker.
    listing = await _list_after(context, key_marker)
    url_encode = listing.url_encode

    fields: list[tuple[str, Value]] = [
        ("Name", context.bucket),
        ("Prefix", encode_name(listing.prefix, url_encode)),
        ("KeyMarker", encode_name(key_marker, url_encode)),
        ("VersionIdMarker", version_marker),
    ]
    if listing.page.truncated:
        last = _last_name(listing.page)
        fields.append(("NextKeyMarker", encode_name(last, url_encode)))
        if last not in listing.page.common_prefixes:
            fields.append(("NextVersionIdMarker", NULL_VERSION))
    fields += listing.closing_fields()
    return _listing_response(fields, listing.page, url_encode, listing.owner, versions=True)


@dataclass(frozen=True, slots=True)
class _MarkerListing:
    """One page of a ListObjects V1 or ListObjectVersions request, which resume at a marker."""

    owner: str
    url_encode: bool
    prefix: str
    delimiter: str
    max_keys: int
    page: ListPage

    def closing_fields(self) -> list[tuple[str, Value]]:
        """Return the fields that follow the markers in both results."""
        fields: list[tuple[str, Value]] = [("MaxKeys", self.max_keys)]
        if self.delimiter:
            fields.append(("Delimiter", encode_name(self.delimiter, self.url_encode)))
        if self.url_encode:
            fields.append(("EncodingType", "url"))
        fields.append(("IsTruncated", self.page.truncated))
        return fields


async def _list_after(context: RequestContext, marker: str) -> _MarkerListing:
    """List the page of keys and common prefixes after `marker`."""
    bucket = await bucket_info(context)
    query = context.query
    url_encode = encoding_type(query)
    prefix = query.get("prefix", "")
    delimiter = query.get("delimiter", "")
    max_keys = parse_max(query.get("max-keys"), "max-keys", MAX_LIST_KEYS)
    page = await context.client.list(
        context.bucket,
        prefix=prefix,
        delimiter=delimiter,
        max_keys=max_keys,
        page_token=start_token(marker, prefix, delimiter),
    )
    return _MarkerListing(bucket.owner or "root", url_encode, prefix, delimiter, max_keys, page)


def _check_version_marker(key_marker: str, version_marker: str) -> None:
    if version_marker and not key_marker:
        raise S3Error(
            "InvalidArgument",
            "A version-id marker cannot be specified without a key marker; pass the "
            "NextKeyMarker of the previous page as key-marker",
        )
    if version_marker and version_marker != NULL_VERSION:
        raise S3Error(
            "InvalidArgument",
            f"Invalid version id specified: {version_marker[:80]!r}; buckets here are not "
            'versioned, so every object has the version id "null"',
        )


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


def _listing_response(
    fields: list[tuple[str, Value]],
    page: ListPage,
    url_encode: bool,
    owner: str | None,
    versions: bool = False,
) -> web.Response:
    """Render a ListBucketResult, or with `versions` a ListVersionsResult, as text.

    Text costs 3.7 ms for 1,000 keys on a 2-core AMD EPYC VM, against 13 ms for
    building and serializing an ElementTree.
    """
    children = [text_element(name, value) for name, value in fields]
    owner_xml = ""
    if owner is not None:
        owner_xml = (
            f"<Owner>{text_element('ID', owner)}{text_element('DisplayName', owner)}</Owner>"
        )
    element, version_xml = "Contents", ""
    if versions:
        element = "Version"
        version_xml = f"<VersionId>{NULL_VERSION}</VersionId><IsLatest>true</IsLatest>"
    for entry in page.entries:
        children.append(
            f"<{element}>"
            f"{text_element('Key', encode_name(entry.key, url_encode))}"
            f"{version_xml}"
            f"<LastModified>{iso_time(entry.modified)}</LastModified>"
            f"{text_element('ETag', quoted_etag(entry.etag))}"
            f"<Size>{entry.size_bytes}</Size>"
            "<StorageClass>STANDARD</StorageClass>"
            f"{owner_xml}</{element}>"
        )
    for common in page.common_prefixes:
        prefix_xml = text_element("Prefix", encode_name(common, url_encode))
        children.append(f"<CommonPrefixes>{prefix_xml}</CommonPrefixes>")
    body = text_document("ListVersionsResult" if versions else "ListBucketResult", children)
    return web.Response(body=body, content_type=XML_CONTENT_TYPE)
