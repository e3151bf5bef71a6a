"""Authentication and authorization at the gateway: SigV4 headers, presigned URLs used
with plain HTTP, every payload mode, clock skew, users and bucket ownership."""

from __future__ import annotations

import base64
import hashlib
import http.client
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import botocore.auth
import botocore.credentials
import botocore.crt.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError

import store

from .s3_support import ChunkSigningContext, encode_signed_chunks, spec_signing_key, split_evenly
from .s3gw_support import (
    DOMAIN,
    REGION,
    GatewayInfo,
    crc32_header,
    http_get,
    object_url,
    s3_client,
    send,
    sign,
)
from .support import MIB, make_data, new_bucket_name


def error_code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


def set_signing_time(monkeypatch: pytest.MonkeyPatch, moment: datetime) -> None:
    """Make botocore's signers, pure-Python and awscrt alike, sign at `moment`."""

    def fixed_now(remove_tzinfo: bool = True) -> datetime:
        return moment.replace(tzinfo=None) if remove_tzinfo else moment

    monkeypatch.setattr(botocore.auth, "get_current_datetime", fixed_now)
    monkeypatch.setattr(botocore.crt.auth, "get_current_datetime", fixed_now)


@pytest.fixture
def user(client: store.Client) -> store.types.UserInfo:
    """A new user (not root) of the shared cluster."""
    return client.create_user(new_bucket_name("user"))


def test_presigned_get_and_put(s3: Any, s3_bucket: str) -> None:
    data = make_data(2 * MIB, seed=20)
    put_url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": s3_bucket, "Key": "pre"}, ExpiresIn=300
    )
    assert http_get(put_url, data=data, method="PUT").status == 200

    get_url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": s3_bucket, "Key": "pre"}, ExpiresIn=300
    )
    reply = http_get(get_url)

    assert reply.status == 200
    assert reply.body == data
    assert reply.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'


def test_presigned_put_chunked_transfer(s3: Any, s3_bucket: str) -> None:
    """A body framed by HTTP chunked transfer coding needs no Content-Length."""
    data = make_data(3 * MIB + 5, seed=21)
    put_url = urlsplit(
        s3.generate_presigned_url(
            "put_object", Params={"Bucket": s3_bucket, "Key": "chunked"}, ExpiresIn=300
        )
    )
    connection = http.client.HTTPConnection(put_url.netloc, timeout=30)
    pieces = (data[start : start + 100_000] for start in range(0, len(data), 100_000))

    connection.request("PUT", f"{put_url.path}?{put_url.query}", body=pieces, encode_chunked=True)
    response = connection.getresponse()
    response.read()
    connection.close()

    assert response.status == 200
    assert s3.get_object(Bucket=s3_bucket, Key="chunked")["Body"].read() == data


def presign_query(gateway: GatewayInfo, method: str, path: str, **query: str) -> str:
    """Presign a URL whose query already carries `query`, as the JavaScript SDK does.

    botocore signs x-amz-* values as headers; the SDKs for JavaScript and Go move them into
    the query string. Underscores in the names become hyphens.
    """
    params = {"X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD"}
    params.update({name.replace("_", "-"): value for name, value in query.items()})
    credentials = botocore.credentials.Credentials(gateway.access_key, gateway.secret_key)
    request = AWSRequest(method=method, url=f"{gateway.endpoint}{path}?{urlencode(params)}")
    botocore.auth.S3SigV4QueryAuth(credentials, "s3", REGION, expires=300).add_auth(request)
    return str(request.url)


def test_presigned_url_headers_in_query(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    """The x-amz-* parameters of a presigned URL act as the headers of the same names."""
    data = make_data(MIB + 3, seed=22)
    checksum = crc32_header(data)
    put_url = presign_query(
        gateway,
        "PUT",
        f"/{s3_bucket}/hoisted",
        x_amz_meta_owner="ann",
        x_amz_checksum_crc32=checksum,
        x_amz_sdk_checksum_algorithm="CRC32",
    )
    # The JavaScript SDK signs the CRC32 of an empty body into a presigned PUT by default.
    wrong_url = presign_query(
        gateway, "PUT", f"/{s3_bucket}/wrong", x_amz_checksum_crc32=crc32_header(b"")
    )
    get_url = presign_query(gateway, "GET", f"/{s3_bucket}/hoisted", x_amz_checksum_mode="ENABLED")
    copy_url = presign_query(
        gateway, "PUT", f"/{s3_bucket}/copy", x_amz_copy_source=f"{s3_bucket}/hoisted"
    )

    put = http_get(put_url, data=data, method="PUT")
    wrong = http_get(wrong_url, data=data, method="PUT")
    got = http_get(get_url)
    copied = http_get(copy_url, data=b"", method="PUT")

    assert put.status == 200, put.body
    assert (wrong.status, wrong.code) == (400, "BadDigest")
    assert got.status == 200, got.body
    assert got.body == data
    assert got.headers["x-amz-checksum-crc32"] == checksum
    assert s3.head_object(Bucket=s3_bucket, Key="hoisted")["Metadata"] == {"owner": "ann"}
    assert copied.status == 200, copied.body
    assert s3.get_object(Bucket=s3_bucket, Key="copy")["Body"].read() == data
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys == ["copy", "hoisted"], "the PUT with the wrong checksum stored an object"


def test_presigned_url_errors(s3: Any, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    s3.put_object(Bucket=s3_bucket, Key="pre", Body=b"secret data")
    params = {"Bucket": s3_bucket, "Key": "pre"}

    tampered = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=300)
    tampered = tampered.replace("/pre?", "/pre2?")
    too_long = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=8 * 24 * 3600)
    set_signing_time(monkeypatch, datetime.now(UTC) - timedelta(hours=2))
    expired = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=60)
    monkeypatch.undo()

    for url, status, code in (
        (tampered, 403, "SignatureDoesNotMatch"),
        (too_long, 400, "AuthorizationQueryParametersError"),
        (expired, 403, "AccessDenied"),
    ):
        reply = http_get(url)
        assert reply.status == status, url
        assert reply.code == code
        assert b"secret data" not in reply.body


