"""Tests of store/s3/sigv2.py against the AWS worked examples and requests botocore signs.

No request is sent anywhere. botocore's HmacV1Auth and HmacV1QueryAuth (the Signature
Version 2 signers of boto3 and the aws CLI) sign AWSRequest objects, and a default
boto3 client presigns URLs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from botocore.auth import HmacV1Auth, HmacV1QueryAuth
from botocore.awsrequest import AWSRequest

from store.s3 import AuthResult, AuthType, ParsedRequest, PayloadMode, S3AuthError, verify
from store.s3.access import access_key_of
from store.s3.sigv2 import sign, string_to_sign

from .s3_support import (
    ACCESS_KEY,
    CREDENTIALS,
    DOC_ACCESS_KEY,
    DOC_SECRET_KEY,
    REGION,
    SECRET_KEY,
    drop_query,
    lookup_secret,
    path_url,
    replace_query_value,
    sign_header,
    to_parsed,
    with_header,
)

LOCAL_ENDPOINT = "http://127.0.0.1:9000"
# The domain of the AWS examples' virtual-hosted-style Host headers.
DOC_DOMAIN = "s3.amazonaws.com"
DOC_HOST = "johnsmith.s3.amazonaws.com"


def verify_at(request: ParsedRequest, now: datetime | None = None, **kwargs: Any) -> AuthResult:
    return verify(request, lookup_secret, now or datetime.now(UTC), **kwargs)


def rejection(request: ParsedRequest, now: datetime | None = None, **kwargs: Any) -> S3AuthError:
    with pytest.raises(S3AuthError) as caught:
        verify_at(request, now, **kwargs)
    return caught.value


def doc_request(method: str, target: str, headers: list[tuple[str, str]]) -> ParsedRequest:
    return ParsedRequest.from_target(method, target, headers)


def sign_v2(
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    *,
    auth_path: str | None = None,
) -> AWSRequest:
    """Sign a request with botocore's HmacV1Auth, dated now."""
    request = AWSRequest(method=method, url=url, headers=headers or {}, auth_path=auth_path)
    HmacV1Auth(CREDENTIALS).add_auth(request)
    return request


def presign_v2(method: str, url: str, expires_s: int = 3600) -> ParsedRequest:
    """Presign a request with botocore's HmacV1QueryAuth, valid for `expires_s` from now."""
    request = AWSRequest(method=method, url=url)
    HmacV1QueryAuth(CREDENTIALS, expires=expires_s).add_auth(request)
    return to_parsed(request)


