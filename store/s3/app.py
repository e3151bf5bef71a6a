"""The aiohttp application: one handler for every request, which routes, authenticates,
dispatches to the operation's handler and turns every error into an S3 error response.

Every response carries x-amz-request-id, and the log names that id. A 500 logs one
traceback. A cancellation (the client went away) is re-raised and gets no response.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from store.errors import StoreError
from store.s3 import (
    acl,
    bucket_handlers,
    copy_handlers,
    cors,
    listing_handlers,
    multipart_handlers,
    object_attributes,
    object_handlers,
    object_reads,
    post_object,
    tagging_handlers,
    unconfigured,
)
from store.s3.access import authenticate
from store.s3.addressing import Location, locate
from store.s3.api_errors import S3Error, from_auth_error, from_store_error
from store.s3.auth_common import AuthType
from store.s3.body import awaits_continue, send_continue
from store.s3.context import Gateway, RequestContext
from store.s3.errors import S3AuthError
from store.s3.request import ParsedRequest, hoisted_headers
from store.s3.responses import error_response, new_request_id, standard_headers
from store.s3.routing import choose_operation

log = logging.getLogger("store.s3")

Handler = Callable[[RequestContext], Awaitable[web.StreamResponse]]

HANDLERS: dict[str, Handler] = {
    "ListBuckets": bucket_handlers.list_buckets,
    "CreateBucket": bucket_handlers.create_bucket,
    "HeadBucket": bucket_handlers.head_bucket,
    "DeleteBucket": bucket_handlers.delete_bucket,
    "GetBucketLocation": bucket_handlers.get_bucket_location,
    "GetBucketAcl": bucket_handlers.get_bucket_acl,
    "PutBucketAcl": acl.put_bucket_acl,
    "GetBucketCors": cors.get_bucket_cors,
    "PutBucketCors": cors.put_bucket_cors,
    "DeleteBucketCors": cors.delete_bucket_cors,
    "GetBucketTagging": tagging_handlers.get_bucket_tagging,
    "PutBucketTagging": tagging_handlers.put_bucket_tagging,
    "DeleteBucketTagging": tagging_handlers.delete_bucket_tagging,
    "GetBucketVersioning": bucket_handlers.get_bucket_versioning,
    "ListObjects": listing_handlers.list_objects,
    "ListObjectsV2": listing_handlers.list_objects_v2,
    "ListObjectVersions": listing_handlers.list_object_versions,
    "DeleteObjects": object_handlers.delete_objects,
    "PutObject": object_handlers.put_object,
    "CopyObject": copy_handlers.copy_object,
    "GetObject": object_reads.get_object,
    "HeadObject": object_reads.head_object,
    "GetObjectAttributes": object_attributes.get_object_attributes,
    "DeleteObject": object_handlers.delete_object,
    "GetObjectAcl": object_handlers.get_object_acl,
    "PutObjectAcl": acl.put_object_acl,
    "GetObjectTagging": tagging_handlers.get_object_tagging,
    "PutObjectTagging": tagging_handlers.put_object_tagging,
    "DeleteObjectTagging": tagging_handlers.delete_object_tagging,
    "CreateMultipartUpload": multipart_handlers.create_multipart_upload,
    "UploadPart": multipart_handlers.upload_part,
    "UploadPartCopy": copy_handlers.upload_part_copy,
    "CompleteMultipartUpload": multipart_handlers.complete_multipart_upload,
    "AbortMultipartUpload": multipart_handlers.abort_multipart_upload,
    "ListParts": multipart_handlers.list_parts,
    "ListMultipartUploads": multipart_handlers.list_multipart_uploads,
    **unconfigured.HANDLERS,
}

# Query parameters whose values are credentials: kept out of the log.
_SECRET_PARAMETERS = (
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    "Signature",
    "AWSAccessKeyId",
)


async def handle(gateway: Gateway, request: web.BaseRequest) -> web.StreamResponse:
    """Serve one S3 request; every failure becomes an S3 error response."""
    request_id = new_request_id()
    started_s = time.monotonic()
    context: RequestContext | None = None
    location = Location(None, None)
    try:
        parsed = ParsedRequest.from_aiohttp(request)
        location = locate(request.headers.get("Host"), parsed.raw_path, gateway.config.domain)
        query: dict[str, str] = {}
        for name, value in parsed.query:
            query.setdefault(name, value)
        context = RequestContext(request, gateway, request_id, location, query)
        context.extra_headers = standard_headers(request_id)
        if request.method == "OPTIONS" and location.bucket is not None:
            # A browser's CORS preflight, which is never signed.
            context.operation = "PreflightRequest"
            response = await cors.preflight(context)
        elif is_form_upload(request, location):
            # The credentials of an HTML form upload are fields of its body.
            context.operation = "PostObject"
            if "Origin" in request.headers:
                context.extra_headers.update(await cors.actual_request_headers(context))
            response = await post_object.post_object(context)
        else:
            # Authentication comes first, as in S3: an unsigned or badly signed request
            # learns nothing about which operations or buckets exist.
            context.caller, context.auth = await authenticate(
                parsed, gateway.credentials, gateway.config.domain
            )
            if context.auth.auth_type is AuthType.PRESIGNED_URL:
                _read_hoisted_headers(context, parsed)
            context.operation = choose_operation(request.method, location, query, context.headers)
            if "Origin" in request.headers:
                context.extra_headers.update(await cors.actual_request_headers(context))
            response = await HANDLERS[context.operation](context)
    except asyncio.CancelledError:
        raise
    except S3Error as error:
        response = _error(request, error, location, request_id)
    except S3AuthError as error:
        _log_auth_failure(request_id, error)
        response = _error(request, from_auth_error(error), location, request_id)
    except StoreError as error:
        response = _error(request, from_store_error(error), location, request_id, str(error))
    except RequestPayloadError as error:
        body_error = S3Error(
            "IncompleteBody", f"The request body could not be read: {error}; send it again"
        )
        response = _error(request, body_error, location, request_id)
    except Exception:
        log.exception(
            "request_id=%s %s %s failed with an internal error",
            request_id,
            request.method,
            location.resource,
        )
        internal = S3Error("InternalError", "We encountered an internal error; please try again.")
        response = _error(request, internal, location, request_id)
    if not response.prepared:
        response.headers.update(
            context.extra_headers if context is not None else standard_headers(request_id)
        )
        if request.body_exists and not request.content.is_eof():
            # The body was not read: a client that sent Expect: 100-continue never sent
            # it, so the next bytes on this connection cannot be trusted to be a request.
            response.force_close()
        elif awaits_continue(request):
            # An empty body is never read, so no "100 Continue" went out. RFC 9110 lets
            # the final response come alone then, but botocore takes it for the interim
            # one and misreads the next response on the same connection, stalling until
            # its read timeout (boto/botocore#3755). The interim response costs 25 bytes.
            await send_continue(request)
    _log_request(request, context, response, request_id, started_s)
    return response


def _read_hoisted_headers(context: RequestContext, parsed: ParsedRequest) -> None:
    """Move the x-amz-* parameters of a presigned URL from the query to the headers."""
    hoisted = hoisted_headers(parsed.query)
    if hoisted:
        context.add_signed_query_headers(hoisted)
        for name, _ in hoisted:
            context.query.pop(name, None)


def is_form_upload(request: web.BaseRequest, location: Location) -> bool:
    """Tell whether a request is a browser-based upload: an HTML form POSTed to a bucket."""
    content_type = request.headers.get("Content-Type", "")
    return (
        request.method == "POST"
        and location.bucket is not None
        and not location.key
        and not request.query_string
        and content_type.lower().startswith("multipart/form-data")
    )


def _error(
    request: web.BaseRequest,
    error: S3Error,
    location: Location,
    request_id: str,
    detail: str | None = None,
) -> web.StreamResponse:
    """Log the error with `detail`, the full text the client does not see, and build the reply."""
    level = logging.WARNING if error.http_status >= 500 else logging.INFO
    log.log(
        level,
        "request_id=%s %s %s -> %d %s: %s",
        request_id,
        request.method,
        location.resource,
        error.http_status,
        error.code,
        detail or error.message,
    )
    return error_response(
        error,
        resource=location.resource,
        request_id=request_id,
        with_body=request.method != "HEAD",
    )


def _log_auth_failure(request_id: str, error: S3AuthError) -> None:
    """Log what the server signed on a signature mismatch, at debug; never the secret key."""
    if error.canonical_request is not None or error.string_to_sign is not None:
        log.debug(
            "request_id=%s signature mismatch; canonical request:\n%s\nstring to sign:\n%s",
            request_id,
            error.canonical_request,
            error.string_to_sign,
        )


def _log_request(
    request: web.BaseRequest,
    context: RequestContext | None,
    response: web.StreamResponse,
    request_id: str,
    started_s: float,
) -> None:
    if not log.isEnabledFor(logging.DEBUG):
        return
    user = context.caller.name if context is not None and context.caller else "-"
    operation = context.operation if context is not None else "-"
    log.debug(
        "request_id=%s user=%s %s %s %s status=%d duration_ms=%.1f",
        request_id,
        user,
        operation,
        request.method,
        _loggable_path(request),
        response.status,
        (time.monotonic() - started_s) * 1000,
    )


def _loggable_path(request: web.BaseRequest) -> str:
    """Return the request target with presigned-URL credentials replaced by "REDACTED"."""
    path, _, query = request.raw_path.partition("?")
    if not query:
        return path
    kept = []
    for pair in query.split("&"):
        name = pair.split("=", 1)[0]
        kept.append(f"{name}=REDACTED" if name in _SECRET_PARAMETERS else pair)
    return f"{path}?{'&'.join(kept)}"
