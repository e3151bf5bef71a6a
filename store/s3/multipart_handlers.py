"""Multipart uploads: CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
AbortMultipartUpload, ListParts and ListMultipartUploads.

Each part is stored like an object, with its MD5 as its ETag. Completing the
upload joins the parts' layouts into one object without copying data, and the SDK
computes the md5-of-part-md5s-N ETag and the object's checksum.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from aiohttp import web

from store.client_multipart import MAX_LIST_PARTS, MAX_PART_NUMBER
from store.errors import InvalidArgument
from store.layout import check_upload_id
from store.limits import MAX_LIST_KEYS
from store.s3.access import authorize_bucket
from store.s3.api_errors import S3Error
from store.s3.body import MAX_PUT_BYTES, RequestBody
from store.s3.bucket_handlers import add_owner, bucket_info
from store.s3.checksums import (
    DEFAULT_ALGORITHM,
    XML_NAMES,
    check_checksum_type,
    check_value,
    declared_algorithm,
    expected_object_checksums,
    parse_checksum_request,
    part_checksum_fields,
    response_headers,
    with_default_algorithm,
)
from store.s3.conditions import write_conditions
from store.s3.context import RequestContext
from store.s3.copy_handlers import checksum_fields, parse_part_number
from store.s3.listing_handlers import encode_name, encoding_type, parse_max
from store.s3.object_handlers import reject_unsupported_object_headers
from store.s3.object_headers import quoted_etag, stored_headers
from store.s3.responses import xml_response
from store.s3.xmlcodec import (
    MAX_REQUEST_XML_BYTES,
    add,
    add_fields,
    child_text,
    iso_time,
    new_document,
    parse_document,
)
from store.types import MultipartUploadInfo


def upload_id_of(context: RequestContext) -> str:
    """Return the uploadId parameter; a malformed one names no upload (NoSuchUpload)."""
    upload_id = context.query.get("uploadId", "")
    try:
        return check_upload_id(upload_id)
    except InvalidArgument:
        raise _no_such_upload(upload_id) from None


def _no_such_upload(upload_id: str) -> S3Error:
    return S3Error(
        "NoSuchUpload",
        f"The specified upload {upload_id[:80]!r} does not exist: it may have been "
        "aborted or completed, or the upload id is wrong",
    )


async def create_multipart_upload(context: RequestContext) -> web.StreamResponse:
    await authorize_bucket(context.client, context.user, context.bucket)
    reject_unsupported_object_headers(context.headers)
    stored = stored_headers(context.headers)
    algorithm = declared_algorithm(context.headers)
    checksum_type = check_checksum_type(context.headers.get("x-amz-checksum-type"), algorithm)
    upload_id = await context.client.create_multipart_upload(
        context.bucket,
        context.key,
        content_type=stored.content_type,
        metadata=stored.metadata,
        system_metadata=stored.system_metadata,
        checksum_algorithm=algorithm or "",
        checksum_type=checksum_type,
        owner=context.user.name,
    )
    root = new_document("InitiateMultipartUploadResult")
    add(root, "Bucket", context.bucket)
    add(root, "Key", context.key)
    add(root, "UploadId", upload_id)
    headers: dict[str, str] = {}
    if algorithm:
        headers["x-amz-checksum-algorithm"] = algorithm.upper()
        headers["x-amz-checksum-type"] = checksum_type or "COMPOSITE"
    return xml_response(root, headers=headers)


async def upload_part(context: RequestContext) -> web.StreamResponse:
    await authorize_bucket(context.client, context.user, context.bucket)
    part_number = parse_part_number(context.query.get("partNumber"))
    upload_id = upload_id_of(context)
    body = RequestBody(context)
    body.require_length(MAX_PUT_BYTES)
    checksums = parse_checksum_request(context.headers, default_algorithm=None)
    part = await context.client.upload_part(
        context.bucket,
        context.key,
        upload_id,
        part_number,
        body.pieces(checksums),
        content_md5=checksums.content_md5,
        checksum_algorithms=with_default_algorithm(checksums.algorithms),
        expected_checksums=checksums.expected,
    )
    headers = {"ETag": quoted_etag(part.etag)}
    # Parts also carry CRC-64/NVME, so return only what the client declared, or the default.
    returned = checksums.algorithms or [DEFAULT_ALGORITHM]
    headers.update(
        response_headers(
            {name: part.checksums[name] for name in returned if name in part.checksums}, ""
        )
    )
    headers.pop("x-amz-checksum-type", None)
    return web.Response(status=200, headers=headers)


async def complete_multipart_upload(context: RequestContext) -> web.StreamResponse:
    await authorize_bucket(context.client, context.user, context.bucket)
    upload_id = upload_id_of(context)
    conditions = write_conditions(context.headers)
    expected = expected_object_checksums(context.headers)
    document = await RequestBody(context).read_all(MAX_REQUEST_XML_BYTES)
    parts = parse_completed_parts(document)
    info = await context.client.complete_multipart_upload(
        context.bucket,
        context.key,
        upload_id,
        [(part.number, part.etag) for part in parts],
        if_match=conditions.if_match,
        if_none_match=conditions.if_none_match,
        if_none_match_etags=conditions.if_none_match_etags,
        part_checksums={part.number: part.checksums for part in parts},
        require_part_checksums=True,
        expected_checksums=expected,
    )
    root = new_document("CompleteMultipartUploadResult")
    add(root, "Location", f"/{context.bucket}/{context.key}")
    add(root, "Bucket", context.bucket)
    add(root, "Key", context.key)
    add(root, "ETag", quoted_etag(info.etag))
    add_fields(root, checksum_fields(info))
    return xml_response(root, headers=response_headers(info.checksums, info.checksum_type))


@dataclass
class CompletedPart:
    """One Part element of a CompleteMultipartUpload document."""

    number: int
    etag: str
    # Algorithm to base64 value, from the ChecksumCRC32, ... elements.
    checksums: dict[str, str]


def parse_completed_parts(document: bytes) -> list[CompletedPart]:
    """Return the parts that a CompleteMultipartUpload document lists, in its order."""
    root = parse_document(document, "CompleteMultipartUpload")
    parts: list[CompletedPart] = []
    for element in root.findall("Part"):
        number_text = (child_text(element, "PartNumber") or "").strip()
        etag = (child_text(element, "ETag") or "").strip().strip('"')
        if not number_text.isdigit() or not 1 <= int(number_text) <= MAX_PART_NUMBER:
            raise S3Error(
                "InvalidArgument",
                f"Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive; "
                f"got {number_text[:20]!r}",
            )
        if not etag:
            raise S3Error("InvalidPart", f"Part {number_text} has no ETag; send each part's ETag")
        checksums = {}
        for algorithm, name in XML_NAMES.items():
            value = (child_text(element, name) or "").strip()
            if value:
                checksums[algorithm] = check_value(algorithm, value)
        parts.append(CompletedPart(int(number_text), etag, checksums))
    if not parts:
        raise S3Error(
            "MalformedXML",
            "The XML you provided was not well-formed or did not validate against our "
            "published schema: CompleteMultipartUpload lists no Part",
        )
    for previous, current in itertools.pairwise(parts):
        if current.number <= previous.number:
            raise S3Error(
                "InvalidPartOrder",
                f"The list of parts was not in ascending order: part {current.number} follows "
                f"part {previous.number}; list each part once, by part number",
            )
    return parts


async def abort_multipart_upload(context: RequestContext) -> web.StreamResponse:
    await authorize_bucket(context.client, context.user, context.bucket)
    await context.client.abort_multipart_upload(context.bucket, context.key, upload_id_of(context))
    return web.Response(status=204)


async def list_parts(context: RequestContext) -> web.StreamResponse:
    await authorize_bucket(context.client, context.user, context.bucket)
    upload_id = upload_id_of(context)
    marker_text = context.query.get("part-number-marker", "0") or "0"
    if not marker_text.isdigit():
        raise S3Error(
            "InvalidArgument", f"part-number-marker {marker_text[:20]!r} must be an integer"
        )
    max_parts = parse_max(context.query.get("max-parts"), "max-parts", MAX_LIST_PARTS)
    page = await context.client.list_parts(
        context.bucket,
        context.key,
        upload_id,
        part_number_marker=int(marker_text),
        max_parts=max(max_parts, 1),
    )
    upload = page.upload
    root = new_document("ListPartsResult")
    add(root, "Bucket", context.bucket)
    add(root, "Key", context.key)
    add(root, "UploadId", upload_id)
    add_owner(root, "Initiator", upload.owner or "root")
    add_owner(root, "Owner", upload.owner or "root")
    add(root, "StorageClass", "STANDARD")
    add(root, "PartNumberMarker", int(marker_text))
    add(root, "NextPartNumberMarker", page.next_part_number_marker)
    add(root, "MaxParts", max_parts)
    add(root, "IsTruncated", page.truncated)
    if upload.checksum_algorithm:
        add(root, "ChecksumAlgorithm", upload.checksum_algorithm.upper())
        add(root, "ChecksumType", upload.checksum_type or "COMPOSITE")
    for part in page.parts if max_parts else []:
        entry = add(root, "Part")
        add(entry, "PartNumber", part.part_number)
        add(entry, "LastModified", iso_time(part.modified))
        add(entry, "ETag", quoted_etag(part.etag))
        add(entry, "Size", part.size_bytes)
        add_fields(entry, part_checksum_fields(part.checksums, upload.checksum_algorithm))
    return xml_response(root)


async def list_multipart_uploads(context: RequestContext) -> web.StreamResponse:
    await bucket_info(context)
    encode = encoding_type(context.query)
    prefix = context.query.get("prefix", "")
    delimiter = context.query.get("delimiter", "")
    key_marker = context.query.get("key-marker", "")
    upload_id_marker = context.query.get("upload-id-marker", "") if key_marker else ""
    max_uploads = parse_max(context.query.get("max-uploads"), "max-uploads", MAX_LIST_KEYS)
    root = new_document("ListMultipartUploadsResult")
    add(root, "Bucket", context.bucket)
    add(root, "KeyMarker", encode_name(key_marker, encode))
    add(root, "UploadIdMarker", upload_id_marker)
    if delimiter:
        add(root, "Delimiter", encode_name(delimiter, encode))
    if max_uploads == 0:
        add_fields(root, [("MaxUploads", 0), ("IsTruncated", False), ("Prefix", prefix)])
        return xml_response(root)
    if upload_id_marker:
        try:
            check_upload_id(upload_id_marker)
        except InvalidArgument:
            raise S3Error(
                "InvalidArgument", f"Invalid uploadId marker {upload_id_marker[:80]!r}"
            ) from None
    page = await _grouped_uploads(
        context, prefix, delimiter, (key_marker, upload_id_marker), max_uploads
    )
    add(root, "NextKeyMarker", encode_name(page.next_key_marker, encode))
    add(root, "NextUploadIdMarker", page.next_upload_id_marker)
    add(root, "MaxUploads", max_uploads)
    add(root, "IsTruncated", page.truncated)
    add(root, "Prefix", encode_name(prefix, encode))
    if encode:
        add(root, "EncodingType", "url")
    for entry in page.entries:
        if isinstance(entry, str):
            add(add(root, "CommonPrefixes"), "Prefix", encode_name(entry, encode))
            continue
        element = add(root, "Upload")
        add(element, "Key", encode_name(entry.key, encode))
        add(element, "UploadId", entry.upload_id)
        add_owner(element, "Initiator", entry.owner or "root")
        add_owner(element, "Owner", entry.owner or "root")
        add(element, "StorageClass", "STANDARD")
        add(element, "Initiated", iso_time(entry.created))
        if entry.checksum_algorithm:
            add(element, "ChecksumAlgorithm", entry.checksum_algorithm.upper())
            add(element, "ChecksumType", entry.checksum_type or "COMPOSITE")
    return xml_response(root)


@dataclass
class _GroupedPage:
    """Uploads and common prefixes (str) in key order, as ListMultipartUploads returns them."""

    entries: list[MultipartUploadInfo | str]
    truncated: bool
    next_key_marker: str
    next_upload_id_marker: str


async def _grouped_uploads(
    context: RequestContext,
    prefix: str,
    delimiter: str,
    markers: tuple[str, str],
    max_entries: int,
) -> _GroupedPage:
    """Return up to `max_entries` uploads after the markers (key, upload id).

    Keys that contain `delimiter` after `prefix` roll up into common prefixes, as in
    ListObjects.

    A common prefix counts as one entry. The metaserver lists uploads only, so once a
    prefix is emitted the next request starts after every key under it.
    """
    entries: list[MultipartUploadInfo | str] = []
    # Prefixes at or before the request's key marker were on an earlier page.
    floor = markers[0]
    marker: str | bytes = markers[0]
    upload_id_marker = markers[1]
    while True:
        page = await context.client.list_multipart_uploads(
            context.bucket,
            prefix=prefix,
            key_marker=marker,
            upload_id_marker=upload_id_marker,
            # Without a delimiter each upload is one entry, so one page is enough.
            max_uploads=MAX_LIST_KEYS if delimiter else max_entries,
        )
        rolled_up = None
        for upload in page.uploads:
            position = upload.key.find(delimiter, len(prefix)) if delimiter else -1
            entry: MultipartUploadInfo | str = upload
            if position >= 0:
                entry = upload.key[: position + len(delimiter)]
                if entry <= floor:
                    continue
            if len(entries) == max_entries:
                return _cut(entries, truncated=True)
            entries.append(entry)
            if isinstance(entry, str):
                rolled_up = floor = entry
                break
        if len(entries) == max_entries and page.truncated:
            # NOTE: the rest may all roll up into the last prefix listed, so the next page
            # can come back empty, which S3 clients accept.
            return _cut(entries, truncated=True)
        if rolled_up is not None:
            # No UTF-8 key has a 0xFF byte, so this sorts after every key under the prefix.
            marker, upload_id_marker = rolled_up.encode() + b"\xff", ""
        elif page.truncated:
            marker, upload_id_marker = page.next_key_marker, page.next_upload_id_marker
        else:
            return _cut(entries, truncated=False)


def _cut(entries: list[MultipartUploadInfo | str], *, truncated: bool) -> _GroupedPage:
    if not truncated or not entries:
        return _GroupedPage(entries, truncated, "", "")
    last = entries[-1]
    if isinstance(last, str):
        return _GroupedPage(entries, truncated, last, "")
    return _GroupedPage(entries, truncated, last.key, last.upload_id)