def default_boto3_client() -> Any:
    """A boto3 client with no signature_version, which presigns with Signature Version 2."""
    return boto3.client(
        "s3",
        endpoint_url=LOCAL_ENDPOINT,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def presigned_by_boto3(operation: str, params: dict[str, Any], method: str) -> ParsedRequest:
    url = default_boto3_client().generate_presigned_url(operation, Params=params)
    assert "AWSAccessKeyId=" in url
    return ParsedRequest.from_target(
        method, url.removeprefix(LOCAL_ENDPOINT), [("Host", "127.0.0.1:9000")]
    )


def independent_signature(secret_key: str, text: str) -> str:
    digest = hmac.new(secret_key.encode(), text.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


# Worked examples of the S3 Developer Guide page "Signing and authenticating REST
# requests" (Signature Version 2). Its signatures were computed for the bucket
# "johnsmith", which later editions renamed in the text only. The Delete example is
# left out: its signature puts the x-amz-date value on the Date line, against the
# page's own rule that the Date line is empty when x-amz-date is sent.

DOC_EXAMPLES = [
    pytest.param(
        "GET",
        "/photos/puppy.jpg",
        [("Host", DOC_HOST), ("Date", "Tue, 27 Mar 2007 19:36:42 +0000")],
        "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/johnsmith/photos/puppy.jpg",
        "bWq2s1WEIj+Ydj0vQ697zp+IXMU=",
        id="object-get",
    ),
    pytest.param(
        "PUT",
        "/photos/puppy.jpg",
        [
            ("Content-Type", "image/jpeg"),
            ("Content-Length", "94328"),
            ("Host", DOC_HOST),
            ("Date", "Tue, 27 Mar 2007 21:15:45 +0000"),
        ],
        "PUT\n\nimage/jpeg\nTue, 27 Mar 2007 21:15:45 +0000\n/johnsmith/photos/puppy.jpg",
        "MyyxeRY7whkBe+bq8fHCL/2kKUg=",
        id="object-put",
    ),
    pytest.param(
        "GET",
        "/?prefix=photos&max-keys=50&marker=puppy",
        [
            ("User-Agent", "Mozilla/5.0"),
            ("Host", DOC_HOST),
            ("Date", "Tue, 27 Mar 2007 19:42:41 +0000"),
        ],
        "GET\n\n\nTue, 27 Mar 2007 19:42:41 +0000\n/johnsmith/",
        "htDYFYduRNen8P9ZfE/s9SuKy0U=",
        id="list",
    ),
    pytest.param(
        "GET",
        "/?acl",
        [("Host", DOC_HOST), ("Date", "Tue, 27 Mar 2007 19:44:46 +0000")],
        "GET\n\n\nTue, 27 Mar 2007 19:44:46 +0000\n/johnsmith/?acl",
        "c2WLPFtWHVgbEmeEG93a4cG37dM=",
        id="fetch-acl",
    ),
    pytest.param(
        "GET",
        "/",
        [("Host", "s3.amazonaws.com"), ("Date", "Wed, 28 Mar 2007 01:29:59 +0000")],
        "GET\n\n\nWed, 28 Mar 2007 01:29:59 +0000\n/",
        "qGdzdERIC03wnaRNKh6OqZehG9s=",
        id="list-all-my-buckets",
    ),
    pytest.param(
        "GET",
        "/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re",
        [("Host", "s3.amazonaws.com"), ("Date", "Wed, 28 Mar 2007 01:49:49 +0000")],
        "GET\n\n\nWed, 28 Mar 2007 01:49:49 +0000\n/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re",
        "DNEZGsoieTZ92F3bUfSPQcbGmlM=",
        id="unicode-keys",
    ),
]


@pytest.mark.parametrize(("method", "target", "headers", "expected", "signature"), DOC_EXAMPLES)
def test_doc_example_string_to_sign(
    method: str, target: str, headers: list[tuple[str, str]], expected: str, signature: str
) -> None:
    request = doc_request(method, target, headers)
    bucket = "johnsmith" if request.headers["Host"] == DOC_HOST else None
    date = request.headers["Date"]

    assert string_to_sign(request, date, bucket) == expected
    assert sign(DOC_SECRET_KEY, expected) == signature


@pytest.mark.parametrize(("method", "target", "headers", "expected", "signature"), DOC_EXAMPLES)
def test_doc_example_verifies(
    method: str, target: str, headers: list[tuple[str, str]], expected: str, signature: str
) -> None:
    authorization = ("Authorization", f"AWS {DOC_ACCESS_KEY}:{signature}")
    request = doc_request(method, target, [*headers, authorization])
    request_time = datetime.strptime(request.headers["Date"], "%a, %d %b %Y %H:%M:%S %z")

    result = verify_at(request, request_time + timedelta(minutes=5), domain=DOC_DOMAIN)

    assert result.access_key == DOC_ACCESS_KEY
    assert result.auth_type is AuthType.AUTHORIZATION_HEADER
    assert result.payload_mode is PayloadMode.UNSIGNED_PAYLOAD
    assert result.signing_key is None


def test_doc_upload_example() -> None:
    # A CNAME-style bucket: the whole host names the bucket, which the gateway does
    # not route, so only the string to sign is checked, with the bucket given.
    request = doc_request(
        "PUT",
        "/db-backup.dat.gz",
        [
            ("User-Agent", "curl/7.15.5"),
            ("Host", "static.johnsmith.net:8080"),
            ("Date", "Tue, 27 Mar 2007 21:06:08 +0000"),
            ("x-amz-acl", "public-read"),
            ("content-type", "application/x-download"),
            ("Content-MD5", "4gJE4saaMU4BqNR0kLY+lw=="),
            ("X-Amz-Meta-ReviewedBy", "joe@johnsmith.net"),
            ("X-Amz-Meta-ReviewedBy", "jane@johnsmith.net"),
            ("X-Amz-Meta-FileChecksum", "0x02661779"),
            ("X-Amz-Meta-ChecksumAlgorithm", "crc32"),
            ("Content-Disposition", "attachment; filename=database.dat"),
            ("Content-Encoding", "gzip"),
            ("Content-Length", "5913339"),
        ],
    )
    expected = (
        "PUT\n4gJE4saaMU4BqNR0kLY+lw==\napplication/x-download\n"
        "Tue, 27 Mar 2007 21:06:08 +0000\n"
        "x-amz-acl:public-read\n"
        "x-amz-meta-checksumalgorithm:crc32\n"
        "x-amz-meta-filechecksum:0x02661779\n"
        "x-amz-meta-reviewedby:joe@johnsmith.net,jane@johnsmith.net\n"
        "/static.johnsmith.net/db-backup.dat.gz"
    )

    text = string_to_sign(request, "Tue, 27 Mar 2007 21:06:08 +0000", "static.johnsmith.net")

    assert text == expected
    assert sign(DOC_SECRET_KEY, text) == "ilyl83RwaSoYIEdixDQcA4OnAnc="


def test_doc_query_string_example() -> None:
    target = (
        "/photos/puppy.jpg?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&"
        "Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D&Expires=1175139620"
    )
    request = doc_request("GET", target, [("Host", DOC_HOST)])
    expires = datetime.fromtimestamp(1175139620, UTC)

    result = verify_at(request, expires - timedelta(hours=1), domain=DOC_DOMAIN)
    expired = rejection(request, expires + timedelta(seconds=1), domain=DOC_DOMAIN)

    assert string_to_sign(request, "1175139620", "johnsmith") == (
        "GET\n\n\n1175139620\n/johnsmith/photos/puppy.jpg"
    )
    assert result.access_key == DOC_ACCESS_KEY
    assert result.auth_type is AuthType.PRESIGNED_URL
    assert expired.code == "AccessDenied"
    assert "Request has expired" in expired.message


def test_x_amz_date_empties_date_line() -> None:
    now = datetime.now(UTC)
    amz_date = format_datetime(now, usegmt=True)
    expected = f"DELETE\n\n\n\nx-amz-date:{amz_date}\n/johnsmith/photos/puppy.jpg"
    signature = independent_signature(DOC_SECRET_KEY, expected)
    request = doc_request(
        "DELETE",
        "/johnsmith/photos/puppy.jpg",
        [
            ("Host", DOC_DOMAIN),
            # A stale Date: x-amz-date takes precedence for the time check too.
            ("Date", "Tue, 27 Mar 2007 21:20:27 +0000"),
            ("x-amz-date", amz_date),
            ("Authorization", f"AWS {DOC_ACCESS_KEY}:{signature}"),
        ],
    )

    assert string_to_sign(request, "", None) == expected
    assert verify_at(request, now, domain=DOC_DOMAIN).access_key == DOC_ACCESS_KEY


# Requests signed by botocore's HmacV1Auth.


@pytest.mark.parametrize(
    ("method", "key", "query", "headers"),
    [
        ("GET", "photos/puppy.jpg", "", {}),
        ("PUT", "a b/ü+x~(1).txt", "", {"Content-Type": "text/plain", "Content-MD5": "x"}),
        ("PUT", "meta", "", {"x-amz-meta-Color": " blue ", "X-Amz-Meta-Size": "2"}),
        ("POST", "multi", "uploads", {"x-amz-meta-a": "1"}),
        ("PUT", "multi", "partNumber=2&uploadId=abc%2Fdef", {}),
        ("GET", "k", "response-content-type=text%2Fx%20y&versionId=null", {}),
        ("DELETE", "k", "versionId=3", {}),
        ("GET", "", "acl", {}),
        ("GET", "", "list-type=2&prefix=a%2Fb&delimiter=%2F", {}),
        ("POST", "", "delete", {"Content-MD5": "abc=="}),
    ],
)
def test_botocore_header_signatures(
    method: str, key: str, query: str, headers: dict[str, str]
) -> None:
    request = sign_v2(method, path_url(LOCAL_ENDPOINT, f"bucket/{key}", query), headers)
    result = verify_at(to_parsed(request))
    assert result.access_key == ACCESS_KEY
    assert result.auth_type is AuthType.AUTHORIZATION_HEADER


def test_botocore_virtual_hosted_style() -> None:
    url = f"http://bucket.s3.test:9000/{quote('a b/c', safe='/')}?uploads"
    request = to_parsed(sign_v2("POST", url, auth_path="/bucket/a%20b/c"))

    assert verify_at(request, domain="s3.test").access_key == ACCESS_KEY
    # Without the domain the bucket is not known, so the signed resource differs.
    assert rejection(request).code == "SignatureDoesNotMatch"


def test_repeated_amz_headers_joined() -> None:
    request = AWSRequest(method="PUT", url=path_url(LOCAL_ENDPOINT, "bucket/k"))
    request.headers.add_header("x-amz-meta-tag", "one")
    request.headers.add_header("x-amz-meta-tag", "two")
    HmacV1Auth(CREDENTIALS).add_auth(request)
    parsed = to_parsed(request)

    assert "x-amz-meta-tag:one,two\n" in string_to_sign(parsed, parsed.headers["Date"], None)
    assert verify_at(parsed).access_key == ACCESS_KEY


def test_unsigned_query_parameters_ignored() -> None:
    url = path_url(LOCAL_ENDPOINT, "bucket", "list-type=2")
    parsed = to_parsed(sign_v2("GET", url, auth_path="/bucket/"))
    extra = ParsedRequest(
        parsed.method, parsed.raw_path, (*parsed.query, ("prefix", "x")), parsed.headers
    )
    assert verify_at(extra).access_key == ACCESS_KEY


def test_added_subresource_breaks_signature() -> None:
    parsed = to_parsed(sign_v2("GET", path_url(LOCAL_ENDPOINT, "bucket/k")))
    extra = ParsedRequest(parsed.method, parsed.raw_path, (("versionId", "other"),), parsed.headers)
    assert rejection(extra).code == "SignatureDoesNotMatch"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-amz-meta-added", "1"),
        ("Content-Type", "text/html"),
        ("Content-MD5", "AAAAAAAAAAAAAAAAAAAAAA=="),
    ],
)
def test_added_signed_header_breaks_signature(name: str, value: str) -> None:
    parsed = to_parsed(sign_v2("PUT", path_url(LOCAL_ENDPOINT, "bucket/k")))
    assert rejection(with_header(parsed, name, value)).code == "SignatureDoesNotMatch"


