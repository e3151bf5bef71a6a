"""Signature Version 2 at the gateway: presigned URLs from a default boto3 client, used
with plain HTTP, and Authorization headers signed by botocore's HmacV1Auth."""

from __future__ import annotations

import base64
import hashlib
import time
import xml.etree.ElementTree as ET
from email.utils import formatdate
from typing import Any

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from .s3gw_support import (
    DOMAIN,
    GatewayInfo,
    Reply,
    default_s3_client,
    http_get,
    object_url,
    send,
    sign_v2,
)
from .support import MIB, make_data

S3_NAMESPACE = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def send_unsigned(gateway: GatewayInfo, method: str, url: str, body: bytes = b"") -> Reply:
    """Send a presigned URL with http.client, with no headers but Host and Content-Length."""
    return send(gateway, AWSRequest(method=method, url=url), body)


def content_md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def assert_absent(s3: Any, bucket: str, key: str) -> None:
    with pytest.raises(ClientError) as error:
        s3.head_object(Bucket=bucket, Key=key)
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


# Presigned URLs.


def test_default_client_presigned_get_and_put(
    gateway: GatewayInfo, s3: Any, s3_bucket: str
) -> None:
    data = make_data(MIB + 17, seed=40)
    client = default_s3_client(gateway)
    params = {"Bucket": s3_bucket, "Key": "dir/v2 object+1.bin"}
    put_url = client.generate_presigned_url("put_object", Params=params, ExpiresIn=300)
    get_url = client.generate_presigned_url("get_object", Params=params, ExpiresIn=300)
    assert "AWSAccessKeyId=" in put_url
    assert "AWSAccessKeyId=" in get_url

    put = send_unsigned(gateway, "PUT", put_url, data)
    got = http_get(get_url)

    assert put.status == 200, put.body
    assert got.status == 200, got.body
    assert got.body == data
    assert got.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert s3.get_object(**params)["Body"].read() == data


