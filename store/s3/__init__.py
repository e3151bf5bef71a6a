"""AWS Signature Version 4 and 2 verification and S3 request body decoding for the S3 gateway.

A handler calls `verify()` on the request line and headers, then reads the body through
`open_payload_reader()`, which follows the PayloadMode that `verify()` returned.
"""

from store.s3.auth_common import AuthResult, AuthType, PayloadMode
from store.s3.chunked import (
    AwsChunkedDecoder,
    PayloadReader,
    PlainPayloadReader,
    open_payload_reader,
)
from store.s3.errors import S3AuthError
from store.s3.framing import ByteSource
from store.s3.request import ParsedRequest
from store.s3.sigv4 import verify

__all__ = [
    "AuthResult",
    "AuthType",
    "AwsChunkedDecoder",
    "ByteSource",
    "ParsedRequest",
    "PayloadMode",
    "PayloadReader",
    "PlainPayloadReader",
    "S3AuthError",
    "open_payload_reader",
    "verify",
]