def test_wrong_secret_and_unknown_key() -> None:
    parsed = to_parsed(sign_v2("GET", path_url(LOCAL_ENDPOINT, "bucket/k")))
    authorization = parsed.headers["Authorization"]

    def with_authorization(value: str) -> ParsedRequest:
        return with_header(parsed, "Authorization", value)

    wrong_signature = with_authorization(authorization[:-5] + "AAAA=")
    unknown_key = with_authorization(authorization.replace(ACCESS_KEY, "AKIDUNKNOWN000000000"))

    mismatch = rejection(wrong_signature)
    assert mismatch.code == "SignatureDoesNotMatch"
    assert mismatch.http_status == 403
    assert mismatch.string_to_sign is not None
    assert mismatch.string_to_sign.endswith("\n/bucket/k")
    assert rejection(unknown_key).code == "InvalidAccessKeyId"


@pytest.mark.parametrize(
    "authorization",
    ["AWS", "AWS AKID", "AWS AKID:", "AWS :c2ln", "AWS  "],
)
def test_malformed_authorization_header(authorization: str) -> None:
    parsed = to_parsed(sign_v2("GET", path_url(LOCAL_ENDPOINT, "bucket/k")))
    error = rejection(with_header(parsed, "Authorization", authorization))
    assert error.code == "InvalidArgument"
    assert error.http_status == 400


