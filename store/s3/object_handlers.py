"""PutObject, DeleteObject and GetObjectAcl."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from aiohttp import web

from store.digests import Digests
from store.errors import BadDigest, StoreError
from store.s3.access import authorize_bucket
from store.s3.addressing import check_key
from store.s3.api_errors import S3Error, from_store_error, not_implemented
from store.s3.body import RequestBody
from store.s3.bucket_handlers import acl_document, bucket_info
from store.s3.checksums import parse_checksum_request, response_headers
from store.s3.conditions import write_conditions
from store.s3.context import RequestContext
from store.s3.object_headers import (
    PRIVATE_CANNED_ACLS,
    check_write_encryption_headers,
    quoted_etag,
    reject_acl_headers,
    stored_headers,
)
from store.s3.object_reads import check_version
from store.s3.responses import xml_response
from store.s3.xmlcodec import (
    MAX_REQUEST_XML_BYTES,
    add,
    child_text,
    new_document,
    parse_document,
)

log = logging.getLogger(__name__)

MAX_DELETE_KEYS = 1000
# Deletes of one DeleteObjects request in flight at once.
DELETE_CONCURRENCY = 16

# Features announced by request headers that this gateway does not store. A write
# that requests one gets NotImplemented instead of silently losing it.
_UNSUPPORTED_HEADERS = {
    "x-amz-object-lock-mode": "Object Lock",
    "x-amz-object-lock-retain-until-date": "Object Lock",
    "x-amz-object-lock-legal-hold": "Object Lock legal holds",
    "x-amz-website-redirect-location": "Website redirects",
    "x-amz-server-side-encryption": "Server-side encryption",
    "x-amz-server-side-encryption-customer-algorithm": "Server-side encryption with SSE-C",
    "x-amz-server-side-encryption-aws-kms-key-id": "Server-side encryption with KMS",
    "x-amz-copy-source-server-side-encryption-customer-algorithm": "Copies of SSE-C objects",
}
_SUPPORTED_STORAGE_CLASSES = frozenset({"STANDARD"})


def reject_unsupported_object_headers(headers: Mapping[str, str]) -> None:
    """Raise NotImplemented for a write that requests a feature the gateway lacks."""
    check_write_encryption_headers(headers)
    for name, feature in _UNSUPPORTED_HEADERS.items():
        if name in headers:
            raise not_implemented(f"{feature} ({name})")
    storage_class = headers.get("x-amz-storage-class")
    if storage_class is not None and storage_class.upper() not in _SUPPORTED_STORAGE_CLASSES:
        raise not_implemented(f"The storage class {storage_class[:40]!r} (only STANDARD is)")
    reject_acl_headers(headers, PRIVATE_CANNED_ACLS)


async def put_object(context: RequestContext) -> web.StreamResponse:
    """Store the body as the object, streaming it to the dataservers.

    1. Check access and the headers, so a rejected request reads no body.
    2. Stream the decoded body into the SDK, which computes the MD5 ETag and the
       checksums and, after the last byte, compares the declared values.
    3. The SDK commits with the write conditions; the shard decides them atomically.
    """
    await authorize_bucket(context.client, context.user, context.bucket)
    reject_unsupported_object_headers(context.headers)
    body = RequestBody(context)
    body.require_length()
    checksums = parse_checksum_request(context.headers)
    stored = stored_headers(context.headers)
    conditions = write_conditions(context.headers)

    info = await context.client.put(
        context.bucket,
        context.key,
        body.pieces(checksums),
        content_type=stored.content_type,
        metadata=stored.metadata,
        system_metadata=stored.system_metadata,
        compute_md5=True,
        checksum_algorithms=checksums.algorithms,
        expected_checksums=checksums.expected,
        content_md5=checksums.content_md5,
        if_match=conditions.if_match,
        if_none_match=conditions.if_none_match,
        if_none_match_etags=conditions.if_none_match_etags,
    )
    headers = {"ETag": quoted_etag(info.etag)}
    headers.update(response_headers(info.checksums, info.checksum_type))
    return web.Response(status=200, headers=headers)


async def delete_object(context: RequestContext) -> web.StreamResponse:
    """Delete the object; S3 returns 204 whether or not it existed."""
    await authorize_bucket(context.client, context.user, context.bucket)
    check_version(context.query)
    if_match = context.headers.get("if-match", "").strip().strip('"')
    await context.client.delete(context.bucket, context.key, if_match=if_match)
    return web.Response(status=204)


async def get_object_acl(context: RequestContext) -> web.StreamResponse:
    info = await bucket_info(context)
    check_version(context.query)
    await context.client.stat(context.bucket, context.key)
    return xml_response(acl_document(info.owner or "root"))


async def delete_objects(context: RequestContext) -> web.StreamResponse:
    """Delete up to 1,000 keys named in a Delete document; report each key's outcome."""
    await authorize_bucket(context.client, context.user, context.bucket)
    document = await RequestBody(context).read_all(MAX_REQUEST_XML_BYTES)
    verify_document_digests(context.headers, document)
    root = parse_document(document, "Delete")
    quiet = (child_text(root, "Quiet") or "").strip().lower() == "true"
    objects = root.findall("Object")
    if not objects or len(objects) > MAX_DELETE_KEYS:
        raise S3Error(
            "MalformedXML",
            f"The XML you provided was not well-formed or did not validate against our "
            f"published schema: a Delete names 1 to {MAX_DELETE_KEYS} objects, not "
            f"{len(objects)}",
        )
    keys = [child_text(element, "Key") or "" for element in objects]
    versions = [child_text(element, "VersionId") for element in objects]
    slots = asyncio.Semaphore(DELETE_CONCURRENCY)
    outcomes = await asyncio.gather(
        *(
            _delete_one(context, key, version, slots)
            for key, version in zip(keys, versions, strict=True)
        )
    )

    result = new_document("DeleteResult")
    for key, version, error in zip(keys, versions, outcomes, strict=True):
        if error is None:
            if not quiet:
                deleted = add(result, "Deleted")
                add(deleted, "Key", key)
                if version is not None:
                    add(deleted, "VersionId", version)
            continue
        entry = add(result, "Error")
        add(entry, "Key", key)
        if version is not None:
            add(entry, "VersionId", version)
        add(entry, "Code", error.code)
        add(entry, "Message", error.message)
    return xml_response(result)


async def _delete_one(
    context: RequestContext, key: str, version: str | None, slots: asyncio.Semaphore
) -> S3Error | None:
    """Delete one key of a DeleteObjects request; return its error instead of raising."""
    try:
        if version is not None and version != "null":
            raise S3Error(
                "InvalidArgument", f"Invalid version id {version[:80]!r}; objects have one version"
            )
        async with slots:
            await context.client.delete(context.bucket, check_key(key) if key else "")
    except S3Error as error:
        return error
    except StoreError as error:
        log.warning("DeleteObjects of %s/%r failed: %s", context.bucket, key, error)
        return from_store_error(error)
    return None


def verify_document_digests(headers: Mapping[str, str], document: bytes) -> None:
    """Check Content-MD5 and an x-amz-checksum-* header of a small request document."""
    checksums = parse_checksum_request(headers, default_algorithm=None)
    digests = Digests(checksums.algorithms, md5=checksums.content_md5 is not None)
    digests.update(document)
    try:
        digests.verify(checksums.expected, checksums.content_md5)
    except BadDigest as error:
        raise S3Error("BadDigest", str(error)) from None
