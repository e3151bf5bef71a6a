"""Browser-based uploads (POST Object) with forms from boto3's generate_presigned_post.

The forms are sent as a browser sends them: multipart/form-data with the file last,
through urllib3 (no S3 client), so the gateway receives what an HTML form posts.
"""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET
from typing import Any

import awscrt.checksums
import urllib3

import store

from .s3gw_support import GatewayInfo, default_s3_client, error_code, s3_client
from .support import MIB, make_data, new_bucket_name

S3_NAMESPACE = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _post(
    post: dict[str, Any], filename: str, data: bytes, **extra: str
) -> urllib3.BaseHTTPResponse:
    """Send the presigned form with `extra` fields before the file, as a browser does."""
    fields: list[tuple[str, Any]] = [*post["fields"].items(), *extra.items()]
    fields.append(("file", (filename, data, "application/octet-stream")))
    return urllib3.request("POST", post["url"], fields=fields, redirect=False, timeout=60)


def _keys(s3: Any, bucket: str) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_signature_v4_form(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    """A SigV4 form with ${filename}, metadata and success_action_status 201."""
    data = make_data(9 * MIB + 5, seed=95)
    fields = {
        "Content-Type": "text/plain",
        "x-amz-meta-owner": "ada",
        "success_action_status": "201",
    }
    conditions: list[Any] = [
        {"Content-Type": "text/plain"},
        {"x-amz-meta-owner": "ada"},
        {"success_action_status": "201"},
        ["content-length-range", 1, 10 * MIB],
    ]
    post = s3_client(gateway).generate_presigned_post(
        s3_bucket, "uploads/${filename}", Fields=fields, Conditions=conditions, ExpiresIn=300
    )

    reply = _post(post, "notes.txt", data)
    document = ET.fromstring(reply.data)
    stored = s3.get_object(Bucket=s3_bucket, Key="uploads/notes.txt")

    assert reply.status == 201, reply.data
    assert document.findtext(f"{S3_NAMESPACE}Key") == "uploads/notes.txt"
    assert document.findtext(f"{S3_NAMESPACE}Bucket") == s3_bucket
    assert reply.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert stored["Body"].read() == data
    assert stored["ContentType"] == "text/plain"
    assert stored["Metadata"] == {"owner": "ada"}


def test_signature_v2_form(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    """boto3's default client signs the policy with Signature Version 2, and the reply is 204."""
    post = default_s3_client(gateway).generate_presigned_post(s3_bucket, "v2.bin", ExpiresIn=300)

    reply = _post(post, "local-name.bin", b"version 2")

    head = s3.head_object(Bucket=s3_bucket, Key="v2.bin", ChecksumMode="ENABLED")

    assert "signature" in post["fields"]
    assert reply.status == 204, reply.data
    assert s3.get_object(Bucket=s3_bucket, Key="v2.bin")["Body"].read() == b"version 2"
    expected = awscrt.checksums.crc64nvme(b"version 2").to_bytes(8, "big")
    assert head["ChecksumCRC64NVME"] == base64.b64encode(expected).decode()


def test_cors_headers_on_form_uploads(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    """A page's script reads the reply of a form upload only with the bucket's CORS headers."""
    page = "http://127.0.0.1:18080"
    rules = {"CORSRules": [{"AllowedOrigins": [page], "AllowedMethods": ["POST"]}]}
    s3.put_bucket_cors(Bucket=s3_bucket, CORSConfiguration=rules)
    post = s3_client(gateway).generate_presigned_post(s3_bucket, "from-page")
    fields = [*post["fields"].items(), ("file", ("f", b"from a page", "text/plain"))]
    body, content_type = urllib3.encode_multipart_formdata(fields)

    def send(origin: str) -> urllib3.BaseHTTPResponse:
        headers = {"Content-Type": content_type, "Origin": origin}
        return urllib3.request("POST", post["url"], body=body, headers=headers, timeout=60)

    allowed = send(page)
    other = send("http://127.0.0.1:18081")

    assert allowed.status == 204, allowed.data
    assert allowed.headers["Access-Control-Allow-Origin"] == page
    assert other.status == 204
    assert "Access-Control-Allow-Origin" not in other.headers
    assert "Origin" in other.headers["Vary"]


def test_redirect_and_tags(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    redirect = "https://app.example/done"
    tagging = "<Tagging><TagSet><Tag><Key>src</Key><Value>form</Value></Tag></TagSet></Tagging>"
    fields = {"success_action_redirect": redirect, "tagging": tagging}
    conditions = [{"success_action_redirect": redirect}, {"tagging": tagging}]
    post = s3_client(gateway).generate_presigned_post(
        s3_bucket, "tagged", Fields=fields, Conditions=conditions
    )

    reply = _post(post, "f", b"tagged data")

    assert reply.status == 303, reply.data
    assert reply.headers["Location"].startswith(f"{redirect}?bucket={s3_bucket}&key=tagged&etag=")
    assert s3.get_object_tagging(Bucket=s3_bucket, Key="tagged")["TagSet"] == [
        {"Key": "src", "Value": "form"}
    ]


def test_checksum_field(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    """An x-amz-checksum-* field needs no condition: the upload verifies and stores it."""
    data = b"checked data"
    good = base64.b64encode(hashlib.sha256(data).digest()).decode()
    bad = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    post = s3_client(gateway).generate_presigned_post(s3_bucket, "summed")

    mismatch = _post(post, "f", data, **{"x-amz-checksum-sha256": bad})
    listed_after_mismatch = _keys(s3, s3_bucket)
    matched = _post(post, "f", data, **{"x-amz-checksum-sha256": good})
    head = s3.head_object(Bucket=s3_bucket, Key="summed", ChecksumMode="ENABLED")

    assert mismatch.status == 400
    assert error_code(mismatch.data) == "BadDigest"
    assert listed_after_mismatch == []
    assert matched.status == 204, matched.data
    assert head["ChecksumSHA256"] == good


def test_policy_violations(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    """Each broken rule gets S3's error, and nothing is stored."""
    signer = s3_client(gateway)
    limited = signer.generate_presigned_post(
        s3_bucket,
        "k",
        Conditions=[["starts-with", "$key", "k"], ["content-length-range", 2, 10]],
    )
    expired = signer.generate_presigned_post(s3_bucket, "k", ExpiresIn=-10)
    tampered = {**limited, "fields": {**limited["fields"], "x-amz-signature": "0" * 64}}
    stranger = s3_client(gateway, access_key="AKIDNOTAKEY000000000", secret_key="x" * 40)
    unknown_key = stranger.generate_presigned_post(s3_bucket, "k")
    anonymous = {"url": limited["url"], "fields": {"key": "k"}}

    cases = {
        "too large": (_post(limited, "f", b"x" * 11), 400, "EntityTooLarge"),
        "too small": (_post(limited, "f", b"x"), 400, "EntityTooSmall"),
        "extra field": (_post(limited, "f", b"xyz", **{"x-amz-meta-a": "b"}), 403, "AccessDenied"),
        "expired": (_post(expired, "f", b"xyz"), 403, "AccessDenied"),
        "tampered": (_post(tampered, "f", b"xyz"), 403, "SignatureDoesNotMatch"),
        "unknown key": (_post(unknown_key, "f", b"xyz"), 403, "InvalidAccessKeyId"),
        "anonymous": (_post(anonymous, "f", b"xyz"), 403, "AccessDenied"),
    }

    for name, (reply, status, code) in cases.items():
        assert (reply.status, error_code(reply.data)) == (status, code), (name, reply.data)
    assert _keys(s3, s3_bucket) == []


def test_file_without_closing_boundary(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    post = s3_client(gateway).generate_presigned_post(s3_bucket, "cut")
    fields = [*post["fields"].items(), ("file", ("f", b"file data", "text/plain"))]
    body, content_type = urllib3.encode_multipart_formdata(fields)
    # Without the final boundary, and with part of it.
    for cut in (body[: body.rindex(b"\r\n--")], body[:-10]):
        reply = urllib3.request(
            "POST", post["url"], body=cut, headers={"Content-Type": content_type}, timeout=60
        )

        assert reply.status == 400, reply.data
        assert error_code(reply.data) == "MalformedPOSTRequest"
    assert _keys(s3, s3_bucket) == []


def test_other_user_denied(
    gateway: GatewayInfo, client: store.Client, s3: Any, s3_bucket: str
) -> None:
    """A form signed by a user who does not own the bucket is rejected."""
    user = client.create_user(new_bucket_name("poster"))
    signer = s3_client(gateway, access_key=user.access_key, secret_key=user.secret_key)
    post = signer.generate_presigned_post(s3_bucket, "k")

    reply = _post(post, "f", b"data")

    assert reply.status == 403
    assert error_code(reply.data) == "AccessDenied"
    assert _keys(s3, s3_bucket) == []
