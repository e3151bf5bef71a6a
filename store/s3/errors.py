"""The one exception of the S3 authentication layer, with the S3 error codes it uses.

The codes and HTTP statuses are those Amazon S3 returns, so an S3 client shows its
user the error it would see against AWS. The gateway turns an S3AuthError into the
S3 XML error body with `code` and `message`.
"""

from __future__ import annotations

ACCESS_DENIED = "AccessDenied"
INVALID_ACCESS_KEY_ID = "InvalidAccessKeyId"
SIGNATURE_DOES_NOT_MATCH = "SignatureDoesNotMatch"
REQUEST_TIME_TOO_SKEWED = "RequestTimeTooSkewed"
AUTHORIZATION_HEADER_MALFORMED = "AuthorizationHeaderMalformed"
AUTHORIZATION_QUERY_PARAMETERS_ERROR = "AuthorizationQueryParametersError"
MISSING_SECURITY_HEADER = "MissingSecurityHeader"
INVALID_ARGUMENT = "InvalidArgument"
INVALID_REQUEST = "InvalidRequest"
X_AMZ_CONTENT_SHA256_MISMATCH = "XAmzContentSHA256Mismatch"
INCOMPLETE_BODY = "IncompleteBody"
MALFORMED_TRAILER_ERROR = "MalformedTrailerError"

HTTP_STATUS_BY_CODE: dict[str, int] = {
    ACCESS_DENIED: 403,
    INVALID_ACCESS_KEY_ID: 403,
    SIGNATURE_DOES_NOT_MATCH: 403,
    REQUEST_TIME_TOO_SKEWED: 403,
    AUTHORIZATION_HEADER_MALFORMED: 400,
    AUTHORIZATION_QUERY_PARAMETERS_ERROR: 400,
    MISSING_SECURITY_HEADER: 400,
    INVALID_ARGUMENT: 400,
    INVALID_REQUEST: 400,
    X_AMZ_CONTENT_SHA256_MISMATCH: 400,
    INCOMPLETE_BODY: 400,
    MALFORMED_TRAILER_ERROR: 400,
}


class S3AuthError(Exception):
    """An authentication or body-framing failure, as an S3 error code, message and HTTP status.

    `canonical_request` and `string_to_sign` are set only for SignatureDoesNotMatch.
    They are for debug logs on the server and must not be sent to the client,
    because they help an attacker more than a user. The message never contains
    a secret key or a signing key.
    """

    def __init__(
        self,
        code: str,
        message: str,
        http_status: int,
        *,
        canonical_request: str | None = None,
        string_to_sign: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status
        self.canonical_request = canonical_request
        self.string_to_sign = string_to_sign


def auth_error(
    code: str,
    message: str,
    *,
    canonical_request: str | None = None,
    string_to_sign: str | None = None,
) -> S3AuthError:
    """Build an S3AuthError with the HTTP status that S3 uses for `code`."""
    return S3AuthError(
        code,
        message,
        HTTP_STATUS_BY_CODE[code],
        canonical_request=canonical_request,
        string_to_sign=string_to_sign,
    )