@pytest.mark.parametrize(
    "date",
    [
        "yesterday",
        "Tue, 27 Mar 2007 99999999999999999999:00:00 +0000",
        "Tue, 27 Mar 99999999999999999999 10:00:00 +0000",
    ],
)
def test_invalid_date(date: str) -> None:
    parsed = to_parsed(sign_v2("GET", path_url(LOCAL_ENDPOINT, "bucket/k")))
    error = rejection(with_header(parsed, "Date", date))
    assert error.code == "AccessDenied"


def test_missing_date() -> None:
    parsed = to_parsed(sign_v2("GET", path_url(LOCAL_ENDPOINT, "bucket/k")))
    headers = parsed.headers.copy()
    del headers["Date"]
    error = rejection(ParsedRequest("GET", parsed.raw_path, parsed.query, headers))
    assert error.code == "AccessDenied"
    assert "Date or x-amz-date" in error.message


@pytest.mark.parametrize("offset", [timedelta(minutes=16), -timedelta(minutes=16)])
def test_clock_skew(offset: timedelta) -> None:
    parsed = to_parsed(sign_v2("GET", path_url(LOCAL_ENDPOINT, "bucket/k")))
    error = rejection(parsed, datetime.now(UTC) + offset)
    assert error.code == "RequestTimeTooSkewed"
    assert error.http_status == 403


