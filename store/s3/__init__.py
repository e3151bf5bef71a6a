"""AWS Signature Version 4 verification and S3 request body decoding for the S3 gateway.

A handler calls `verify()` on the request line and headers, then reads the body
following the PayloadMode that `verify()` returned.
"""

from store.s3.errors import S3AuthError
from store.s3.request import ParsedRequest
from store.s3.sigv4 import AuthResult, AuthType, PayloadMode, verify

__all__ = [
    "AuthResult",
    "AuthType",
    "ParsedRequest",
    "PayloadMode",
    "S3AuthError",
    "verify",
]