def test_default_client_presigned_metadata(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    """boto3 signs user metadata into a Signature Version 2 URL as x-amz-meta-* parameters."""
    client = default_s3_client(gateway)
    params = {"Bucket": s3_bucket, "Key": "meta", "Metadata": {"Color": "blue"}}
    put_url = client.generate_presigned_url("put_object", Params=params, ExpiresIn=300)
    assert "x-amz-meta-color=blue" in put_url.lower()

    put = send_unsigned(gateway, "PUT", put_url, b"with metadata")

    assert put.status == 200, put.body
    head = s3.head_object(Bucket=s3_bucket, Key="meta")
    assert head["Metadata"] == {"color": "blue"}


def test_presigned_v2_content_type_hint(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    """A V2 URL signed without Content-Type fails with one, and the error names the header."""
    client = default_s3_client(gateway)
    params = {"Bucket": s3_bucket, "Key": "form"}
    put_url = client.generate_presigned_url("put_object", Params=params, ExpiresIn=300)

    form = http_get(put_url, data=b"body", method="PUT")
    plain = send_unsigned(gateway, "PUT", put_url, b"body")

    assert form.status == 403
    assert form.code == "SignatureDoesNotMatch"
    assert b"Content-Type ('application/x-www-form-urlencoded')" in form.body
    assert plain.status == 200, plain.body


def test_presigned_v2_expired(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    s3.put_object(Bucket=s3_bucket, Key="k", Body=b"secret data")
    client = default_s3_client(gateway)
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": s3_bucket, "Key": "k"}, ExpiresIn=-60
    )

    reply = http_get(url)

    assert reply.status == 403
    assert reply.code == "AccessDenied"
    assert b"Request has expired" in reply.body
    assert b"secret data" not in reply.body


def test_presigned_v2_tampered_get(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    for key in ("k", "k2"):
        s3.put_object(Bucket=s3_bucket, Key=key, Body=b"secret data")
    client = default_s3_client(gateway)
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": s3_bucket, "Key": "k"}, ExpiresIn=300
    )
    other_key = url.replace("/k?", "/k2?")
    signature = url.split("Signature=", 1)[1].split("&", 1)[0]
    changed_first = "B" if signature.startswith("A") else "A"
    other_signature = url.replace(signature, changed_first + signature[1:])

    for tampered in (other_key, other_signature):
        reply = http_get(tampered)
        assert reply.status == 403, tampered
        assert reply.code == "SignatureDoesNotMatch"
        assert b"secret data" not in reply.body


def test_presigned_v2_tampered_put_writes_nothing(
    gateway: GatewayInfo, s3: Any, s3_bucket: str
) -> None:
    client = default_s3_client(gateway)
    url = client.generate_presigned_url(
        "put_object", Params={"Bucket": s3_bucket, "Key": "p"}, ExpiresIn=300
    )

    reply = send_unsigned(gateway, "PUT", url.replace("/p?", "/q?"), b"x")

    assert reply.status == 403
    assert reply.code == "SignatureDoesNotMatch"
    assert s3.list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0


def test_presigned_v2_response_overrides(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    s3.put_object(Bucket=s3_bucket, Key="doc", Body=b"hello", ContentType="text/plain")
    client = default_s3_client(gateway)
    url = client.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": s3_bucket,
            "Key": "doc",
            "ResponseContentType": "application/x-custom; charset=utf-8",
            "ResponseContentDisposition": 'attachment; filename="a b+c.txt"',
        },
        ExpiresIn=300,
    )

    reply = http_get(url)

    assert reply.status == 200, reply.body
    assert reply.body == b"hello"
    assert reply.headers["Content-Type"] == "application/x-custom; charset=utf-8"
    assert reply.headers["Content-Disposition"] == 'attachment; filename="a b+c.txt"'


def test_presigned_v2_bucket_listing(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    s3.put_object(Bucket=s3_bucket, Key="listed", Body=b"x")
    client = default_s3_client(gateway)
    url = client.generate_presigned_url(
        "list_objects_v2", Params={"Bucket": s3_bucket}, ExpiresIn=300
    )

    reply = http_get(url)

    assert reply.status == 200, reply.body
    assert b"<Key>listed</Key>" in reply.body


def test_presigned_v2_url_content_type_signed(gateway: GatewayInfo, s3_bucket: str) -> None:
    # urllib adds Content-Type: application/x-www-form-urlencoded to a PUT with a body.
    # Signature Version 2 signs Content-Type, so the URL, presigned without one, fails.
    client = default_s3_client(gateway)
    url = client.generate_presigned_url(
        "put_object", Params={"Bucket": s3_bucket, "Key": "form"}, ExpiresIn=300
    )
    reply = http_get(url, data=b"x", method="PUT")
    assert reply.status == 403
    assert reply.code == "SignatureDoesNotMatch"


# The Authorization header.


def test_header_v2_put_and_get(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    data = make_data(300 * 1024, seed=41)
    url = object_url(gateway, s3_bucket, "a b/ü.txt")
    headers = {
        "Content-Type": "text/plain",
        "Content-MD5": content_md5(data),
        "x-amz-meta-color": "blue",
        "X-Amz-Meta-Shape": "round",
    }

    put = send(gateway, sign_v2(gateway, "PUT", url, headers, data))
    got = send(gateway, sign_v2(gateway, "GET", url))

    assert put.status == 200, put.body
    assert got.status == 200, got.body
    assert got.body == data
    assert got.headers["Content-Type"] == "text/plain"
    head = s3.head_object(Bucket=s3_bucket, Key="a b/ü.txt")
    assert head["Metadata"] == {"color": "blue", "shape": "round"}


def test_header_v2_virtual_hosted_style(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    host = f"{s3_bucket}.{DOMAIN}:{gateway.port}"
    key_path = f"/{s3_bucket}/virtual/key.txt"
    put = sign_v2(
        gateway, "PUT", f"http://{host}/virtual/key.txt", body=b"hosted", auth_path=key_path
    )
    get = sign_v2(gateway, "GET", f"http://{host}/virtual/key.txt", auth_path=key_path)
    listing = sign_v2(gateway, "GET", f"http://{host}/?list-type=2", auth_path=f"/{s3_bucket}/")

    assert send(gateway, put).status == 200
    assert send(gateway, get).body == b"hosted"
    assert b"<Key>virtual/key.txt</Key>" in send(gateway, listing).body
    assert s3.get_object(Bucket=s3_bucket, Key="virtual/key.txt")["Body"].read() == b"hosted"


def test_header_v2_multipart_upload(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    data = make_data(200 * 1024, seed=42)
    url = object_url(gateway, s3_bucket, "multi")

    created = send(gateway, sign_v2(gateway, "POST", f"{url}?uploads", {"x-amz-meta-a": "1"}))
    assert created.status == 200, created.body
    upload_id_element = ET.fromstring(created.body).find(f"{S3_NAMESPACE}UploadId")
    assert upload_id_element is not None and upload_id_element.text
    upload_id = upload_id_element.text

    part_url = f"{url}?partNumber=1&uploadId={upload_id}"
    part = send(gateway, sign_v2(gateway, "PUT", part_url, body=data))
    assert part.status == 200, part.body
    completion = (
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
        f"<ETag>{part.headers['ETag']}</ETag></Part></CompleteMultipartUpload>"
    ).encode()
    completed = send(
        gateway, sign_v2(gateway, "POST", f"{url}?uploadId={upload_id}", body=completion)
    )

    assert completed.status == 200, completed.body
    got = s3.get_object(Bucket=s3_bucket, Key="multi")
    assert got["Body"].read() == data
    assert got["Metadata"] == {"a": "1"}


def test_header_v2_wrong_secret(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    url = object_url(gateway, s3_bucket, "k")
    wrong_secret = sign_v2(gateway, "PUT", url, body=b"x", secret_key="x" * 40)
    unknown_key = AWSRequest(method="PUT", url=url, data=b"x")
    botocore.auth.HmacV1Auth(Credentials("STORUNKNOWNKEY000000", "x" * 40)).add_auth(unknown_key)

    mismatch = send(gateway, wrong_secret)
    unknown = send(gateway, unknown_key)

    assert mismatch.status == 403
    assert mismatch.code == "SignatureDoesNotMatch"
    assert unknown.status == 403
    assert unknown.code == "InvalidAccessKeyId"
    assert_absent(s3, s3_bucket, "k")


class StaleHmacV1Auth(botocore.auth.HmacV1Auth):
    """HmacV1Auth dated 20 minutes in the past."""

    def _get_date(self) -> str:
        return formatdate(time.time() - 20 * 60, usegmt=True)


def test_header_v2_clock_skew(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    request = AWSRequest(method="PUT", url=object_url(gateway, s3_bucket, "k"), data=b"x")
    StaleHmacV1Auth(Credentials(gateway.access_key, gateway.secret_key)).add_auth(request)

    reply = send(gateway, request)

    assert reply.status == 403
    assert reply.code == "RequestTimeTooSkewed"
    assert_absent(s3, s3_bucket, "k")


def test_header_v2_content_md5_checked(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    url = object_url(gateway, s3_bucket, "k")
    headers = {"Content-MD5": content_md5(b"the signed body")}
    request = sign_v2(gateway, "PUT", url, headers, b"the other body!")

    reply = send(gateway, request)

    assert reply.status == 400
    assert reply.code == "BadDigest"
    assert_absent(s3, s3_bucket, "k")
