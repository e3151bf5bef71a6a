"""POST Object: browser-based uploads from an HTML form (multipart/form-data).

The form's fields come first and the file last, so the gateway reads the fields,
checks the policy, its signature and the caller's access to the bucket, and only
then streams the file into the store without holding it. Fields after the file
are ignored, as S3 ignores them.

1. Read the fields before the file (64 KiB at most), names lowercased.
2. Verify the signature over the policy with the signer's secret key, then the
   policy's expiration and conditions, then that the signer may write the bucket.
3. Turn the fields into the headers a PutObject would carry (Content-Type,
   x-amz-meta-*, acl, tagging, ...), so the same checks and metadata apply.
4. Stream the file; content-length-range is checked while it streams and at its end,
   and a failed check stores nothing.
5. Reply with a redirect to success_action_redirect (303), or with
   success_action_status 200 or 201 (with a PostResponse document), or with 204.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from aiohttp import BodyPartReader, MultipartReader, web
from multidict import CIMultiDict

from store.s3 import tags
from store.s3.access import authorize_bucket
from store.s3.addressing import check_key
from store.s3.api_errors import S3Error
from store.s3.auth_common import signature_mismatch, unknown_access_key
from store.s3.checksums import parse_checksum_request
from store.s3.context import RequestContext
from store.s3.credentials import Caller
from store.s3.object_handlers import reject_unsupported_object_headers
from store.s3.object_headers import SYSTEM_HEADERS, quoted_etag, stored_headers
from store.s3.post_policy import Policy, check_fields, check_size, form_signature, parse_policy
from store.s3.responses import xml_response
from store.s3.signing import signatures_equal
from store.s3.xmlcodec import add, new_document

log = logging.getLogger(__name__)

# The fields before the file, all together, as S3 limits them.
MAX_FIELD_BYTES = 64 * 1024
FILE_PIECE_BYTES = 1024 * 1024
FILENAME_VARIABLE = "${filename}"
# Form fields that become the request headers of the same name: these, and those with
# one of these prefixes.
_HEADER_FIELD_PREFIXES = ("x-amz-meta-", "x-amz-server-side", "x-amz-checksum-")
_HEADER_FIELDS = frozenset(
    {
        "content-type",
        "x-amz-storage-class",
        "x-amz-website-redirect-location",
        *SYSTEM_HEADERS,
    }
)


async def post_object(context: RequestContext) -> web.StreamResponse:
    """Store the file of an HTML form upload under the form's key."""
    try:
        reader = await context.request.multipart()
        fields, file_part = await _read_fields(reader)
    except ValueError as error:
        # aiohttp's multipart reader raises ValueError for a missing boundary or a cut part.
        raise S3Error(
            "MalformedPOSTRequest",
            f"The body of your POST request is not well-formed multipart/form-data ({error}); "
            "send the form as a browser encodes it",
        ) from None
    fields["bucket"] = context.bucket
    if "key" not in fields:
        raise S3Error("InvalidArgument", "Bucket POST must contain a field named 'key'")
    if file_part is None:
        raise S3Error("InvalidArgument", "POST requires exactly one file upload per request")
    # The policy's conditions apply to the key with the file's name in place.
    fields["key"] = check_key(fields["key"].replace(FILENAME_VARIABLE, file_part.filename or ""))
    if not fields["key"]:
        raise S3Error("InvalidArgument", "The form's key field is empty; send the object's name")
    policy = await _authorize(context, fields)
    key = fields["key"]
    headers = _write_headers(fields)
    reject_unsupported_object_headers(headers)
    stored = stored_headers(headers)
    checksums = parse_checksum_request(headers)

    info = await context.client.put(
        context.bucket,
        key,
        _file_pieces(file_part, policy),
        content_type=stored.content_type,
        metadata=stored.metadata,
        system_metadata=stored.system_metadata,
        compute_md5=True,
        checksum_algorithms=checksums.algorithms,
        expected_checksums=checksums.expected,
    )
    log.info(
        "request_id=%s form upload stored %s/%s size=%d user=%s",
        context.request_id,
        context.bucket,
        key,
        info.size_bytes,
        context.user.name,
    )
    return _success(context, fields, key, quoted_etag(info.etag))


