"""Tests of store/s3/sigv4.py against requests that botocore signs and the AWS examples.

No request is sent anywhere: botocore signs AWSRequest objects, and boto3 clients
have their requests captured before sending.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import make_mocked_request
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.utils import percent_encode_sequence

from store.s3 import AuthResult, AuthType, ParsedRequest, PayloadMode, S3AuthError, verify
from store.s3.request import parse_query, split_target
from store.s3.signing import canonical_query_string

from .s3_support import (
    ACCESS_KEY,
    AMZ_DATE,
    CREDENTIALS,
    DOC_ACCESS_KEY,
    DOC_TIME,
    EMPTY_SHA256,
    REGION,
    SECRET_KEY,
    SIGNING_TIME,
    boto3_client,
    capture,
    drop_query,
    freeze_botocore_clock,
    lookup_secret,
    path_url,
    presign,
    replace_query_value,
    sign_header,
    sign_streaming,
    to_parsed,
    with_header,
)

ENDPOINT = "https://s3.us-east-1.amazonaws.com"
LOCAL_ENDPOINT = "http://127.0.0.1:9000"


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    freeze_botocore_clock(monkeypatch)


def verify_at(request: ParsedRequest, now: datetime = SIGNING_TIME, **kwargs: Any) -> AuthResult:
    return verify(request, lookup_secret, now, **kwargs)


def rejection(request: ParsedRequest, now: datetime = SIGNING_TIME, **kwargs: Any) -> S3AuthError:
    with pytest.raises(S3AuthError) as caught:
        verify_at(request, now, **kwargs)
    return caught.value


def authorization_with(request: ParsedRequest, old: str, new: str) -> ParsedRequest:
    authorization = request.headers["Authorization"]
    assert old in authorization
    return with_header(request, "Authorization", authorization.replace(old, new))


# Published examples from the AWS S3 API reference, with the example credentials.


def doc_request(method: str, target: str, headers: list[tuple[str, str]]) -> ParsedRequest:
    return ParsedRequest.from_target(
        method, target, [("Host", "examplebucket.s3.amazonaws.com"), *headers]
    )


def doc_authorization(signed_headers: str, signature: str) -> tuple[str, str]:
    credential = f"{DOC_ACCESS_KEY}/20130524/us-east-1/s3/aws4_request"
    value = (
        f"AWS4-HMAC-SHA256 Credential={credential},SignedHeaders={signed_headers},"
        f"Signature={signature}"
    )
    return ("Authorization", value)


def test_aws_example_get_object() -> None:
    request = doc_request(
        "GET",
        "/test.txt",
        [
            ("Range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", "20130524T000000Z"),
            doc_authorization(
                "host;range;x-amz-content-sha256;x-amz-date",
                "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
            ),
        ],
    )
    result = verify(request, lookup_secret, DOC_TIME)
    assert result.access_key == DOC_ACCESS_KEY
    assert result.payload_mode is PayloadMode.SIGNED_PAYLOAD
    assert result.payload_sha256 == EMPTY_SHA256


def test_aws_example_put_object() -> None:
    body_sha256 = hashlib.sha256(b"Welcome to Amazon S3.").hexdigest()
    request = doc_request(
        "PUT",
        "/test%24file.text",
        [
            ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("x-amz-content-sha256", body_sha256),
            doc_authorization(
                "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
                "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
            ),
        ],
    )
    result = verify(request, lookup_secret, DOC_TIME)
    assert result.payload_sha256 == body_sha256


@pytest.mark.parametrize(
    ("target", "signature"),
    [
        ("/?lifecycle", "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"),
        (
            "/?max-keys=2&prefix=J",
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
        ),
    ],
)
def test_aws_example_query_strings(target: str, signature: str) -> None:
    request = doc_request(
        "GET",
        target,
        [
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", "20130524T000000Z"),
            doc_authorization("host;x-amz-content-sha256;x-amz-date", signature),
        ],
    )
    assert verify(request, lookup_secret, DOC_TIME).access_key == DOC_ACCESS_KEY


def test_aws_example_presigned_get() -> None:
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )
    request = doc_request("GET", "/test.txt?" + query, [])
    result = verify(request, lookup_secret, DOC_TIME + timedelta(hours=23))
    assert result.auth_type is AuthType.PRESIGNED_URL
    assert result.payload_mode is PayloadMode.UNSIGNED_PAYLOAD

    error = rejection(request, DOC_TIME + timedelta(seconds=86401))
    assert error.code == "AccessDenied"
    assert error.message.startswith("Request has expired")


# Requests signed by botocore's S3SigV4Auth.


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "POST", "DELETE"])
def test_header_auth_methods(method: str) -> None:
    body = b"some bytes" if method in ("PUT", "POST") else b""
    signed = sign_header(method, path_url(LOCAL_ENDPOINT, "bucket/key.txt"), body=body)
    result = verify_at(to_parsed(signed))
    assert result.access_key == ACCESS_KEY
    assert result.auth_type is AuthType.AUTHORIZATION_HEADER
    assert result.payload_mode is PayloadMode.SIGNED_PAYLOAD
    assert result.payload_sha256 == hashlib.sha256(body).hexdigest()
    assert result.amz_date == AMZ_DATE
    assert result.region == REGION
    assert result.scope == f"{AMZ_DATE[:8]}/{REGION}/s3/aws4_request"


KEYS = [
    "plain.txt",
    "with space/and more spaces.txt",
    "unicode/ünïcødé/日本語/😀.bin",
    "plus+sign+key",
    "percent%25and%literal",
    "equals=sign=key",
    "tilde~key~",
    "every!$&'()*,;:@char",
    "double//slash//key",
    "dots/./and/../segments",
    "trailing/slash/",
    "question?mark#hash",
]


SIGNERS = ["botocore", "awscrt"]


@pytest.mark.parametrize("signer", SIGNERS)
@pytest.mark.parametrize("key", KEYS)
def test_keys_path_style(key: str, signer: str) -> None:
    signed = sign_header("PUT", path_url(ENDPOINT, f"bucket/{key}"), body=b"x", signer=signer)
    assert verify_at(to_parsed(signed)).access_key == ACCESS_KEY


@pytest.mark.parametrize("signer", SIGNERS)
@pytest.mark.parametrize("key", KEYS)
def test_keys_virtual_hosted_style(key: str, signer: str) -> None:
    url = path_url("https://bucket.s3.us-east-1.amazonaws.com", key)
    signed = sign_header("GET", url, signer=signer)
    parsed = to_parsed(signed)
    assert parsed.headers["Host"] == "bucket.s3.us-east-1.amazonaws.com"
    assert verify_at(parsed).access_key == ACCESS_KEY


QUERIES = [
    [("list-type", "2"), ("prefix", "a b"), ("delimiter", "/")],
    [("prefix", "a b"), ("list-type", "2"), ("delimiter", "/"), ("encoding-type", "url")],
    [("versionId", "")],
    [("a", "2"), ("a", "1"), ("a", "")],
    [("Z", "upper"), ("a", "lower"), ("_", "underscore"), ("~", "tilde")],
    # Encoding changes the order: "/" sorts after "-" but "%2F" sorts before it.
    [("a/", "1"), ("a-", "2"), ("é", "3"), ("~", "4"), ("k", "/"), ("k", "-")],
    [("prefix", "ünïcødé/日本")],
    [("prefix", "plus+and%percent=equals&amp")],
    [("response-content-disposition", 'attachment; filename="a b.txt"')],
    [("start-after", "~!*'()")],
]


@pytest.mark.parametrize("signer", SIGNERS)
@pytest.mark.parametrize("params", QUERIES)
def test_query_strings(params: list[tuple[str, str]], signer: str) -> None:
    query = percent_encode_sequence(params)
    signed = sign_header("GET", path_url(ENDPOINT, "bucket", query), signer=signer)
    parsed = to_parsed(signed)
    assert list(parsed.query) == params
    assert verify_at(parsed).access_key == ACCESS_KEY


@pytest.mark.parametrize("signer", SIGNERS)
@pytest.mark.parametrize("raw_query", ["acl", "uploads", "tagging&versionId=v1", "delete="])
def test_query_parameters_without_value(raw_query: str, signer: str) -> None:
    signed = sign_header("GET", path_url(ENDPOINT, "bucket/key", raw_query), signer=signer)
    assert verify_at(to_parsed(signed)).access_key == ACCESS_KEY


def test_local_endpoint_with_port() -> None:
    signed = sign_header("GET", path_url(LOCAL_ENDPOINT, "bucket/key"))
    parsed = to_parsed(signed)
    assert parsed.headers["Host"] == "127.0.0.1:9000"
    assert verify_at(parsed).access_key == ACCESS_KEY


def test_unsigned_headers_added_after_signing() -> None:
    signed = sign_header("GET", path_url(ENDPOINT, "bucket/key"))
    extra = [
        ("User-Agent", "curl/8.0"),
        ("X-Forwarded-For", "127.0.0.1"),
        ("Accept-Encoding", "gzip"),
        ("Connection", "keep-alive"),
        ("x-amzn-trace-id", "Root=1-abc"),
    ]
    assert verify_at(to_parsed(signed, extra)).access_key == ACCESS_KEY


def test_unsigned_amz_header_is_rejected() -> None:
    signed = sign_header("PUT", path_url(ENDPOINT, "bucket/key"), body=b"x")
    error = rejection(to_parsed(signed, [("x-amz-meta-added", "later")]))
    assert error.code == "AccessDenied"
    assert error.http_status == 403
    assert "x-amz-meta-added" in error.message


def test_signed_amz_headers_and_whitespace() -> None:
    headers = {
        "x-amz-meta-spaced": "  inner    spaces\tand tab  ",
        "x-amz-storage-class": "STANDARD",
        "Content-Type": "text/plain; charset=utf-8",
    }
    signed = sign_header("PUT", path_url(ENDPOINT, "bucket/key"), headers, body=b"x")
    assert verify_at(to_parsed(signed)).access_key == ACCESS_KEY


def test_repeated_signed_header() -> None:
    request = AWSRequest(method="PUT", url=path_url(ENDPOINT, "bucket/key"), data=b"x")
    # botocore's header map appends on assignment, so the request carries both values.
    request.headers["x-amz-meta-multi"] = "first"
    request.headers["x-amz-meta-multi"] = "second"
    S3SigV4Auth(CREDENTIALS, "s3", REGION).add_auth(request)
    parsed = to_parsed(request)
    assert parsed.headers.getall("x-amz-meta-multi") == ["first", "second"]
    assert verify_at(parsed).access_key == ACCESS_KEY


def test_unsigned_payload_over_https() -> None:
    signed = sign_header(
        "PUT", path_url(ENDPOINT, "bucket/key"), body=b"not hashed", unsigned_payload=True
    )
    result = verify_at(to_parsed(signed))
    assert result.payload_mode is PayloadMode.UNSIGNED_PAYLOAD
    assert result.payload_sha256 is None


def test_date_header_instead_of_amz_date() -> None:
    # botocore signs with the Date header, and no X-Amz-Date, when the request has one.
    signed = sign_header(
        "GET", path_url(ENDPOINT, "bucket/key"), {"Date": "Mon, 01 Jan 2024 00:00:00 GMT"}
    )
    parsed = to_parsed(signed)
    assert "x-amz-date" not in parsed.headers
    assert verify_at(parsed).amz_date == AMZ_DATE


@pytest.mark.parametrize(
    ("literal", "mode"),
    [
        ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", PayloadMode.STREAMING_SIGNED),
        ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", PayloadMode.STREAMING_SIGNED_TRAILER),
        ("STREAMING-UNSIGNED-PAYLOAD-TRAILER", PayloadMode.STREAMING_UNSIGNED_TRAILER),
        ("UNSIGNED-PAYLOAD", PayloadMode.UNSIGNED_PAYLOAD),
    ],
)
def test_streaming_payload_modes(literal: str, mode: PayloadMode) -> None:
    headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": "10"}
    signed, seed = sign_streaming(path_url(ENDPOINT, "bucket/key"), literal, headers)
    result = verify_at(to_parsed(signed))
    assert result.payload_mode is mode
    assert result.seed_signature == seed
    assert result.signing_key is not None
    assert "signing_key" not in repr(result)


# Requests captured from a boto3 client.


def boto3_operations(client: Any) -> dict[str, Any]:
    return {
        "get_object": lambda: client.get_object(Bucket="bucket", Key="dir/a b+c.txt"),
        "head_object": lambda: client.head_object(Bucket="bucket", Key="ü"),
        "delete_object": lambda: client.delete_object(Bucket="bucket", Key="k", VersionId="v 1"),
        "list_objects_v2": lambda: client.list_objects_v2(
            Bucket="bucket", Prefix="a b", Delimiter="/", StartAfter="a b/~x"
        ),
        "put_object": lambda: client.put_object(
            Bucket="bucket", Key="k=1", Body=b"payload" * 100, Metadata={"owner": "me"}
        ),
        "copy_object": lambda: client.copy_object(
            Bucket="bucket", Key="copy", CopySource={"Bucket": "src", "Key": "a b"}
        ),
        "create_multipart_upload": lambda: client.create_multipart_upload(
            Bucket="bucket", Key="big"
        ),
        "upload_part": lambda: client.upload_part(
            Bucket="bucket", Key="big", UploadId="id/+=", PartNumber=3, Body=b"part"
        ),
        "delete_objects": lambda: client.delete_objects(
            Bucket="bucket", Delete={"Objects": [{"Key": "a"}, {"Key": "b c"}]}
        ),
        "put_object_tagging": lambda: client.put_object_tagging(
            Bucket="bucket", Key="k", Tagging={"TagSet": [{"Key": "t", "Value": "v"}]}
        ),
    }


OPERATION_NAMES = list(boto3_operations(None).keys())


@pytest.mark.parametrize("endpoint", [LOCAL_ENDPOINT, "https://127.0.0.1:9443"])
@pytest.mark.parametrize("operation", OPERATION_NAMES)
def test_boto3_path_style_operations(endpoint: str, operation: str) -> None:
    client = boto3_client(endpoint)
    request, _ = capture(boto3_operations(client)[operation])
    result = verify_at(to_parsed(request))
    assert result.access_key == ACCESS_KEY


@pytest.mark.parametrize("operation", OPERATION_NAMES)
def test_boto3_virtual_hosted_operations(operation: str) -> None:
    client = boto3_client("https://s3.us-east-1.amazonaws.com", addressing_style="virtual")
    request, _ = capture(boto3_operations(client)[operation])
    parsed = to_parsed(request)
    assert parsed.headers["host"].startswith("bucket.")
    assert verify_at(parsed).access_key == ACCESS_KEY


def test_boto3_put_over_https_uses_trailer() -> None:
    client = boto3_client("https://127.0.0.1:9443")
    request, _ = capture(lambda: client.put_object(Bucket="b", Key="k", Body=b"x" * 10))
    result = verify_at(to_parsed(request))
    assert result.payload_mode is PayloadMode.STREAMING_UNSIGNED_TRAILER


# Presigned URLs.


@pytest.mark.parametrize("signer", SIGNERS)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD"])
def test_presigned_methods(method: str, signer: str) -> None:
    signed = presign(method, path_url(ENDPOINT, "bucket/a b/ü+%.txt"), signer=signer)
    result = verify_at(to_parsed(signed), SIGNING_TIME + timedelta(minutes=30))
    assert result.auth_type is AuthType.PRESIGNED_URL
    assert result.access_key == ACCESS_KEY
    assert result.payload_mode is PayloadMode.UNSIGNED_PAYLOAD


@pytest.mark.parametrize("signer", SIGNERS)
def test_presigned_with_operation_query(signer: str) -> None:
    query = percent_encode_sequence([("response-content-type", "text/plain"), ("versionId", "")])
    signed = presign("GET", path_url(ENDPOINT, "bucket/key", query), signer=signer)
    assert verify_at(to_parsed(signed)).access_key == ACCESS_KEY


def test_presigned_by_boto3_client() -> None:
    client = boto3_client(LOCAL_ENDPOINT)
    urls = [
        client.generate_presigned_url(
            "get_object", Params={"Bucket": "bucket", "Key": "a b/c+d"}, ExpiresIn=600
        ),
        client.generate_presigned_url(
            "put_object", Params={"Bucket": "bucket", "Key": "ü~"}, ExpiresIn=600
        ),
    ]
    for url, method in zip(urls, ["GET", "PUT"], strict=True):
        target = url.removeprefix(LOCAL_ENDPOINT)
        parsed = ParsedRequest.from_target(method, target, [("Host", "127.0.0.1:9000")])
        assert verify_at(parsed).auth_type is AuthType.PRESIGNED_URL


def test_presigned_extra_headers_accepted() -> None:
    signed = presign("PUT", path_url(ENDPOINT, "bucket/key"))
    extra = [("Content-Type", "application/octet-stream"), ("Content-Length", "5")]
    assert verify_at(to_parsed(signed, extra)).access_key == ACCESS_KEY


def test_presigned_hash_header_sets_payload_mode() -> None:
    signed = presign("PUT", path_url(ENDPOINT, "bucket/key"))
    digest = hashlib.sha256(b"body").hexdigest()
    result = verify_at(to_parsed(signed, [("x-amz-content-sha256", digest)]))
    assert result.payload_mode is PayloadMode.SIGNED_PAYLOAD
    assert result.payload_sha256 == digest


def test_presigned_expired() -> None:
    signed = presign("GET", path_url(ENDPOINT, "bucket/key"), expires_s=60)
    parsed = to_parsed(signed)
    assert verify_at(parsed, SIGNING_TIME + timedelta(seconds=60)).access_key == ACCESS_KEY
    error = rejection(parsed, SIGNING_TIME + timedelta(seconds=61))
    assert error.code == "AccessDenied"
    assert error.http_status == 403
    assert error.message.startswith("Request has expired")


def test_presigned_expires_over_seven_days() -> None:
    week_s = 7 * 24 * 3600
    assert verify_at(to_parsed(presign("GET", path_url(ENDPOINT, "b/k"), week_s))).access_key
    error = rejection(to_parsed(presign("GET", path_url(ENDPOINT, "b/k"), week_s + 1)))
    assert error.code == "AuthorizationQueryParametersError"
    assert error.http_status == 400
    assert "604800" in error.message


def test_presigned_not_valid_yet() -> None:
    parsed = to_parsed(presign("GET", path_url(ENDPOINT, "bucket/key")))
    assert verify_at(parsed, SIGNING_TIME - timedelta(minutes=14)).access_key == ACCESS_KEY
    error = rejection(parsed, SIGNING_TIME - timedelta(minutes=16))
    assert error.code == "AccessDenied"
    assert "not valid yet" in error.message


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA1", "AuthorizationQueryParametersError"),
        ("X-Amz-Expires", "soon", "AuthorizationQueryParametersError"),
        ("X-Amz-Expires", "-1", "AuthorizationQueryParametersError"),
        ("X-Amz-Date", "2026-03-01T12:00:00Z", "AuthorizationQueryParametersError"),
        ("X-Amz-Credential", "only/three/parts", "AuthorizationQueryParametersError"),
        ("X-Amz-SignedHeaders", "x-amz-date", "AuthorizationQueryParametersError"),
        ("X-Amz-Signature", "A" * 64, "AuthorizationQueryParametersError"),
        ("X-Amz-Signature", "0" * 64, "SignatureDoesNotMatch"),
    ],
)
def test_presigned_bad_parameters(name: str, value: str, code: str) -> None:
    parsed = replace_query_value(to_parsed(presign("GET", path_url(ENDPOINT, "b/k"))), name, value)
    assert rejection(parsed).code == code


def test_presigned_missing_parameter() -> None:
    parsed = drop_query(to_parsed(presign("GET", path_url(ENDPOINT, "b/k"))), "X-Amz-Expires")
    error = rejection(parsed)
    assert error.code == "AuthorizationQueryParametersError"
    assert "X-Amz-Expires" in error.message


def test_presigned_tampered_path() -> None:
    parsed = to_parsed(presign("GET", path_url(ENDPOINT, "bucket/key")))
    tampered = ParsedRequest(parsed.method, "/bucket/other", parsed.query, parsed.headers)
    assert rejection(tampered).code == "SignatureDoesNotMatch"


def test_presigned_signed_streaming_rejected() -> None:
    parsed = to_parsed(
        presign("PUT", path_url(ENDPOINT, "b/k")),
        [("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")],
    )
    error = rejection(parsed)
    assert error.code == "InvalidArgument"
    assert "Authorization header" in error.message


# Rejections of header-signed requests.


@pytest.mark.parametrize("offset", [timedelta(minutes=16), -timedelta(minutes=16)])
def test_clock_skew_rejected(offset: timedelta) -> None:
    parsed = to_parsed(sign_header("GET", path_url(ENDPOINT, "bucket/key")))
    error = rejection(parsed, SIGNING_TIME + offset)
    assert error.code == "RequestTimeTooSkewed"
    assert error.http_status == 403
    assert AMZ_DATE in error.message


@pytest.mark.parametrize("offset", [timedelta(minutes=14), -timedelta(minutes=14)])
def test_clock_skew_within_limit(offset: timedelta) -> None:
    parsed = to_parsed(sign_header("GET", path_url(ENDPOINT, "bucket/key")))
    assert verify_at(parsed, SIGNING_TIME + offset).access_key == ACCESS_KEY


def test_clock_skew_custom_limit() -> None:
    parsed = to_parsed(sign_header("GET", path_url(ENDPOINT, "bucket/key")))
    error = rejection(parsed, SIGNING_TIME + timedelta(seconds=61), max_skew_s=60)
    assert error.code == "RequestTimeTooSkewed"


def test_unknown_access_key() -> None:
    parsed = to_parsed(sign_header("GET", path_url(ENDPOINT, "bucket/key")))
    with pytest.raises(S3AuthError) as caught:
        verify(parsed, lambda access_key: None, SIGNING_TIME)
    assert caught.value.code == "InvalidAccessKeyId"
    assert caught.value.http_status == 403
    assert ACCESS_KEY in caught.value.message


def test_lookup_called_with_access_key() -> None:
    parsed = to_parsed(sign_header("GET", path_url(ENDPOINT, "bucket/key")))
    calls: list[str] = []

    def recording_lookup(access_key: str) -> str | None:
        calls.append(access_key)
        return SECRET_KEY

    verify(parsed, recording_lookup, SIGNING_TIME)
    assert calls == [ACCESS_KEY]


def tampered_requests() -> dict[str, ParsedRequest]:
    query = percent_encode_sequence([("list-type", "2"), ("prefix", "a")])
    signed = sign_header(
        "GET", path_url(ENDPOINT, "bucket/key", query), {"x-amz-meta-a": "1", "Range": "bytes=0-9"}
    )
    parsed = to_parsed(signed)
    other_query = (("list-type", "2"), ("prefix", "b"))
    return {
        "path": ParsedRequest("GET", "/bucket/kez", parsed.query, parsed.headers),
        "path-encoding": ParsedRequest("GET", "/bucket/%6Bey", parsed.query, parsed.headers),
        "method": ParsedRequest("PUT", parsed.raw_path, parsed.query, parsed.headers),
        "query-value": ParsedRequest("GET", parsed.raw_path, other_query, parsed.headers),
        "query-added": ParsedRequest(
            "GET", parsed.raw_path, (*parsed.query, ("x", "")), parsed.headers
        ),
        "header": with_header(parsed, "x-amz-meta-a", "2"),
        "range": with_header(parsed, "Range", "bytes=0-99"),
        "host": with_header(parsed, "Host", "evil.example.com"),
        "payload-hash": with_header(parsed, "x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        "signature": with_header(
            parsed, "Authorization", flip_last_hex_digit(parsed.headers["Authorization"])
        ),
    }


def flip_last_hex_digit(text: str) -> str:
    return text[:-1] + ("1" if text[-1] == "0" else "0")


@pytest.mark.parametrize("part", list(tampered_requests()))
def test_tampered_request(part: str) -> None:
    error = rejection(tampered_requests()[part])
    assert error.code == "SignatureDoesNotMatch"
    assert error.http_status == 403
    assert error.canonical_request is not None
    assert error.string_to_sign is not None
    assert error.string_to_sign.startswith("AWS4-HMAC-SHA256\n")
    assert SECRET_KEY not in error.message
    assert error.canonical_request not in str(error)


def test_signature_mismatch_debug_fields() -> None:
    parsed = with_header(
        to_parsed(sign_header("GET", path_url(ENDPOINT, "bucket/key"))), "x-amz-date", AMZ_DATE
    )
    tampered = ParsedRequest("GET", "/bucket/other", parsed.query, parsed.headers)
    error = rejection(tampered)
    assert error.canonical_request is not None
    assert error.canonical_request.splitlines()[:2] == ["GET", "/bucket/other"]


def test_missing_host_in_signed_headers() -> None:
    parsed = to_parsed(sign_header("GET", path_url(ENDPOINT, "bucket/key")))
    tampered = authorization_with(
        parsed, "SignedHeaders=host;x-amz-content-sha256", "SignedHeaders=x-amz-content-sha256"
    )
    error = rejection(tampered)
    assert error.code == "AuthorizationHeaderMalformed"
    assert error.http_status == 400
    assert "host" in error.message


def test_signed_header_missing_from_request() -> None:
    signed = sign_header("GET", path_url(ENDPOINT, "bucket/key"), {"Range": "bytes=0-1"})
    parsed = to_parsed(signed)
    headers = parsed.headers.copy()
    del headers["Range"]
    error = rejection(ParsedRequest(parsed.method, parsed.raw_path, parsed.query, headers))
    assert error.code == "AccessDenied"
    assert "range" in error.message


def test_credential_date_mismatch() -> None:
    parsed = to_parsed(sign_header("GET", path_url(ENDPOINT, "bucket/key")))
    error = rejection(authorization_with(parsed, f"/{AMZ_DATE[:8]}/", "/20260302/"))
    assert error.code == "AuthorizationHeaderMalformed"
    assert "20260302" in error.message


def test_wrong_service() -> None:
    parsed = to_parsed(sign_header("GET", path_url(ENDPOINT, "bucket/key")))
    error = rejection(authorization_with(parsed, "/s3/aws4_request", "/ec2/aws4_request"))
    assert error.code == "AuthorizationHeaderMalformed"
    assert "ec2" in error.message


def test_region_enforced_when_given() -> None:
    signed = sign_header("GET", path_url(ENDPOINT, "bucket/key"), region="eu-west-1")
    parsed = to_parsed(signed)
    assert verify_at(parsed).region == "eu-west-1"
    assert verify_at(parsed, region="eu-west-1").region == "eu-west-1"
    error = rejection(parsed, region="us-east-1")
    assert error.code == "AuthorizationHeaderMalformed"
    assert "eu-west-1" in error.message


def test_missing_content_sha256_header() -> None:
    parsed = to_parsed(sign_header("GET", path_url(ENDPOINT, "bucket/key")))
    headers = parsed.headers.copy()
    del headers["x-amz-content-sha256"]
    error = rejection(ParsedRequest(parsed.method, parsed.raw_path, parsed.query, headers))
    assert error.code == "MissingSecurityHeader"
    assert error.http_status == 400


def test_invalid_content_sha256_value() -> None:
    parsed = to_parsed(sign_header("GET", path_url(ENDPOINT, "bucket/key")))
    error = rejection(with_header(parsed, "x-amz-content-sha256", "not-a-hash"))
    assert error.code == "InvalidArgument"
    assert "not-a-hash" in error.message


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("Signature=", "Sig="),
        ("SignedHeaders=", "Headers="),
        ("Credential=AKID", "Credential=/AKID"),
        (", Signature=", ", Credential=x, Signature="),
        ("/aws4_request", "/aws5_request"),
        ("SignedHeaders=host;", "SignedHeaders=Host;"),
        ("SignedHeaders=host;", "SignedHeaders=host;host;"),
    ],
)
def test_malformed_authorization(old: str, new: str) -> None:
    parsed = to_parsed(sign_header("GET", path_url(ENDPOINT, "bucket/key")))
    error = rejection(authorization_with(parsed, old, new))
    assert error.code == "AuthorizationHeaderMalformed"
    assert error.http_status == 400


def test_uppercase_signature_malformed() -> None:
    parsed = to_parsed(sign_header("GET", path_url(ENDPOINT, "bucket/key")))
    authorization = parsed.headers["Authorization"]
    head, signature = authorization.rsplit("Signature=", 1)
    error = rejection(with_header(parsed, "Authorization", f"{head}Signature={signature.upper()}"))
    assert error.code == "AuthorizationHeaderMalformed"


def test_authorization_without_spaces() -> None:
    parsed = to_parsed(sign_header("GET", path_url(ENDPOINT, "bucket/key")))
    compact = parsed.headers["Authorization"].replace(", ", ",")
    assert verify_at(with_header(parsed, "Authorization", compact)).access_key == ACCESS_KEY


def test_missing_request_date() -> None:
    parsed = to_parsed(sign_header("GET", path_url(ENDPOINT, "bucket/key")))
    headers = parsed.headers.copy()
    del headers["X-Amz-Date"]
    error = rejection(ParsedRequest(parsed.method, parsed.raw_path, parsed.query, headers))
    assert error.code == "AccessDenied"
    assert "x-amz-date" in error.message


def test_invalid_amz_date() -> None:
    parsed = to_parsed(sign_header("GET", path_url(ENDPOINT, "bucket/key")))
    error = rejection(with_header(parsed, "X-Amz-Date", "20261301T000000Z"))
    assert error.code == "AccessDenied"


def test_header_and_query_auth_together() -> None:
    signed = sign_header("GET", path_url(ENDPOINT, "bucket/key"))
    presigned = to_parsed(presign("GET", path_url(ENDPOINT, "bucket/key")))
    both = ParsedRequest(
        "GET", presigned.raw_path, presigned.query, to_parsed(signed).headers.copy()
    )
    error = rejection(both)
    assert error.code == "InvalidArgument"


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        ("AWS4-ECDSA-P256-SHA256 Credential=x", "InvalidRequest"),
        ("Bearer abc", "InvalidArgument"),
    ],
)
def test_unsupported_authorization_types(authorization: str, code: str) -> None:
    parsed = ParsedRequest.from_target(
        "GET", "/bucket/key", [("Host", "h"), ("Authorization", authorization)]
    )
    assert rejection(parsed).code == code


def test_repeated_authorization_header() -> None:
    parsed = to_parsed(sign_header("GET", path_url(ENDPOINT, "bucket/key")))
    headers = parsed.headers.copy()
    headers.add("Authorization", headers["Authorization"])
    error = rejection(ParsedRequest(parsed.method, parsed.raw_path, parsed.query, headers))
    assert error.code == "InvalidArgument"


def test_naive_now_rejected() -> None:
    parsed = to_parsed(sign_header("GET", path_url(ENDPOINT, "bucket/key")))
    with pytest.raises(ValueError, match="timezone-aware"):
        verify(parsed, lookup_secret, datetime(2026, 3, 1, 12, 0, 0))


def test_secret_never_in_messages() -> None:
    parsed = to_parsed(sign_header("GET", path_url(ENDPOINT, "bucket/key")))
    errors = [
        rejection(parsed, SIGNING_TIME + timedelta(hours=1)),
        rejection(ParsedRequest("GET", "/x", parsed.query, parsed.headers)),
        rejection(parsed, region="eu-west-1"),
    ]
    for error in errors:
        assert SECRET_KEY not in error.message
        assert SECRET_KEY not in str(error)
        assert SECRET_KEY not in repr(error.args)


# Anonymous requests.


def test_anonymous_request() -> None:
    parsed = ParsedRequest.from_target("GET", "/bucket/key?list-type=2", [("Host", "h")])
    result = verify_at(parsed)
    assert result.access_key is None
    assert result.auth_type is AuthType.ANONYMOUS
    assert result.payload_mode is PayloadMode.UNSIGNED_PAYLOAD
    assert result.signing_key is None


def test_anonymous_with_content_hash() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    parsed = ParsedRequest.from_target(
        "PUT", "/bucket/key", [("Host", "h"), ("x-amz-content-sha256", digest)]
    )
    result = verify_at(parsed)
    assert result.payload_mode is PayloadMode.SIGNED_PAYLOAD
    assert result.payload_sha256 == digest


def test_anonymous_signed_streaming_rejected() -> None:
    parsed = ParsedRequest.from_target(
        "PUT",
        "/bucket/key",
        [("Host", "h"), ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")],
    )
    assert rejection(parsed).code == "InvalidArgument"


# The request abstraction.


def test_from_aiohttp_request() -> None:
    signed = sign_header(
        "GET",
        path_url(ENDPOINT, "bucket/a b+c", percent_encode_sequence([("prefix", "x y")])),
        {"x-amz-meta-k": "v"},
    )
    parsed_direct = to_parsed(signed)
    target = parsed_direct.raw_path + "?" + percent_encode_sequence([("prefix", "x y")])
    aiohttp_request = make_mocked_request("GET", target, headers=parsed_direct.headers.copy())
    parsed = ParsedRequest.from_aiohttp(aiohttp_request)
    assert parsed.raw_path == "/bucket/a%20b%2Bc"
    assert parsed.query == (("prefix", "x y"),)
    assert parsed.headers["x-amz-meta-k"] == "v"
    assert verify_at(parsed).access_key == ACCESS_KEY


def test_split_target_forms() -> None:
    assert split_target("/b/k?x=1&y") == ("/b/k", "x=1&y")
    assert split_target("/b/k") == ("/b/k", "")
    assert split_target("http://Host:9000/b/k?x=1") == ("/b/k", "x=1")
    assert split_target("https://host?x=1") == ("/", "x=1")
    assert split_target("/b/k?x=a?b") == ("/b/k", "x=a?b")


def test_parse_query_decoding() -> None:
    assert parse_query("a=1&&b&c=") == (("a", "1"), ("b", ""), ("c", ""))
    assert parse_query("p=a+b%2Bc%20d") == (("p", "a b+c d"),)
    assert parse_query("k%3D=v%26") == (("k=", "v&"),)
    assert parse_query("u=%C3%BC") == (("u", "ü"),)


def test_invalid_utf8_query_round_trips() -> None:
    pairs = parse_query("bad=%FF%FE&ok=%41")
    assert canonical_query_string(pairs) == "bad=%FF%FE&ok=A"


def test_encoded_key_in_query_signs() -> None:
    key = quote("a b/ü", safe="")
    signed = sign_header("GET", path_url(ENDPOINT, "bucket", f"start-after={key}&list-type=2"))
    assert verify_at(to_parsed(signed)).access_key == ACCESS_KEY