def test_presigned_put_tampered_writes_nothing(s3: Any, s3_bucket: str) -> None:
    url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": s3_bucket, "Key": "p"}, ExpiresIn=300
    )
    reply = http_get(url.replace("/p?", "/q?"), data=b"x", method="PUT")
    assert reply.code == "SignatureDoesNotMatch"
    assert s3.list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0


def test_wrong_secret_and_unknown_key(gateway: GatewayInfo, s3_bucket: str, s3: Any) -> None:
    wrong_secret = s3_client(gateway, secret_key="x" * 40)
    unknown_key = s3_client(gateway, access_key="STORUNKNOWNKEY000000", secret_key="x" * 40)

    with pytest.raises(ClientError) as error:
        wrong_secret.put_object(Bucket=s3_bucket, Key="k", Body=b"x")
    assert error_code(error) == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as error:
        unknown_key.put_object(Bucket=s3_bucket, Key="k", Body=b"x")
    assert error_code(error) == "InvalidAccessKeyId"
    assert s3.list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0


def test_clock_skew(
    gateway: GatewayInfo, s3_bucket: str, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_signing_time(monkeypatch, datetime.now(UTC) - timedelta(minutes=20))
    request = sign(gateway, "PUT", object_url(gateway, s3_bucket, "k"), body=b"x")
    monkeypatch.undo()

    reply = send(gateway, request)

    assert reply.status == 403
    assert reply.code == "RequestTimeTooSkewed"
    assert s3.list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0


def test_anonymous_request_denied(gateway: GatewayInfo, s3_bucket: str) -> None:
    reply = http_get(object_url(gateway, s3_bucket, "k"))
    assert reply.status == 403
    assert reply.code == "AccessDenied"
    assert reply.headers["x-amz-request-id"]


def test_other_users_get_access_denied(
    gateway: GatewayInfo, s3: Any, s3_bucket: str, user: Any
) -> None:
    s3.put_object(Bucket=s3_bucket, Key="root-object", Body=b"x")
    other = s3_client(gateway, user.access_key, user.secret_key)

    for call in (
        lambda: other.get_object(Bucket=s3_bucket, Key="root-object"),
        lambda: other.put_object(Bucket=s3_bucket, Key="k", Body=b"x"),
        lambda: other.list_objects_v2(Bucket=s3_bucket),
        lambda: other.delete_object(Bucket=s3_bucket, Key="root-object"),
        lambda: other.delete_bucket(Bucket=s3_bucket),
        lambda: other.get_bucket_versioning(Bucket=s3_bucket),
        lambda: other.create_multipart_upload(Bucket=s3_bucket, Key="k"),
        lambda: other.copy_object(
            Bucket=s3_bucket, Key="c", CopySource={"Bucket": s3_bucket, "Key": "root-object"}
        ),
    ):
        with pytest.raises(ClientError) as error:
            call()
        assert error_code(error) == "AccessDenied"
    with pytest.raises(ClientError) as error:
        other.head_bucket(Bucket=s3_bucket)
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert s3.head_object(Bucket=s3_bucket, Key="root-object")["ContentLength"] == 1


def test_user_owns_own_bucket(gateway: GatewayInfo, s3: Any, user: Any) -> None:
    mine = s3_client(gateway, user.access_key, user.secret_key)
    bucket = new_bucket_name("owned")

    mine.create_bucket(Bucket=bucket)
    mine.put_object(Bucket=bucket, Key="k", Body=b"mine")

    names = [b["Name"] for b in mine.list_buckets()["Buckets"]]
    assert names == [bucket]
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    # Root may do anything, including reading other users' buckets.
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"mine"
    with pytest.raises(ClientError) as error:
        mine.create_bucket(Bucket=bucket)
    assert error_code(error) == "BucketAlreadyOwnedByYou"
    with pytest.raises(ClientError) as error:
        s3.create_bucket(Bucket=bucket)
    assert error_code(error) == "BucketAlreadyExists"


def test_virtual_hosted_style(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    host = f"{s3_bucket}.{DOMAIN}:{gateway.port}"
    put = sign(gateway, "PUT", f"http://{host}/virtual/key.txt", body=b"hosted")
    assert send(gateway, put).status == 200

    get = sign(gateway, "GET", f"http://{host}/virtual/key.txt")
    reply = send(gateway, get)
    listing = send(gateway, sign(gateway, "GET", f"http://{host}/?list-type=2"))

    assert reply.body == b"hosted"
    assert b"<Key>virtual/key.txt</Key>" in listing.body
    assert s3.get_object(Bucket=s3_bucket, Key="virtual/key.txt")["Body"].read() == b"hosted"


def streaming_body(
    gateway: GatewayInfo, url: str, data: bytes, mode: str, trailer: str | None
) -> tuple[Any, bytes]:
    """Sign a PUT in one of the aws-chunked modes and encode its body."""
    headers = {
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
    }
    trailers: list[tuple[str, str]] | None = None
    if trailer is not None:
        headers["x-amz-trailer"] = "x-amz-checksum-sha256"
        trailers = [("x-amz-checksum-sha256", trailer)]
    request = sign(gateway, "PUT", url, headers, payload=mode)
    authorization = request.headers["Authorization"]
    seed = (authorization.decode() if isinstance(authorization, bytes) else authorization).rsplit(
        "Signature=", 1
    )[1]
    amz_date = request.headers["X-Amz-Date"]
    amz_date = amz_date.decode() if isinstance(amz_date, bytes) else amz_date
    chunks = split_evenly(data, 64 * 1024)
    if mode == "STREAMING-UNSIGNED-PAYLOAD-TRAILER":
        body = b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in chunks) + b"0\r\n"
        body += b"".join(f"{n}:{v}\r\n".encode() for n, v in trailers or []) + b"\r\n"
        return request, body
    context = ChunkSigningContext(
        spec_signing_key(gateway.secret_key, amz_date[:8]),
        amz_date,
        f"{amz_date[:8]}/us-east-1/s3/aws4_request",
        seed,
    )
    return request, encode_signed_chunks(chunks, context, trailers)


@pytest.mark.parametrize(
    ("mode", "with_trailer"),
    [
        ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", False),
        ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", True),
        ("STREAMING-UNSIGNED-PAYLOAD-TRAILER", True),
    ],
)
def test_streaming_payload_modes(
    gateway: GatewayInfo, s3: Any, s3_bucket: str, mode: str, with_trailer: bool
) -> None:

    data = make_data(300 * 1024 + 7, seed=21)
    checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
    url = object_url(gateway, s3_bucket, "streamed")
    request, body = streaming_body(gateway, url, data, mode, checksum if with_trailer else None)

    reply = send(gateway, request, split_evenly(body, 10000), chunked=True)

    assert reply.status == 200, reply.body
    got = s3.get_object(Bucket=s3_bucket, Key="streamed", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ContentLength"] == len(data)
    assert "ContentEncoding" not in got
    if with_trailer:
        assert got["ChecksumSHA256"] == checksum


@pytest.mark.parametrize(
    "mode",
    [
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    ],
)
def test_streaming_tampered_writes_nothing(
    gateway: GatewayInfo, s3: Any, s3_bucket: str, mode: str
) -> None:

    data = make_data(200 * 1024, seed=22)
    checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
    trailer = None if mode == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" else checksum
    url = object_url(gateway, s3_bucket, "tampered")
    request, body = streaming_body(gateway, url, data, mode, trailer)
    # Flip one byte of data in the middle of the body.
    middle = len(body) // 2
    body = body[:middle] + bytes([body[middle] ^ 0x01]) + body[middle + 1 :]

    reply = send(gateway, request, [body], chunked=True)

    assert reply.status in (400, 403)
    assert reply.code in ("SignatureDoesNotMatch", "BadDigest")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=s3_bucket, Key="tampered")


def test_signed_payload_mismatch(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    url = object_url(gateway, s3_bucket, "signed")
    request = sign(gateway, "PUT", url, body=b"the signed body")

    reply = send(gateway, request, b"the other body!")

    assert reply.status == 400
    assert reply.code == "XAmzContentSHA256Mismatch"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=s3_bucket, Key="signed")


def test_unsigned_payload(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    url = object_url(gateway, s3_bucket, "unsigned")
    request = sign(gateway, "PUT", url, body=b"unsigned body", payload="UNSIGNED-PAYLOAD")
    assert send(gateway, request).status == 200
    assert s3.get_object(Bucket=s3_bucket, Key="unsigned")["Body"].read() == b"unsigned body"
