"""PutBucketAcl and PutObjectAcl for the one ACL the gateway has: the owner's FULL_CONTROL.

Every bucket and object is private to its bucket's owner (the root user may
use every bucket). Setting that same ACL again, with the canned ACL `private`
or a document that grants the owner FULL_CONTROL and no other permission,
succeeds and changes nothing. Any other ACL gets NotImplemented, because
storing it without enforcing it would be a wrong success.
"""

from __future__ import annotations

from aiohttp import web

from store.s3.api_errors import S3Error, not_implemented
from store.s3.body import RequestBody
from store.s3.bucket_handlers import bucket_info
from store.s3.context import RequestContext
from store.s3.object_headers import PRIVATE_CANNED_ACLS, reject_acl_headers
from store.s3.object_reads import check_version
from store.s3.xmlcodec import MAX_REQUEST_XML_BYTES, child_text, parse_document


async def put_bucket_acl(context: RequestContext) -> web.StreamResponse:
    info = await bucket_info(context)
    await check_private_acl(context, info.owner or "root")
    return web.Response(status=200)


async def put_object_acl(context: RequestContext) -> web.StreamResponse:
    info = await bucket_info(context)
    check_version(context.query)
    await context.client.stat(context.bucket, context.key)
    await check_private_acl(context, info.owner or "root")
    return web.Response(status=200)


async def check_private_acl(context: RequestContext, owner: str) -> None:
    """Raise unless the request sets the owner-only ACL, by canned name or by document."""
    reject_acl_headers(context.headers, PRIVATE_CANNED_ACLS)
    canned = context.headers.get("x-amz-acl")
    document = await RequestBody(context).read_all(MAX_REQUEST_XML_BYTES)
    if canned is not None and document.strip():
        raise S3Error(
            "UnexpectedContent",
            "This request does not support content when x-amz-acl is set; send the canned "
            "ACL or an AccessControlPolicy document, not both",
        )
    if canned is not None:
        return
    if not document.strip():
        raise S3Error(
            "MissingSecurityHeader",
            "Your request was missing a required header: send x-amz-acl or an "
            "AccessControlPolicy document",
        )
    check_owner_only_policy(document, owner)


def check_owner_only_policy(document: bytes, owner: str) -> None:
    """Raise NotImplemented unless the AccessControlPolicy grants only the owner FULL_CONTROL."""
    root = parse_document(document, "AccessControlPolicy")
    acl = root.find("AccessControlList")
    grants = [] if acl is None else acl.findall("Grant")
    for grant in grants:
        grantee = grant.find("Grantee")
        grantee_id = "" if grantee is None else (child_text(grantee, "ID") or "").strip()
        permission = (child_text(grant, "Permission") or "").strip()
        if grantee_id != owner or permission != "FULL_CONTROL":
            grantee_name = grantee_id or "a group, email address or URI"
            raise not_implemented(
                f"Granting {permission or 'a permission'} to {grantee_name} (only the owner "
                f"{owner!r} with FULL_CONTROL is)"
            )
    if not grants:
        raise not_implemented(f"An ACL without the owner's FULL_CONTROL (owner {owner!r})")
