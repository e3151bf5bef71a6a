"""Error responses of the gateway: the S3 XML error for each mistake a client can make,
malformed requests that leave the gateway up and the store unchanged, and
NotImplemented for what the gateway does not do."""

from __future__ import annotations

import http.client
import socket
import time
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from botocore.exceptions import ClientError

from store.cluster import LocalCluster
from store.s3.xmlcodec import S3_NAMESPACE

from .s3gw_support import GatewayInfo, Reply, error_code, object_url, s3_client, send, sign
from .support import MIB


def assert_error(reply: Reply, status: int, code: str) -> None:
    assert reply.status == status, reply.body
    assert reply.code == code, reply.body
    assert reply.headers.get("x-amz-request-id")
    assert b"<RequestId>" in reply.body
    assert b"<Resource>" in reply.body


def keys_of(s3: Any, bucket: str) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_malformed_xml_documents(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    s3.put_object(Bucket=s3_bucket, Key="keep", Body=b"x")
    upload_id = s3.create_multipart_upload(Bucket=s3_bucket, Key="mp")["UploadId"]
    cases = [
        ("POST", object_url(gateway, s3_bucket, "mp", f"uploadId={upload_id}"), b"<Complete"),
        ("POST", object_url(gateway, s3_bucket, "mp", f"uploadId={upload_id}"), b"<Other/>"),
        (
            "POST",
            object_url(gateway, s3_bucket, "mp", f"uploadId={upload_id}"),
            b"<CompleteMultipartUpload></CompleteMultipartUpload>",
        ),
        ("POST", object_url(gateway, s3_bucket, query="delete"), b"<Delete><Object>"),
        (
            "POST",
            object_url(gateway, s3_bucket, query="delete"),
            b'<!DOCTYPE x [<!ENTITY a "b">]><Delete><Object><Key>&a;</Key></Object></Delete>',
        ),
        ("PUT", object_url(gateway, "new-bucket-bad-xml"), b"<CreateBucketConfiguration"),
    ]
    for method, url, body in cases:
        reply = send(gateway, sign(gateway, method, url, body=body))
        assert_error(reply, 400, "MalformedXML")

    assert keys_of(s3, s3_bucket) == ["keep"]
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket="new-bucket-bad-xml")