async def _read_fields(reader: MultipartReader) -> tuple[dict[str, str], BodyPartReader | None]:
    """Return the fields before the file (lowercase names) and the file part."""
    fields: dict[str, str] = {}
    total_bytes = 0
    while True:
        part = await reader.next()
        if part is None:
            return fields, None
        if not isinstance(part, BodyPartReader):
            raise S3Error("MalformedPOSTRequest", "A nested multipart part is not a form field")
        name = (part.name or "").lower()
        if name == "file":
            return fields, part
        value = await part.read(decode=False)
        total_bytes += len(value)
        if total_bytes > MAX_FIELD_BYTES:
            raise S3Error(
                "MaxPostPreDataLengthExceeded",
                f"The form fields before the file are over {MAX_FIELD_BYTES} bytes; "
                "send smaller fields",
            )
        fields.setdefault(name, value.decode("utf-8", "replace"))


async def _authorize(context: RequestContext, fields: dict[str, str]) -> Policy:
    """Check the signature, the policy and the signer's access; set the request's caller."""
    encoded_policy = fields.get("policy")
    if encoded_policy is None:
        raise S3Error(
            "AccessDenied",
            "Anonymous uploads are not allowed; sign the form with a policy "
            "(boto3's generate_presigned_post builds one)",
        )
    signature = form_signature(fields)
    user = await context.gateway.credentials.lookup(signature.access_key)
    if user is None:
        raise unknown_access_key(signature.access_key)
    expected = signature.expected(user.secret_key, encoded_policy)
    if not signatures_equal(expected, signature.signature):
        raise signature_mismatch(
            encoded_policy, hint="A form's signature covers its policy field as sent."
        )
    policy = parse_policy(encoded_policy)
    check_fields(policy, fields, datetime.now(UTC))
    context.caller = Caller(user.name, signature.access_key)
    await authorize_bucket(context.client, context.caller, context.bucket)
    return policy


def _write_headers(fields: dict[str, str]) -> CIMultiDict[str]:
    """Return the PutObject headers that the form's fields stand for."""
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in fields.items():
        if name in _HEADER_FIELDS or name.startswith(_HEADER_FIELD_PREFIXES):
            headers[name] = value
    if "acl" in fields:
        headers["x-amz-acl"] = fields["acl"]
    if "tagging" in fields:
        tag_set = tags.parse_document_tags(fields["tagging"].encode())
        if tag_set:
            headers[tags.TAGGING_HEADER] = tags.entry_value(tag_set)
    return headers


async def _file_pieces(part: BodyPartReader, policy: Policy) -> AsyncIterator[bytes]:
    size_bytes = 0
    while True:
        try:
            piece = await part.read_chunk(FILE_PIECE_BYTES)
        except ValueError as error:
            raise S3Error(
                "MalformedPOSTRequest",
                f"The file of your POST request ends without its closing boundary ({error})",
            ) from None
        if not piece:
            break
        size_bytes += len(piece)
        check_size(policy, size_bytes, final=False)
        yield piece
    if not part.at_eof():
        # The body ended before the part's closing boundary: what was read may end in
        # part of the boundary, so none of it is stored.
        raise S3Error(
            "MalformedPOSTRequest",
            "The file of your POST request ends without its closing boundary; send the whole form",
        )
    check_size(policy, size_bytes, final=True)


def _success(
    context: RequestContext, fields: dict[str, str], key: str, etag: str
) -> web.StreamResponse:
    host = context.request.headers.get("Host", "")
    location = f"{context.request.scheme}://{host}/{context.bucket}/{quote(key, safe='/~')}"
    headers = {"ETag": etag, "Location": location}
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect:
        query = urlencode({"bucket": context.bucket, "key": key, "etag": etag})
        separator = "&" if "?" in redirect else "?"
        headers["Location"] = f"{redirect}{separator}{query}"
        return web.Response(status=303, headers=headers)
    status = fields.get("success_action_status", "")
    if status == "201":
        root = new_document("PostResponse")
        add(root, "Location", location)
        add(root, "Bucket", context.bucket)
        add(root, "Key", key)
        add(root, "ETag", etag)
        return xml_response(root, status=201, headers=headers)
    return web.Response(status=200 if status == "200" else 204, headers=headers)
