"""S3 errors of the gateway: the code, HTTP status and message of every S3 error it returns.

A handler raises S3Error, or lets an SDK StoreError or an authentication S3AuthError
propagate. `to_s3_error` maps all three to the code and status that Amazon S3 uses, as
listed on the "Error responses" page of the S3 API reference.
"""

from __future__ import annotations

from store.errors import (
    AlreadyExists,
    BadDigest,
    BucketNotEmpty,
    ChecksumMismatch,
    EntityTooSmall,
    InvalidArgument,
    InvalidPart,
    InvalidPartOrder,
    InvalidRequest,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    NotFound,
    PreconditionFailed,
    ResourceExhausted,
    StaleEpoch,
    StoreError,
    Timeout,
    Unavailable,
)
from store.s3.errors import S3AuthError

# HTTP status of each error code the gateway sends.
HTTP_STATUS_BY_CODE: dict[str, int] = {
    "AccessDenied": 403,
    "BadDigest": 400,
    "BucketAlreadyExists": 409,
    "BucketAlreadyOwnedByYou": 409,
    "BucketNotEmpty": 409,
    "EntityTooLarge": 400,
    "EntityTooSmall": 400,
    "IllegalLocationConstraintException": 400,
    "IncompleteBody": 400,
    "InternalError": 500,
    "InvalidArgument": 400,
    "InvalidBucketName": 400,
    "InvalidDigest": 400,
    "InvalidPart": 400,
    "InvalidPartNumber": 416,
    "InvalidPartOrder": 400,
    "InvalidPolicyDocument": 400,
    "InvalidRange": 416,
    "InvalidRequest": 400,
    "InvalidTag": 400,
    "InvalidURI": 400,
    "KeyTooLongError": 400,
    "MalformedPOSTRequest": 400,
    "MalformedXML": 400,
    "MaxPostPreDataLengthExceeded": 400,
    "MetadataTooLarge": 400,
    "MethodNotAllowed": 405,
    "MissingSecurityHeader": 400,
    "MissingContentLength": 411,
    "NoSuchBucket": 404,
    "NoSuchKey": 404,
    "NoSuchUpload": 404,
    "NotImplemented": 501,
    "NotModified": 304,
    "PreconditionFailed": 412,
    "RequestHeaderSectionTooLarge": 400,
    "ServiceUnavailable": 503,
    "SlowDown": 503,
    "UnexpectedContent": 400,
}


class S3Error(Exception):
    """An S3 error response: `code`, `message` and the HTTP status S3 uses for the code."""

    def __init__(self, code: str, message: str, *, http_status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status if http_status is not None else HTTP_STATUS_BY_CODE[code]


def not_implemented(what: str) -> S3Error:
    return S3Error(
        "NotImplemented",
        f"{what} is not implemented by this gateway; use an operation it supports",
    )


# SDK errors whose S3 code is the class's own code, checked in order (subclasses first).
_STORE_ERROR_CODES: list[tuple[type[StoreError], str]] = [
    (NoSuchBucket, "NoSuchBucket"),
    (NoSuchKey, "NoSuchKey"),
    (NoSuchUpload, "NoSuchUpload"),
    (BadDigest, "BadDigest"),
    (InvalidPart, "InvalidPart"),
    (InvalidRequest, "InvalidRequest"),
    (InvalidPartOrder, "InvalidPartOrder"),
    (EntityTooSmall, "EntityTooSmall"),
    (BucketNotEmpty, "BucketNotEmpty"),
    (PreconditionFailed, "PreconditionFailed"),
    (StaleEpoch, "ServiceUnavailable"),
    # S3 returns 503 SlowDown when it cannot keep up, and 503 ServiceUnavailable when
    # it cannot serve at all. An SDK timeout is the first, an unreachable server the second.
    (Timeout, "SlowDown"),
    (Unavailable, "ServiceUnavailable"),
    (ResourceExhausted, "ServiceUnavailable"),
    (InvalidArgument, "InvalidArgument"),
    (NotFound, "NoSuchKey"),
    (AlreadyExists, "BucketAlreadyExists"),
    (ChecksumMismatch, "InternalError"),
]


# Messages for errors whose details name internal servers and addresses. The gateway
# logs those details and sends S3's usual text instead.
_SERVER_SIDE_MESSAGES = {
    "SlowDown": "Please reduce your request rate, then retry.",
    "ServiceUnavailable": "The service cannot handle the request right now; retry later.",
    "InternalError": "We encountered an internal error; please try again.",
}


def from_store_error(error: StoreError) -> S3Error:
    """Map an SDK error to the S3 error with the same meaning.

    The message is the one the metaserver or dataserver raised, without the SDK's
    prefix that names the server's address.
    """
    for cls, code in _STORE_ERROR_CODES:
        if isinstance(error, cls):
            message = _SERVER_SIDE_MESSAGES.get(code) or error.server_message or str(error)
            return S3Error(code, message)
    return S3Error("InternalError", _SERVER_SIDE_MESSAGES["InternalError"])


def from_auth_error(error: S3AuthError) -> S3Error:
    return S3Error(error.code, error.message, http_status=error.http_status)