def test_skew_within_limit() -> None:
    parsed = to_parsed(sign_v2("GET", path_url(LOCAL_ENDPOINT, "bucket/k")))
    assert verify_at(parsed, datetime.now(UTC) + timedelta(minutes=14)).access_key == ACCESS_KEY


def test_payload_modes() -> None:
    url = path_url(LOCAL_ENDPOINT, "bucket/k")
    digest = hashlib.sha256(b"body").hexdigest()
    plain = verify_at(to_parsed(sign_v2("PUT", url)))
    with_digest = verify_at(to_parsed(sign_v2("PUT", url, {"x-amz-content-sha256": digest})))
    signed_chunks = to_parsed(
        sign_v2("PUT", url, {"x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"})
    )

    assert plain.payload_mode is PayloadMode.UNSIGNED_PAYLOAD
    assert plain.payload_sha256 is None
    assert with_digest.payload_mode is PayloadMode.SIGNED_PAYLOAD
    assert with_digest.payload_sha256 == digest
    assert rejection(signed_chunks).code == "InvalidArgument"


# Presigned URLs.


@pytest.mark.parametrize(
    ("operation", "params", "method"),
    [
        ("get_object", {"Bucket": "b", "Key": "k"}, "GET"),
        ("put_object", {"Bucket": "b", "Key": "a b/ü+x~(1).txt"}, "PUT"),
        ("head_object", {"Bucket": "b", "Key": "k"}, "HEAD"),
        (
            "get_object",
            {"Bucket": "b", "Key": "k", "ResponseContentType": "text/x y+z; charset=utf-8"},
            "GET",
        ),
        ("upload_part", {"Bucket": "b", "Key": "k", "UploadId": "u/1", "PartNumber": 2}, "PUT"),
        ("list_objects_v2", {"Bucket": "b", "Prefix": "a/"}, "GET"),
    ],
)
def test_boto3_default_presigned_urls(operation: str, params: dict[str, Any], method: str) -> None:
    result = verify_at(presigned_by_boto3(operation, params, method))
    assert result.access_key == ACCESS_KEY
    assert result.auth_type is AuthType.PRESIGNED_URL
    assert result.payload_mode is PayloadMode.UNSIGNED_PAYLOAD


def test_presigned_ignores_date_header() -> None:
    parsed = presign_v2("GET", path_url(LOCAL_ENDPOINT, "bucket/k"))
    stale = with_header(parsed, "Date", "Tue, 27 Mar 2007 19:36:42 +0000")
    assert verify_at(stale).access_key == ACCESS_KEY


def test_bucket_path_signed_with_slash() -> None:
    request = doc_request("GET", "/photos?list-type=2", [("Host", "127.0.0.1:9000")])
    assert string_to_sign(request, "1", None).endswith("\n/photos/")


def test_presigned_expiry_has_no_maximum() -> None:
    parsed = presign_v2("GET", path_url(LOCAL_ENDPOINT, "bucket/k"), expires_s=10 * 365 * 86400)
    assert verify_at(parsed).access_key == ACCESS_KEY


