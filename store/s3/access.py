"""Authentication (who signed the request) and authorization (may they touch this bucket).

Every request must be signed with SigV4 or Signature Version 2, in the Authorization
header or in a presigned URL; anonymous requests get AccessDenied. Each bucket
belongs to the user who created it. Other users get AccessDenied on it, and the
root user may do anything.
"""

from __future__ import annotations

from datetime import UTC, datetime

from store.client import AsyncClient
from store.s3.api_errors import S3Error
from store.s3.auth_common import AuthResult
from store.s3.credentials import Caller, CredentialCache
from store.s3.request import ParsedRequest
from store.s3.sigv2 import split_authorization
from store.s3.sigv4 import verify
from store.types import BucketInfo

_CREDENTIAL_FIELD = "Credential="


def access_key_of(request: ParsedRequest) -> str | None:
    """Return the access key a request claims, without checking anything else.

    verify() parses the same fields again and raises for a malformed one, so a
    request this function cannot read still gets the precise error.
    """
    authorization = request.headers.get("authorization", "")
    at = authorization.find(_CREDENTIAL_FIELD)
    if at >= 0:
        return authorization[at + len(_CREDENTIAL_FIELD) :].split("/", 1)[0].strip()
    v2_parts = split_authorization(authorization)
    if v2_parts is not None:
        return v2_parts[0]
    for name, value in request.query:
        if name == "X-Amz-Credential":
            return value.split("/", 1)[0]
        if name == "AWSAccessKeyId":
            return value
    return None


async def authenticate(
    request: ParsedRequest, credentials: CredentialCache, domain: str | None = None
) -> tuple[Caller, AuthResult]:
    """Verify the request's signature; return the caller and how to read the body.

    `domain` is the gateway's --domain, which names the bucket of a virtual-hosted-style
    request for Signature Version 2.
    """
    access_key = access_key_of(request)
    user = await credentials.lookup(access_key) if access_key else None
    secret_key = user.secret_key if user is not None else None

    def lookup_secret(wanted: str) -> str | None:
        return secret_key if wanted == access_key else None

    result = verify(request, lookup_secret, datetime.now(UTC), domain=domain)
    if result.access_key is None or user is None:
        raise S3Error(
            "AccessDenied",
            "Anonymous access is not allowed; sign the request with an access key "
            "(storectl user add NAME creates one)",
        )
    return Caller(user.name, result.access_key), result


async def authorize_bucket(client: AsyncClient, caller: Caller, bucket: str) -> BucketInfo | None:
    """Raise AccessDenied unless the caller owns the bucket or is root.

    Returns the bucket when it was looked up (every caller but root), so handlers
    can reuse its owner. NoSuchBucket propagates from the lookup.
    """
    if caller.is_root:
        return None
    info = await client.head_bucket(bucket)
    if info.owner != caller.name:
        raise S3Error(
            "AccessDenied",
            f"Access Denied: bucket {bucket} belongs to another user; ask its owner or "
            "the root user",
        )
    return info
