"""Choose the S3 operation of a request from its method, target and query parameters.

Every query parameter must be one the chosen operation understands. Anything else,
such as PUT ?versioning, ?policy or ?lifecycle, is a subresource this gateway does not
implement and gets NotImplemented, never a plain listing or read that would look
like a success.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from store.s3 import sigv2, sigv4, unconfigured
from store.s3.addressing import Location
from store.s3.api_errors import S3Error, not_implemented

# Parameters any request may carry: presigned-URL authentication (Signature Version 4
# and 2, with the payload hash that the JavaScript SDK adds) and the operation name that
# botocore appends ("x-id=PutObject"). A presigned URL's other x-amz-* parameters are
# headers, and are out of the query by now.
_ALWAYS_ALLOWED = frozenset(
    {
        *sigv4.QUERY_AUTH_PARAMETERS,
        *sigv2.QUERY_AUTH_PARAMETERS,
        "X-Amz-Security-Token",
        "X-Amz-Content-Sha256",
        "x-id",
    }
)
_RESPONSE_OVERRIDES = frozenset(
    {
        "response-content-type",
        "response-content-language",
        "response-expires",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
    }
)

# The parameters each operation accepts, besides those above.
ALLOWED_PARAMETERS: dict[str, frozenset[str]] = {
    "ListBuckets": frozenset({"max-buckets", "continuation-token", "prefix", "bucket-region"}),
    "ListObjects": frozenset({"prefix", "delimiter", "marker", "max-keys", "encoding-type"}),
    "ListObjectsV2": frozenset(
        {
            "list-type",
            "prefix",
            "delimiter",
            "max-keys",
            "encoding-type",
            "continuation-token",
            "start-after",
            "fetch-owner",
        }
    ),
    "ListObjectVersions": frozenset(
        {
            "versions",
            "prefix",
            "delimiter",
            "key-marker",
            "version-id-marker",
            "max-keys",
            "encoding-type",
        }
    ),
    "ListMultipartUploads": frozenset(
        {
            "uploads",
            "prefix",
            "delimiter",
            "key-marker",
            "upload-id-marker",
            "max-uploads",
            "encoding-type",
        }
    ),
    "GetBucketLocation": frozenset({"location"}),
    "GetBucketAcl": frozenset({"acl"}),
    "PutBucketAcl": frozenset({"acl"}),
    "GetBucketCors": frozenset({"cors"}),
    "GetBucketTagging": frozenset({"tagging"}),
    "PutBucketTagging": frozenset({"tagging"}),
    "DeleteBucketTagging": frozenset({"tagging"}),
    "PutBucketCors": frozenset({"cors"}),
    "DeleteBucketCors": frozenset({"cors"}),
    "GetBucketVersioning": frozenset({"versioning"}),
    "CreateBucket": frozenset(),
    "HeadBucket": frozenset(),
    "DeleteBucket": frozenset(),
    "DeleteObjects": frozenset({"delete"}),
    "GetObject": frozenset({"partNumber", "versionId"}) | _RESPONSE_OVERRIDES,
    "HeadObject": frozenset({"partNumber", "versionId"}) | _RESPONSE_OVERRIDES,
    "GetObjectAcl": frozenset({"acl", "versionId"}),
    "GetObjectAttributes": frozenset({"attributes", "versionId"}),
    "PutObjectAcl": frozenset({"acl", "versionId"}),
    "PutObject": frozenset(),
    "CopyObject": frozenset(),
    "DeleteObject": frozenset({"versionId"}),
    "CreateMultipartUpload": frozenset({"uploads"}),
    "UploadPart": frozenset({"partNumber", "uploadId"}),
    "UploadPartCopy": frozenset({"partNumber", "uploadId"}),
    "CompleteMultipartUpload": frozenset({"uploadId"}),
    "AbortMultipartUpload": frozenset({"uploadId"}),
    "ListParts": frozenset({"uploadId", "part-number-marker", "max-parts"}),
    # Settings that no bucket or object has here (unconfigured.py).
    **{operation: frozenset({name}) for name, operation in unconfigured.BUCKET_GETS.items()},
    **{operation: frozenset({name}) for name, operation in unconfigured.BUCKET_DELETES.items()},
    "GetObjectTagging": frozenset({"tagging", "versionId"}),
    "PutObjectTagging": frozenset({"tagging", "versionId"}),
    "DeleteObjectTagging": frozenset({"tagging", "versionId"}),
}


# Subresources of the S3 API that this gateway does not implement, by the suffix of
# their operations' names (PutBucketAcl, GetObjectTagging, ...).
_SUBRESOURCE_OPERATIONS = {
    "acl": "Acl",
    "tagging": "Tagging",
    "policy": "Policy",
    "policyStatus": "PolicyStatus",
    "lifecycle": "LifecycleConfiguration",
    "cors": "Cors",
    "website": "Website",
    "versioning": "Versioning",
    "encryption": "Encryption",
    "logging": "Logging",
    "notification": "NotificationConfiguration",
    "replication": "Replication",
    "object-lock": "ObjectLockConfiguration",
    "retention": "Retention",
    "legal-hold": "LegalHold",
    "ownershipControls": "OwnershipControls",
    "publicAccessBlock": "PublicAccessBlock",
    "accelerate": "AccelerateConfiguration",
    "requestPayment": "RequestPayment",
    "intelligent-tiering": "IntelligentTieringConfiguration",
    "analytics": "AnalyticsConfiguration",
    "inventory": "InventoryConfiguration",
    "metrics": "MetricsConfiguration",
    "attributes": "Attributes",
    "torrent": "Torrent",
}
# Operations whose names do not follow the Verb + Bucket/Object + subresource pattern.
_SPECIAL_OPERATIONS = {
    ("POST", "object", "restore"): "RestoreObject",
    ("POST", "object", "select"): "SelectObjectContent",
    ("PUT", "bucket", "object-lock"): "PutObjectLockConfiguration",
    ("PUT", "bucket", "publicAccessBlock"): "PutPublicAccessBlock",
}
_VERBS = {"GET": "Get", "HEAD": "Get", "PUT": "Put", "DELETE": "Delete"}


def choose_operation(
    method: str, location: Location, query: Mapping[str, str], headers: Mapping[str, str]
) -> str:
    """Return the operation name, or raise NotImplemented / MethodNotAllowed."""
    names = set(query)
    if location.bucket is None:
        operation = _service_operation(method)
        _check_parameters(operation, names)
        return operation
    target = "bucket" if location.key is None else "object"
    try:
        if location.key is None:
            operation = _bucket_operation(method, names)
        else:
            operation = _object_operation(method, names, headers)
        _check_parameters(operation, names)
    except S3Error as error:
        if error.code == "NotImplemented":
            _check_subresources(method, target, names)
        raise
    return operation


def _check_subresources(method: str, target: str, names: Collection[str]) -> None:
    """Raise NotImplemented, naming the S3 operation, for a subresource this gateway lacks.

    Called only for a rejected request, to replace the generic message.
    """
    for name in sorted(names):
        operation = _SPECIAL_OPERATIONS.get((method, target, name))
        suffix = _SUBRESOURCE_OPERATIONS.get(name)
        if operation is None and suffix is not None and method in _VERBS:
            operation = f"{_VERBS[method]}{target.capitalize()}{suffix}"
        if operation is None or operation in ALLOWED_PARAMETERS:
            continue
        raise not_implemented(f"{operation} (the ?{name} subresource)")


def _service_operation(method: str) -> str:
    if method in ("GET", "HEAD"):
        return "ListBuckets"
    raise S3Error(
        "MethodNotAllowed",
        f"The specified method {method} is not allowed against the service; name a bucket",
    )


def _bucket_operation(method: str, names: Collection[str]) -> str:
    if method == "GET":
        for parameter, operation in (
            ("location", "GetBucketLocation"),
            ("uploads", "ListMultipartUploads"),
            ("acl", "GetBucketAcl"),
            ("cors", "GetBucketCors"),
            ("tagging", "GetBucketTagging"),
            ("versioning", "GetBucketVersioning"),
            ("versions", "ListObjectVersions"),
        ):
            if parameter in names:
                return operation
        for parameter, operation in unconfigured.BUCKET_GETS.items():
            if parameter in names:
                return operation
        return "ListObjectsV2" if "list-type" in names else "ListObjects"
    if method == "PUT":
        if "cors" in names:
            return "PutBucketCors"
        if "tagging" in names:
            return "PutBucketTagging"
        return "PutBucketAcl" if "acl" in names else "CreateBucket"
    if method == "HEAD":
        return "HeadBucket"
    if method == "DELETE":
        if "cors" in names:
            return "DeleteBucketCors"
        if "tagging" in names:
            return "DeleteBucketTagging"
        for parameter, operation in unconfigured.BUCKET_DELETES.items():
            if parameter in names:
                return operation
        return "DeleteBucket"
    if method == "POST" and "delete" in names:
        return "DeleteObjects"
    raise _unknown(method, names, "bucket")


def _object_operation(method: str, names: Collection[str], headers: Mapping[str, str]) -> str:
    copy = "x-amz-copy-source" in headers
    if method == "GET":
        if "uploadId" in names:
            return "ListParts"
        if "tagging" in names:
            return "GetObjectTagging"
        if "attributes" in names:
            return "GetObjectAttributes"
        return "GetObjectAcl" if "acl" in names else "GetObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "PUT":
        if "acl" in names:
            return "PutObjectAcl"
        if "tagging" in names:
            return "PutObjectTagging"
        if "uploadId" in names or "partNumber" in names:
            return "UploadPartCopy" if copy else "UploadPart"
        return "CopyObject" if copy else "PutObject"
    if method == "DELETE":
        if "tagging" in names:
            return "DeleteObjectTagging"
        return "AbortMultipartUpload" if "uploadId" in names else "DeleteObject"
    if method == "POST":
        if "uploads" in names:
            return "CreateMultipartUpload"
        if "uploadId" in names:
            return "CompleteMultipartUpload"
    raise _unknown(method, names, "object")


def _check_parameters(operation: str, names: Collection[str]) -> None:
    allowed = ALLOWED_PARAMETERS[operation]
    unknown = sorted(name for name in names if name not in allowed and name not in _ALWAYS_ALLOWED)
    if unknown:
        raise not_implemented(f"{operation} with the query parameter(s) {', '.join(unknown)}")


def _unknown(method: str, names: Collection[str], target: str) -> S3Error:
    if names:
        return not_implemented(
            f"{method} on a{'n' if target == 'object' else ''} {target} "
            f"with ?{'&'.join(sorted(names))}"
        )
    return S3Error(
        "MethodNotAllowed",
        f"The specified method {method} is not allowed against this {target}",
    )
