"""Bucket operations: ListBuckets, CreateBucket, HeadBucket, DeleteBucket,
GetBucketLocation, GetBucketAcl and GetBucketVersioning."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping

from aiohttp import web

from store.errors import AlreadyExists
from store.s3.access import authorize_bucket
from store.s3.api_errors import S3Error, not_implemented
from store.s3.body import RequestBody
from store.s3.context import RequestContext
from store.s3.object_headers import reject_acl_headers
from store.s3.responses import xml_response
from store.s3.xmlcodec import add, child_text, iso_time, new_document, parse_document
from store.types import BucketInfo

# The CreateBucketConfiguration document is a few hundred bytes.
MAX_CREATE_BUCKET_XML_BYTES = 64 * 1024
# The region that S3 reports as an empty LocationConstraint.
LEGACY_REGION = "us-east-1"


async def bucket_info(context: RequestContext) -> BucketInfo:
    """Return the bucket after checking that the caller may use it (NoSuchBucket if none)."""
    info = await authorize_bucket(context.client, context.user, context.bucket)
    if info is None:
        info = await context.client.head_bucket(context.bucket)
    return info


async def list_buckets(context: RequestContext) -> web.StreamResponse:
    caller = context.user
    buckets = await context.client.list_buckets()
    root = new_document("ListAllMyBucketsResult")
    add_owner(root, "Owner", caller.name)
    listed = add(root, "Buckets")
    for bucket in buckets:
        if caller.is_root or bucket.owner == caller.name:
            entry = add(listed, "Bucket")
            add(entry, "Name", bucket.name)
            add(entry, "CreationDate", iso_time(bucket.created))
            add(entry, "BucketRegion", context.gateway.config.region)
    return xml_response(root)


async def create_bucket(context: RequestContext) -> web.StreamResponse:
    reject_unsupported_bucket_headers(context.headers)
    body = await RequestBody(context).read_all(MAX_CREATE_BUCKET_XML_BYTES)
    check_location_constraint(body, context.gateway.config.region)
    caller = context.user
    try:
        await context.client.create_bucket(context.bucket, owner=caller.name)
    except AlreadyExists:
        existing = await context.client.head_bucket(context.bucket)
        if existing.owner == caller.name:
            raise S3Error(
                "BucketAlreadyOwnedByYou",
                f"Your previous request to create the bucket {context.bucket} succeeded "
                "and you already own it",
            ) from None
        raise S3Error(
            "BucketAlreadyExists",
            f"The requested bucket name {context.bucket} is not available; the bucket "
            "namespace is shared by all users, so choose another name",
        ) from None
    return web.Response(status=200, headers={"Location": f"/{context.bucket}"})


async def head_bucket(context: RequestContext) -> web.StreamResponse:
    await bucket_info(context)
    return web.Response(status=200, headers={"x-amz-bucket-region": context.gateway.config.region})


async def delete_bucket(context: RequestContext) -> web.StreamResponse:
    await authorize_bucket(context.client, context.user, context.bucket)
    await context.client.delete_bucket(context.bucket)
    return web.Response(status=204)


async def get_bucket_location(context: RequestContext) -> web.StreamResponse:
    await bucket_info(context)
    region = context.gateway.config.region
    root = new_document("LocationConstraint")
    if region != LEGACY_REGION:
        root.text = region
    return xml_response(root)


async def get_bucket_acl(context: RequestContext) -> web.StreamResponse:
    info = await bucket_info(context)
    return xml_response(acl_document(info.owner or "root"))


async def get_bucket_versioning(context: RequestContext) -> web.StreamResponse:
    """Report that versioning was never enabled, because an object has one version and a
    write replaces it. s3fs requests this before it deletes a whole bucket."""
    await bucket_info(context)
    return xml_response(new_document("VersioningConfiguration"))


def acl_document(owner: str) -> ET.Element:
    """Build the only ACL the gateway has: the owner with FULL_CONTROL."""
    root = new_document("AccessControlPolicy")
    add_owner(root, "Owner", owner)
    grants = add(root, "AccessControlList")
    grant = add(grants, "Grant")
    grantee = add(grant, "Grantee")
    grantee.set("xmlns:xsi", "http://www.w3.org/2001/XMLSchema-instance")
    grantee.set("xsi:type", "CanonicalUser")
    add(grantee, "ID", owner)
    add(grantee, "DisplayName", owner)
    add(grant, "Permission", "FULL_CONTROL")
    return root


def add_owner(parent: ET.Element, name: str, owner: str) -> None:
    element = add(parent, name)
    add(element, "ID", owner)
    add(element, "DisplayName", owner)


def check_location_constraint(body: bytes, region: str) -> None:
    if not body.strip():
        return
    document = parse_document(body, "CreateBucketConfiguration")
    constraint = child_text(document, "LocationConstraint")
    if constraint and constraint != region:
        raise S3Error(
            "IllegalLocationConstraintException",
            f"The {constraint!r} location constraint is incompatible with this endpoint, "
            f"whose region is {region!r}; omit LocationConstraint or set it to {region}",
        )


def reject_unsupported_bucket_headers(headers: Mapping[str, str]) -> None:
    reject_acl_headers(headers, frozenset({"private"}))
    if headers.get("x-amz-bucket-object-lock-enabled", "").lower() == "true":
        raise not_implemented("Object Lock")
