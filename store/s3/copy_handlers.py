"""CopyObject and UploadPartCopy: server-side copies streamed through the gateway.

The source is opened once, so its conditions, metadata and bytes all come from one
version. Its bytes stream from the source's chunks into a new write, a bounded
window at a time.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import unquote

from aiohttp import web

from store.client_multipart import MAX_PART_NUMBER
from store.digests import COMPOSITE
from store.reader import AsyncObjectReader
from store.s3 import tags
from store.s3.access import authorize_bucket
from store.s3.addressing import check_bucket, check_key
from store.s3.api_errors import S3Error, not_implemented
from store.s3.body import MAX_PUT_BYTES
from store.s3.checksums import (
    DEFAULT_ALGORITHM,
    XML_NAMES,
    check_algorithm_name,
    part_checksum_fields,
    response_headers,
    with_default_algorithm,
)
from store.s3.conditions import check_copy_source_conditions, write_conditions
from store.s3.context import RequestContext
from store.s3.object_handlers import reject_unsupported_object_headers
from store.s3.object_headers import StoredHeaders, stored_headers
from store.s3.object_reads import opened_info
from store.s3.ranges import ByteRange
from store.s3.responses import xml_response
from store.s3.xmlcodec import add, add_fields, iso_time, new_document
from store.types import ObjectInfo

COPY_PIECE_BYTES = 4 * 1024 * 1024
_COPY_RANGE = re.compile(r"bytes=(\d+)-(\d+)")


@dataclass(frozen=True, slots=True)
class CopySource:
    bucket: str
    key: str


def parse_copy_source(value: str) -> CopySource:
    """Parse x-amz-copy-source: "[/]bucket/key[?versionId=null]", URL-encoded."""
    raw, _, query = value.strip().partition("?")
    if query and query not in ("versionId=null", "versionId="):
        raise not_implemented(f"Copying a version ({query[:60]}); objects have one version")
    text = unquote(raw).lstrip("/")
    bucket, slash, key = text.partition("/")
    if not slash or not bucket or not key:
        raise S3Error(
            "InvalidArgument",
            f"Copy Source must mention the source bucket and key: sourcebucket/sourcekey; "
            f"got {value[:200]!r}",
        )
    return CopySource(check_bucket(bucket), check_key(key))


async def open_source(context: RequestContext) -> tuple[CopySource, AsyncObjectReader, ObjectInfo]:
    """Check access to the source, open it and check the copy-source conditions."""
    source = parse_copy_source(context.headers["x-amz-copy-source"])
    await authorize_bucket(context.client, context.user, source.bucket)
    reader = await context.client.open(source.bucket, source.key)
    try:
        info = opened_info(reader)
        check_copy_source_conditions(context.headers, info)
    except BaseException:
        await reader.close()
        raise
    return source, reader, info


async def read_source(reader: AsyncObjectReader, selected: ByteRange) -> AsyncIterator[bytes]:
    reader.seek(selected.start)
    remaining = selected.length
    while remaining > 0:
        data = await reader.read(min(remaining, COPY_PIECE_BYTES))
        if not data:
            raise S3Error("InternalError", "the copy source ended early")
        remaining -= len(data)
        yield data


async def copy_object(context: RequestContext) -> web.StreamResponse:
    await authorize_bucket(context.client, context.user, context.bucket)
    reject_unsupported_object_headers(context.headers)
    conditions = write_conditions(context.headers)
    source, reader, info = await open_source(context)
    try:
        if info.size_bytes > MAX_PUT_BYTES:
            raise S3Error(
                "InvalidRequest",
                f"The specified copy source is larger than the maximum allowable size for a "
                f"copy source: {MAX_PUT_BYTES}; copy it with UploadPartCopy",
            )
        stored = copied_headers(context, source, info)
        algorithms = copy_algorithms(context, info)
        copied = await context.client.put(
            context.bucket,
            context.key,
            read_source(reader, ByteRange(0, info.size_bytes)),
            content_type=stored.content_type,
            metadata=stored.metadata,
            system_metadata=stored.system_metadata,
            compute_md5=True,
            checksum_algorithms=algorithms,
            if_match=conditions.if_match,
            if_none_match=conditions.if_none_match,
            if_none_match_etags=conditions.if_none_match_etags,
        )
    finally:
        await reader.close()
    root = new_document("CopyObjectResult")
    add(root, "ETag", f'"{copied.etag}"')
    add(root, "LastModified", iso_time(copied.modified))
    add_fields(root, checksum_fields(copied))
    # No x-amz-copy-source-version-id: a bucket that never had versioning has none to name.
    return xml_response(root, headers=response_headers(copied.checksums, copied.checksum_type))


def copied_headers(context: RequestContext, source: CopySource, info: ObjectInfo) -> StoredHeaders:
    """Return the metadata of the copy, following the metadata and tagging directives."""
    directive = context.headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise S3Error(
            "InvalidArgument",
            f"Unknown metadata directive {directive[:40]!r}; use COPY or REPLACE",
        )
    same_object = source.bucket == context.bucket and source.key == context.key
    changes_checksum = "x-amz-checksum-algorithm" in context.headers
    if same_object and directive == "COPY" and not changes_checksum:
        raise S3Error(
            "InvalidRequest",
            "This copy request is illegal because it is trying to copy an object to itself "
            "without changing the object's metadata, storage class, website redirect "
            "location or encryption attributes; send x-amz-metadata-directive: REPLACE",
        )
    if directive == "REPLACE":
        stored = stored_headers(context.headers)
    else:
        stored = StoredHeaders(info.content_type, dict(info.metadata), dict(info.system_metadata))
    stored.system_metadata.pop(tags.TAGS_ENTRY, None)
    stored.system_metadata.update(tags.entry_of_copy(context.headers, info.system_metadata))
    return stored


def copy_algorithms(context: RequestContext, info: ObjectInfo) -> list[str]:
    """Return the checksums of the copy: the requested one, else the source's full-object ones."""
    requested = context.headers.get("x-amz-checksum-algorithm")
    if requested:
        return [check_algorithm_name(requested)]
    if info.checksum_type == COMPOSITE:
        return [DEFAULT_ALGORITHM]
    kept = sorted(name for name, value in info.checksums.items() if "-" not in value)
    return kept or [DEFAULT_ALGORITHM]