def test_bad_chunk_framing(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    url = object_url(gateway, s3_bucket, "framed")
    headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": "5"}
    for body in (b"zz\r\nhello\r\n0\r\n\r\n", b"5\r\nhello0\r\n\r\n", b"5\r\nhel"):
        request = sign(gateway, "PUT", url, headers, payload="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
        reply = send(gateway, request, [body], chunked=True)
        assert reply.status == 400
        assert reply.code in ("InvalidArgument", "IncompleteBody")
    assert keys_of(s3, s3_bucket) == []


def test_oversized_headers(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    url = object_url(gateway, s3_bucket, "k")
    long_header = sign(gateway, "GET", url, {"x-long": "v" * 9000})
    many_headers = sign(gateway, "GET", url, {f"x-h{i}": "v" for i in range(200)})

    for request in (long_header, many_headers):
        reply = send(gateway, request)
        assert reply.status == 400
        assert reply.code == "RequestHeaderSectionTooLarge"

    s3.put_object(Bucket=s3_bucket, Key="still-up", Body=b"x")
    assert keys_of(s3, s3_bucket) == ["still-up"]


def test_garbage_request_line(gateway: GatewayInfo, s3: Any) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as connection:
        connection.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        reply = connection.recv(65536)
    assert reply.split(b" ", 2)[1] == b"400"
    assert b"<Code>InvalidRequest</Code>" in reply
    assert s3.list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200


@pytest.mark.parametrize(
    ("method", "query", "with_key", "operation"),
    [
        ("PUT", "versioning", False, "PutBucketVersioning"),
        ("PUT", "policy", False, "PutBucketPolicy"),
        ("PUT", "lifecycle", False, "PutBucketLifecycleConfiguration"),
        ("PUT", "retention", True, "PutObjectRetention"),
        ("PUT", "replication", False, "PutBucketReplication"),
        ("PUT", "website", False, "PutBucketWebsite"),
        ("PUT", "logging", False, "PutBucketLogging"),
        ("PUT", "encryption", False, "PutBucketEncryption"),
        ("PUT", "object-lock", False, "PutObjectLockConfiguration"),
        ("GET", "retention", True, "GetObjectRetention"),
        ("POST", "select&select-type=2", True, "SelectObjectContent"),
        ("POST", "restore", True, "RestoreObject"),
        ("GET", "torrent", True, "GetObjectTorrent"),
    ],
)
def test_unsupported_subresources(
    gateway: GatewayInfo,
    s3: Any,
    s3_bucket: str,
    method: str,
    query: str,
    with_key: bool,
    operation: str,
) -> None:
    s3.put_object(Bucket=s3_bucket, Key="k", Body=b"x")
    url = object_url(gateway, s3_bucket, "k" if with_key else "", query)

    reply = send(gateway, sign(gateway, method, url, body=b"<x/>" if method != "GET" else b""))

    assert_error(reply, 501, "NotImplemented")
    assert operation.encode() in reply.body, reply.body
    assert keys_of(s3, s3_bucket) == ["k"]


def test_only_the_private_acl_can_be_set(s3: Any, s3_bucket: str) -> None:
    s3.put_object(Bucket=s3_bucket, Key="k", Body=b"x")
    current = s3.get_bucket_acl(Bucket=s3_bucket)
    policy = {"Owner": current["Owner"], "Grants": current["Grants"]}
    public = {
        "Owner": current["Owner"],
        "Grants": [
            *current["Grants"],
            {
                "Grantee": {
                    "Type": "Group",
                    "URI": "http://acs.amazonaws.com/groups/global/AllUsers",
                },
                "Permission": "READ",
            },
        ],
    }

    assert (
        s3.put_bucket_acl(Bucket=s3_bucket, ACL="private")["ResponseMetadata"]["HTTPStatusCode"]
        == 200
    )
    s3.put_bucket_acl(Bucket=s3_bucket, AccessControlPolicy=policy)
    s3.put_object_acl(Bucket=s3_bucket, Key="k", ACL="private")
    s3.put_object_acl(Bucket=s3_bucket, Key="k", AccessControlPolicy=policy)

    unsupported = (
        lambda: s3.put_bucket_acl(Bucket=s3_bucket, ACL="public-read"),
        lambda: s3.put_bucket_acl(Bucket=s3_bucket, AccessControlPolicy=public),
        lambda: s3.put_object_acl(Bucket=s3_bucket, Key="k", GrantRead="id=someone-else"),
    )
    for call in unsupported:
        with pytest.raises(ClientError) as error:
            call()
        assert error.value.response["Error"]["Code"] == "NotImplemented"
    with pytest.raises(ClientError) as error:
        s3.put_object_acl(Bucket=s3_bucket, Key="missing", ACL="private")
    assert error.value.response["Error"]["Code"] == "NoSuchKey"
    assert s3.get_bucket_acl(Bucket=s3_bucket)["Grants"] == current["Grants"]


def test_bucket_versioning_never_enabled(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    url = object_url(gateway, s3_bucket, query="versioning")

    reply = send(gateway, sign(gateway, "GET", url))
    versioning = s3.get_bucket_versioning(Bucket=s3_bucket)
    with pytest.raises(ClientError) as error:
        s3.get_bucket_versioning(Bucket="missing-bucket-v")

    assert reply.status == 200, reply.body
    document = ET.fromstring(reply.body)
    assert document.tag == f"{{{S3_NAMESPACE}}}VersioningConfiguration"
    assert list(document) == []
    assert "Status" not in versioning
    assert "MFADelete" not in versioning
    assert error.value.response["Error"]["Code"] == "NoSuchBucket"


def test_unsupported_write_headers(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    for headers in (
        {"x-amz-object-lock-mode": "GOVERNANCE"},
        {"x-amz-server-side-encryption": "AES256"},
        {"x-amz-storage-class": "GLACIER"},
        {"x-amz-acl": "public-read"},
        {"If-Match": '"abc", "def"'},
    ):
        url = object_url(gateway, s3_bucket, "k")
        reply = send(gateway, sign(gateway, "PUT", url, headers, body=b"x"))
        assert_error(reply, 501, "NotImplemented")
    assert keys_of(s3, s3_bucket) == []


def test_encryption_headers(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    customer_key = {
        "x-amz-server-side-encryption-customer-key": "pO3upElrwuEXSoFwCfnZPdSsmt/xWeFa0N9KgDijwVs=",
        "x-amz-server-side-encryption-customer-key-md5": "DWygnHRtgiJ77HCm+1rvHw==",
    }
    url = object_url(gateway, s3_bucket, "k")
    reply = send(gateway, sign(gateway, "PUT", url, customer_key, body=b"x"))
    assert_error(reply, 400, "InvalidArgument")
    full = {**customer_key, "x-amz-server-side-encryption-customer-algorithm": "AES256"}
    assert_error(send(gateway, sign(gateway, "PUT", url, full, body=b"x")), 501, "NotImplemented")
    assert keys_of(s3, s3_bucket) == []

    s3.put_object(Bucket=s3_bucket, Key="k", Body=b"plain")
    kms = {"x-amz-server-side-encryption": "aws:kms"}
    for method in ("GET", "HEAD"):
        reply = send(gateway, sign(gateway, method, url, kms))
        assert reply.status == 400, method
        reply = send(gateway, sign(gateway, method, url, full))
        assert reply.status == 400, method
    assert_error(send(gateway, sign(gateway, "GET", url, kms)), 400, "InvalidArgument")
    assert_error(send(gateway, sign(gateway, "GET", url, full)), 400, "InvalidRequest")


def _post_form(
    gateway: GatewayInfo, bucket: str, body: bytes, content_type: str
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    try:
        connection.request("POST", f"/{bucket}", body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_malformed_form_uploads(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    """Unsigned, incomplete and broken HTML form uploads get S3 errors and store nothing."""
    key_field = b'--xyz\r\nContent-Disposition: form-data; name="key"\r\n\r\nk\r\n'
    file_field = b'--xyz\r\nContent-Disposition: form-data; name="file"\r\n\r\ndata\r\n'
    form_type = "multipart/form-data; boundary=xyz"
    cases = {
        "no policy": (key_field + file_field + b"--xyz--\r\n", form_type, 403, "AccessDenied"),
        "no key": (file_field + b"--xyz--\r\n", form_type, 400, "InvalidArgument"),
        "no file": (key_field + b"--xyz--\r\n", form_type, 400, "InvalidArgument"),
        "no boundary": (key_field, "multipart/form-data", 400, "MalformedPOSTRequest"),
        "cut short": (key_field[:30], form_type, 400, "MalformedPOSTRequest"),
    }

    for name, (body, content_type, status, code) in cases.items():
        got_status, got_body = _post_form(gateway, s3_bucket, body, content_type)
        assert (got_status, error_code(got_body)) == (status, code), (name, got_body)
    assert keys_of(s3, s3_bucket) == []


def test_errors_hide_server_addresses(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    s3.put_object(Bucket=s3_bucket, Key="k", Body=b"x")
    calls = (
        lambda: s3.get_object(Bucket=s3_bucket, Key="missing"),
        lambda: s3.get_object(Bucket="missing-bucket-z", Key="k"),
        lambda: s3.put_object(Bucket=s3_bucket, Key="k", Body=b"y", IfMatch='"0000"'),
        lambda: s3.copy_object(
            Bucket=s3_bucket, Key="c", CopySource={"Bucket": s3_bucket, "Key": "missing"}
        ),
    )
    for call in calls:
        with pytest.raises(ClientError) as error:
            call()
        message = error.value.response["Error"]["Message"]
        assert "127.0.0.1" not in message, message
        assert "metaserver" not in message, message


def test_bucket_errors(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    s3.put_object(Bucket=s3_bucket, Key="k", Body=b"x")

    with pytest.raises(ClientError) as error:
        s3.delete_bucket(Bucket=s3_bucket)
    assert error.value.response["Error"]["Code"] == "BucketNotEmpty"
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket="missing-bucket-x", Key="k", Body=b"x")
    assert error.value.response["Error"]["Code"] == "NoSuchBucket"
    reply = send(gateway, sign(gateway, "PUT", object_url(gateway, "Bad_Name")))
    assert_error(reply, 400, "InvalidBucketName")
    configuration = (
        b"<CreateBucketConfiguration><LocationConstraint>eu-west-1</LocationConstraint>"
        b"</CreateBucketConfiguration>"
    )
    reply = send(
        gateway, sign(gateway, "PUT", object_url(gateway, "eu-bucket-x"), body=configuration)
    )
    assert_error(reply, 400, "IllegalLocationConstraintException")


def test_head_errors_have_no_body(gateway: GatewayInfo, s3_bucket: str) -> None:
    for url in (object_url(gateway, s3_bucket, "missing"), object_url(gateway, "missing-bucket-y")):
        reply = send(gateway, sign(gateway, "HEAD", url))
        assert reply.status == 404
        assert reply.body == b""
        assert reply.headers["x-amz-request-id"]


def test_declared_length_limits(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    url = object_url(gateway, s3_bucket, "huge")
    huge = sign(
        gateway,
        "PUT",
        url,
        {"Content-Length": str(6 * 1024**3), "Expect": "100-continue"},
        payload="UNSIGNED-PAYLOAD",
    )
    assert_error(send(gateway, huge, b""), 400, "EntityTooLarge")

    assert keys_of(s3, s3_bucket) == []

    # A body in HTTP chunked transfer coding may come without a length, as Ceph RGW allows.
    unsized = sign(gateway, "PUT", url, payload="UNSIGNED-PAYLOAD")
    assert send(gateway, unsized, [b"ab", b"c"], chunked=True).status == 200
    assert s3.get_object(Bucket=s3_bucket, Key="huge")["Body"].read() == b"abc"


def test_wrong_method(gateway: GatewayInfo) -> None:
    reply = send(gateway, sign(gateway, "DELETE", f"{gateway.endpoint}/"))
    assert_error(reply, 405, "MethodNotAllowed")


def test_unavailable_metaserver(cluster_factory: Any) -> None:
    cluster: LocalCluster = cluster_factory(dataservers=1)
    process = cluster.add_gateway(extra_args=["--timeout-s", "1"])
    access_key, secret_key = cluster.read_root_keys()
    gateway = GatewayInfo(process, access_key, secret_key)
    s3 = s3_client(gateway)
    s3.create_bucket(Bucket="before-the-outage")
    s3.put_object(Bucket="before-the-outage", Key="k", Body=b"x" * MIB)

    cluster.metaservers[0].kill()
    started_s = time.monotonic()
    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket="before-the-outage", Key="k")

    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert error.value.response["Error"]["Code"] in ("ServiceUnavailable", "SlowDown")
    assert "127.0.0.1" not in error.value.response["Error"]["Message"], "internal address sent"
    assert time.monotonic() - started_s < 20
    assert error_code(b"") is None
