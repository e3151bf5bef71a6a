"""AWS Signature Version 4 primitives: URI encoding, the signing key and the strings to sign.

Each function follows the S3 API reference pages "Signature Calculations for the
Authorization Header", "Transferring Payload in Multiple Chunks (Chunked Upload)" and
"Signature calculations for trailing headers". The verifier in sigv4.py and the
aws-chunked decoder in chunked.py share them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
CHUNK_ALGORITHM = "AWS4-HMAC-SHA256-PAYLOAD"
TRAILER_ALGORITHM = "AWS4-HMAC-SHA256-TRAILER"
SCOPE_TERMINATOR = "aws4_request"
EMPTY_SHA256_HEX = hashlib.sha256(b"").hexdigest()

# The unreserved characters of RFC 3986 stay as they are. Python's quote() never
# encodes them, so only "/" needs listing, and only for the path.
_SAFE_IN_PATH = "/"
_SAFE_IN_QUERY = ""

# HTTP header whitespace: SP and HTAB.
_HEADER_WHITESPACE_RUN = re.compile(r"[ \t]+")

SIGNATURE_PATTERN = re.compile(r"[0-9a-f]{64}")


def uri_encode(text: str, *, keep_slash: bool = False) -> str:
    """Percent-encode `text` the SigV4 way: UTF-8 bytes, every byte but A-Za-z0-9-._~ as %XX.

    A space becomes %20, never "+". Lone surrogates from a "surrogateescape" decoding
    turn back into the bytes they came from, so a query value that was not valid UTF-8
    is encoded as it was sent.
    """
    safe = _SAFE_IN_PATH if keep_slash else _SAFE_IN_QUERY
    return quote(text.encode("utf-8", "surrogateescape"), safe=safe)


def canonical_query_string(pairs: Iterable[tuple[str, str]]) -> str:
    """Encode each decoded (name, value) pair and sort by encoded name, then encoded value."""
    encoded = sorted((uri_encode(name), uri_encode(value)) for name, value in pairs)
    return "&".join(f"{name}={value}" for name, value in encoded)


def canonical_header_value(values: Iterable[str]) -> str:
    """Trim each value, collapse inner runs of spaces and tabs, and join repeats with a comma."""
    trimmed = (_HEADER_WHITESPACE_RUN.sub(" ", value.strip(" \t")) for value in values)
    return ",".join(trimmed)


def sha256_hex(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def hmac_sha256(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


# One key per access key, day, region and service: the four HMACs cost about a tenth of
# the gateway's CPU time per small request.
@lru_cache(maxsize=1024)
def derive_signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """Derive kSigning from the secret key and the credential scope; `date` is YYYYMMDD."""
    date_key = hmac_sha256(f"AWS4{secret_key}".encode(), date)
    region_key = hmac_sha256(date_key, region)
    service_key = hmac_sha256(region_key, service)
    return hmac_sha256(service_key, SCOPE_TERMINATOR)


def request_string_to_sign(amz_date: str, scope: str, canonical_request: str) -> str:
    canonical_request_hash = sha256_hex(canonical_request.encode("utf-8"))
    return "\n".join([ALGORITHM, amz_date, scope, canonical_request_hash])


def chunk_string_to_sign(
    amz_date: str, scope: str, previous_signature: str, chunk_sha256_hex: str
) -> str:
    """Build the string to sign of one aws-chunked data chunk, chained to the previous signature."""
    return "\n".join(
        [CHUNK_ALGORITHM, amz_date, scope, previous_signature, EMPTY_SHA256_HEX, chunk_sha256_hex]
    )


def trailer_string_to_sign(
    amz_date: str, scope: str, previous_signature: str, trailer_sha256_hex: str
) -> str:
    """Build the string to sign of the trailer section, chained to the final chunk's signature."""
    return "\n".join([TRAILER_ALGORITHM, amz_date, scope, previous_signature, trailer_sha256_hex])


def sign(signing_key: bytes, string_to_sign: str) -> str:
    """Return the lowercase hex HMAC-SHA256 signature of `string_to_sign`."""
    return hmac.new(signing_key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def signatures_equal(expected: str, provided: str) -> bool:
    """Compare two signatures in constant time, whatever characters `provided` contains."""
    return hmac.compare_digest(expected.encode("utf-8"), provided.encode("utf-8"))
