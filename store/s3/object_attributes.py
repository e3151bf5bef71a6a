"""GetObjectAttributes: the ETag, checksum, parts, storage class and size of an object in XML.

The x-amz-object-attributes header names the elements to return, and only those are sent.
As on Amazon S3, the ETag has no quotes here, an object uploaded in one request has no
ObjectParts, and the parts are listed only with their checksums: a part without one is
counted in PartsCount but not listed. x-amz-max-parts and x-amz-part-number-marker page
through the parts as ListParts does.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping

from aiohttp import web

from store.client_multipart import MAX_LIST_PARTS
from store.s3.access import authorize_bucket
from store.s3.api_errors import S3Error
from store.s3.checksums import XML_NAMES
from store.s3.context import RequestContext
from store.s3.object_headers import check_read_encryption_headers, http_date
from store.s3.object_reads import check_version
from store.s3.responses import xml_response
from store.s3.xmlcodec import Value, add, add_fields, new_document
from store.types import ObjectInfo, PartRange

ATTRIBUTES_HEADER = "x-amz-object-attributes"
MAX_PARTS_HEADER = "x-amz-max-parts"
PART_NUMBER_MARKER_HEADER = "x-amz-part-number-marker"
# The attribute names S3 defines, in the order of the response's elements.
ATTRIBUTES = ("ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize")
STORAGE_CLASS = "STANDARD"


async def get_object_attributes(context: RequestContext) -> web.StreamResponse:
    await authorize_bucket(context.client, context.user, context.bucket)
    check_version(context.query)
    check_read_encryption_headers(context.headers)
    requested = requested_attributes(context.headers)
    max_parts = _header_integer(context.headers, MAX_PARTS_HEADER, MAX_LIST_PARTS)
    marker = _header_integer(context.headers, PART_NUMBER_MARKER_HEADER, 0)
    info = await context.client.stat(context.bucket, context.key)

    root = new_document("GetObjectAttributesResponse")
    if "ETag" in requested:
        add(root, "ETag", info.etag)
    if "Checksum" in requested and info.checksums:
        _add_checksum(root, info)
    if "ObjectParts" in requested and info.parts:
        _add_parts(root, info.parts, info.checksums, min(max_parts, MAX_LIST_PARTS), marker)
    if "StorageClass" in requested:
        add(root, "StorageClass", STORAGE_CLASS)
    if "ObjectSize" in requested:
        add(root, "ObjectSize", info.size_bytes)
    response = xml_response(root)
    response.headers["Last-Modified"] = http_date(info.modified)
    return response


def requested_attributes(headers: Mapping[str, str]) -> set[str]:
    """Return the names in x-amz-object-attributes (InvalidArgument if none or one is unknown)."""
    text = headers.get(ATTRIBUTES_HEADER, "")
    names = {name.strip() for name in text.split(",") if name.strip()}
    if not names:
        raise S3Error(
            "InvalidArgument",
            f"The {ATTRIBUTES_HEADER} header specifying the attributes to be retrieved is "
            f"missing or empty; name one or more of {', '.join(ATTRIBUTES)}",
        )
    unknown = sorted(names.difference(ATTRIBUTES))
    if unknown:
        raise S3Error(
            "InvalidArgument",
            f"Invalid attribute name specified: {unknown[0][:64]!r}; use {', '.join(ATTRIBUTES)}",
        )
    return names


def _header_integer(headers: Mapping[str, str], name: str, default: int) -> int:
    text = headers.get(name)
    if text is None or text.strip() == "":
        return default
    if not text.strip().isdigit():
        raise S3Error(
            "InvalidArgument", f"The {name} header {text[:20]!r} must be an integer of 0 or more"
        )
    return int(text)


def _add_checksum(root: ET.Element, info: ObjectInfo) -> None:
    element = add(root, "Checksum")
    add_fields(element, _checksum_fields(info.checksums))
    add(element, "ChecksumType", info.checksum_type or "FULL_OBJECT")


def _checksum_fields(checksums: Mapping[str, str]) -> list[tuple[str, Value]]:
    return [
        (XML_NAMES[name], value) for name, value in sorted(checksums.items()) if name in XML_NAMES
    ]


def _add_parts(
    root: ET.Element, parts: list[PartRange], shown: Mapping[str, str], max_parts: int, marker: int
) -> None:
    """Append ObjectParts: the parts after `marker`, `max_parts` at most.

    Parts are listed with the checksums of the algorithms in `shown` (the object's), and a
    part without one is only counted.
    """
    element = add(root, "ObjectParts")
    after = [part for part in parts if part.part_number > marker]
    page = after[:max_parts]
    truncated = len(after) > len(page)
    add(element, "PartsCount", len(parts))
    add(element, "PartNumberMarker", marker)
    if truncated and page:
        add(element, "NextPartNumberMarker", page[-1].part_number)
    add(element, "MaxParts", max_parts)
    add(element, "IsTruncated", truncated)
    for part in page:
        # Parts also carry CRC-64/NVME for S3's default; show the object's algorithm only.
        fields = _checksum_fields({n: v for n, v in part.checksums.items() if n in shown})
        if not fields:
            continue
        entry = add(element, "Part")
        add(entry, "PartNumber", part.part_number)
        add(entry, "Size", part.size_bytes)
        add_fields(entry, fields)