def checksum_fields(info: ObjectInfo) -> list[tuple[str, str | None]]:
    fields: list[tuple[str, str | None]] = [
        (XML_NAMES[name], value)
        for name, value in sorted(info.checksums.items())
        if name in XML_NAMES
    ]
    if fields:
        fields.append(("ChecksumType", info.checksum_type or "FULL_OBJECT"))
    return fields


def copy_range(header: str | None, size_bytes: int) -> ByteRange:
    """Parse x-amz-copy-source-range ("bytes=FIRST-LAST", both inside the source)."""
    if header is None:
        return ByteRange(0, size_bytes)
    match = _COPY_RANGE.fullmatch(header.strip())
    if match is None:
        raise S3Error(
            "InvalidArgument",
            f"The x-amz-copy-source-range value {header[:80]!r} must be of the form "
            "bytes=first-last",
        )
    first, last = int(match.group(1)), int(match.group(2))
    if first > last or last >= size_bytes:
        raise S3Error(
            "InvalidRange",
            f"The x-amz-copy-source-range {header[:80]!r} is not inside the source object "
            f"of {size_bytes} bytes",
        )
    return ByteRange(first, last - first + 1)


async def upload_part_copy(context: RequestContext) -> web.StreamResponse:
    await authorize_bucket(context.client, context.user, context.bucket)
    part_number = parse_part_number(context.query.get("partNumber"))
    upload_id = context.query.get("uploadId", "")
    algorithm = await upload_algorithm(context, upload_id)
    _source, reader, info = await open_source(context)
    try:
        selected = copy_range(context.headers.get("x-amz-copy-source-range"), info.size_bytes)
        if selected.length > MAX_PUT_BYTES:
            raise S3Error(
                "EntityTooLarge",
                f"The copied range of {selected.length} bytes exceeds the maximum part size "
                f"of {MAX_PUT_BYTES} bytes; copy a smaller range",
            )
        part = await context.client.upload_part(
            context.bucket,
            context.key,
            upload_id,
            part_number,
            read_source(reader, selected),
            checksum_algorithms=with_default_algorithm([algorithm] if algorithm else []),
        )
    finally:
        await reader.close()
    root = new_document("CopyPartResult")
    add(root, "ETag", f'"{part.etag}"')
    add(root, "LastModified", iso_time(part.modified))
    add_fields(root, part_checksum_fields(part.checksums, algorithm))
    return xml_response(root)


async def upload_algorithm(context: RequestContext, upload_id: str) -> str:
    """Return the checksum algorithm the upload was created with ("" for none).

    A copied part gets that checksum computed here, since the client has no value to
    send, and CompleteMultipartUpload requires it for every part. An unknown upload
    fails here, before the source is read.
    """
    page = await context.client.list_parts(
        context.bucket, context.key, upload_id, part_number_marker=MAX_PART_NUMBER, max_parts=1
    )
    return page.upload.checksum_algorithm


def parse_part_number(text: str | None) -> int:
    if text is None or not text.isdigit() or not 1 <= int(text) <= MAX_PART_NUMBER:
        raise S3Error(
            "InvalidArgument",
            f"Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive; "
            f"got {(text or '')[:20]!r}",
        )
    return int(text)