def test_presigned_expired() -> None:
    parsed = presign_v2("GET", path_url(LOCAL_ENDPOINT, "bucket/k"), expires_s=-1)
    error = rejection(parsed)
    assert error.code == "AccessDenied"
    assert error.http_status == 403
    assert "Request has expired" in error.message


@pytest.mark.parametrize("expires", ["soon", "-5", "1.5", "", "9" * 5000, "１２"])
def test_presigned_invalid_expires(expires: str) -> None:
    parsed = presign_v2("GET", path_url(LOCAL_ENDPOINT, "bucket/k"))
    error = rejection(replace_query_value(parsed, "Expires", expires))
    assert error.code == "AccessDenied"
    assert "seconds since epoch" in error.message


@pytest.mark.parametrize("missing", ["Expires", "Signature", "AWSAccessKeyId"])
def test_presigned_missing_parameter(missing: str) -> None:
    parsed = presign_v2("GET", path_url(LOCAL_ENDPOINT, "bucket/k"))
    error = rejection(drop_query(parsed, missing))
    assert error.code == "AccessDenied"
    assert missing in error.message


def test_presigned_repeated_parameter() -> None:
    parsed = presign_v2("GET", path_url(LOCAL_ENDPOINT, "bucket/k"))
    query = (*parsed.query, ("Signature", "other"))
    error = rejection(ParsedRequest("GET", parsed.raw_path, query, parsed.headers))
    assert error.code == "InvalidArgument"


def test_presigned_tampered() -> None:
    parsed = presign_v2("GET", path_url(LOCAL_ENDPOINT, "bucket/k"))
    other_key = ParsedRequest("GET", "/bucket/k2", parsed.query, parsed.headers)
    other_method = ParsedRequest("PUT", parsed.raw_path, parsed.query, parsed.headers)
    other_signature = replace_query_value(parsed, "Signature", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    other_expiry = replace_query_value(parsed, "Expires", "9999999999")

    for request in (other_key, other_method, other_signature, other_expiry):
        assert rejection(request).code == "SignatureDoesNotMatch"


def test_presigned_unknown_key() -> None:
    parsed = presign_v2("GET", path_url(LOCAL_ENDPOINT, "bucket/k"))
    unknown = replace_query_value(parsed, "AWSAccessKeyId", "AKIDUNKNOWN000000000")
    assert rejection(unknown).code == "InvalidAccessKeyId"


def test_only_one_mechanism() -> None:
    presigned = presign_v2("GET", path_url(LOCAL_ENDPOINT, "bucket/k"))
    v2_header = to_parsed(sign_v2("GET", path_url(LOCAL_ENDPOINT, "bucket/k")))
    v4_header = to_parsed(sign_header("GET", path_url(LOCAL_ENDPOINT, "bucket/k")))

    for headers in (v2_header.headers, v4_header.headers):
        both = ParsedRequest("GET", presigned.raw_path, presigned.query, headers.copy())
        assert rejection(both).code == "InvalidArgument"


def test_access_key_of_v2_requests() -> None:
    header = to_parsed(sign_v2("GET", path_url(LOCAL_ENDPOINT, "bucket/k")))
    presigned = presign_v2("GET", path_url(LOCAL_ENDPOINT, "bucket/k"))
    malformed = with_header(header, "Authorization", "AWS nocolon")

    assert access_key_of(header) == ACCESS_KEY
    assert access_key_of(presigned) == ACCESS_KEY
    assert access_key_of(malformed) is None


def test_secret_never_in_messages() -> None:
    parsed = to_parsed(sign_v2("GET", path_url(LOCAL_ENDPOINT, "bucket/k")))
    presigned = presign_v2("GET", path_url(LOCAL_ENDPOINT, "bucket/k"), expires_s=-1)
    signature = parsed.headers["Authorization"].rsplit(":", 1)[1]
    errors = [
        rejection(ParsedRequest("GET", "/x", parsed.query, parsed.headers)),
        rejection(parsed, datetime.now(UTC) + timedelta(hours=1)),
        rejection(presigned),
    ]
    for error in errors:
        assert SECRET_KEY not in str(error)
        assert signature not in str(error)
