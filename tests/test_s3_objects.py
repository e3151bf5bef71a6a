"""S3 object operations through the gateway with boto3: PUT, GET, HEAD, DELETE, copy,
ranges, conditions, metadata, checksums and conditional writes."""

from __future__ import annotations

import base64
import hashlib
import io
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import awscrt.checksums
import pytest
from botocore.exceptions import ClientError

from .s3gw_support import s3_client
from .support import MIB, make_data


def error_code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


def status_of(error: pytest.ExceptionInfo[ClientError]) -> int:
    return int(error.value.response["ResponseMetadata"]["HTTPStatusCode"])


def test_put_get_round_trip(s3: Any, s3_bucket: str) -> None:
    data = make_data(3 * MIB + 17, seed=1)
    put = s3.put_object(Bucket=s3_bucket, Key="dir/data.bin", Body=data)

    got = s3.get_object(Bucket=s3_bucket, Key="dir/data.bin")

    assert got["Body"].read() == data
    assert got["ContentLength"] == len(data)
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert got["ETag"] == put["ETag"]
    assert "x-amz-request-id" in got["ResponseMetadata"]["HTTPHeaders"]


def test_empty_and_inline_objects(s3: Any, s3_bucket: str) -> None:
    for key, data in (("empty", b""), ("small", b"x" * 100), ("edge", make_data(65536, 2))):
        s3.put_object(Bucket=s3_bucket, Key=key, Body=data)
        assert s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == data
        assert s3.head_object(Bucket=s3_bucket, Key=key)["ContentLength"] == len(data)


def test_empty_put_keeps_the_connection_usable(gateway: Any, s3_bucket: str) -> None:
    # A file-like body makes botocore send Expect: 100-continue. When an empty PUT got
    # its final response without "100 Continue", botocore up to at least 1.43.62
    # misread the next response on the same pooled connection (boto/botocore#3755).
    s3 = s3_client(gateway, read_timeout=5, max_pool_connections=1)
    for index in range(3):
        s3.put_object(Bucket=s3_bucket, Key=f"empty-{index}", Body=io.BytesIO(b""))
        s3.put_object(Bucket=s3_bucket, Key=f"full-{index}", Body=io.BytesIO(b"data"))
    got = s3.get_object(Bucket=s3_bucket, Key="full-2")["Body"].read()
    assert got == b"data"


def test_metadata_and_headers_round_trip(s3: Any, s3_bucket: str) -> None:
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    s3.put_object(
        Bucket=s3_bucket,
        Key="meta",
        Body=b"hello",
        ContentType="text/plain; charset=utf-8",
        ContentEncoding="gzip",
        ContentDisposition='attachment; filename="a.txt"',
        ContentLanguage="de",
        CacheControl="max-age=60",
        Expires=expires,
        Metadata={"Color": "blue", "lower": "x"},
    )

    for response in (
        s3.head_object(Bucket=s3_bucket, Key="meta"),
        s3.get_object(Bucket=s3_bucket, Key="meta"),
    ):
        assert response["ContentType"] == "text/plain; charset=utf-8"
        assert response["ContentEncoding"] == "gzip"
        assert response["ContentDisposition"] == 'attachment; filename="a.txt"'
        assert response["ContentLanguage"] == "de"
        assert response["CacheControl"] == "max-age=60"
        assert response["Expires"] == expires
        assert response["Metadata"] == {"color": "blue", "lower": "x"}


def test_default_content_type(s3: Any, s3_bucket: str) -> None:
    s3.put_object(Bucket=s3_bucket, Key="plain", Body=b"x")
    assert s3.head_object(Bucket=s3_bucket, Key="plain")["ContentType"] == "binary/octet-stream"


def test_response_overrides(s3: Any, s3_bucket: str) -> None:
    s3.put_object(Bucket=s3_bucket, Key="o", Body=b"data", ContentType="text/plain")

    got = s3.get_object(
        Bucket=s3_bucket,
        Key="o",
        ResponseContentType="application/json",
        ResponseContentDisposition="inline",
        ResponseCacheControl="no-cache",
        ResponseContentLanguage="fr",
        ResponseContentEncoding="identity",
        ResponseExpires=datetime(2031, 1, 1, tzinfo=UTC),
    )

    assert got["ContentType"] == "application/json"
    assert got["ContentDisposition"] == "inline"
    assert got["CacheControl"] == "no-cache"
    assert got["ContentLanguage"] == "fr"
    assert got["ContentEncoding"] == "identity"
    assert got["Body"].read() == b"data"


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 1),
        ("bytes=100-199", 100, 200),
        ("bytes=1048570-1048580", 1048570, 1048581),
        ("bytes=2000000-", 2000000, 2 * MIB + 5),
        ("bytes=-10", 2 * MIB + 5 - 10, 2 * MIB + 5),
        ("bytes=5-99999999", 5, 2 * MIB + 5),
        ("bytes=-99999999", 0, 2 * MIB + 5),
    ],
)
def test_get_range(s3: Any, s3_bucket: str, header: str, start: int, end: int) -> None:
    data = make_data(2 * MIB + 5, seed=3)
    s3.put_object(Bucket=s3_bucket, Key="r", Body=data)

    got = s3.get_object(Bucket=s3_bucket, Key="r", Range=header)

    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["Body"].read() == data[start:end]
    assert got["ContentRange"] == f"bytes {start}-{end - 1}/{len(data)}"
    assert got["ContentLength"] == end - start


@pytest.mark.parametrize(
    "header", ["bytes=10-", "bytes=100-200", "bytes=-0", "bytes=x-1", "bytes=5-2"]
)
def test_get_invalid_range(s3: Any, s3_bucket: str, header: str) -> None:
    s3.put_object(Bucket=s3_bucket, Key="r", Body=b"0123456789")
    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket=s3_bucket, Key="r", Range=header)
    assert error_code(error) == "InvalidRange"
    assert status_of(error) == 416


def test_get_part_number(s3: Any, s3_bucket: str) -> None:
    parts = [make_data(5 * MIB, 4), make_data(1000, 5)]
    upload = s3.create_multipart_upload(Bucket=s3_bucket, Key="mp")
    etags = [
        s3.upload_part(
            Bucket=s3_bucket, Key="mp", UploadId=upload["UploadId"], PartNumber=n + 1, Body=part
        )["ETag"]
        for n, part in enumerate(parts)
    ]
    s3.complete_multipart_upload(
        Bucket=s3_bucket,
        Key="mp",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]},
    )

    second = s3.get_object(Bucket=s3_bucket, Key="mp", PartNumber=2)
    head = s3.head_object(Bucket=s3_bucket, Key="mp", PartNumber=1)

    assert second["Body"].read() == parts[1]
    assert second["PartsCount"] == 2
    assert second["ContentRange"] == f"bytes {5 * MIB}-{5 * MIB + 999}/{5 * MIB + 1000}"
    assert head["ContentLength"] == 5 * MIB
    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket=s3_bucket, Key="mp", PartNumber=3)
    assert error_code(error) == "InvalidPartNumber"


def test_get_conditions(s3: Any, s3_bucket: str) -> None:
    etag = s3.put_object(Bucket=s3_bucket, Key="c", Body=b"v1")["ETag"]
    past = datetime.now(UTC) - timedelta(days=1)
    future = datetime.now(UTC) + timedelta(days=1)

    assert s3.get_object(Bucket=s3_bucket, Key="c", IfMatch=etag)["Body"].read() == b"v1"
    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket=s3_bucket, Key="c", IfMatch='"0000"')
    assert status_of(error) == 412
    assert error_code(error) == "PreconditionFailed"
    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket=s3_bucket, Key="c", IfNoneMatch=etag)
    assert status_of(error) == 304
    with pytest.raises(ClientError) as error:
        s3.head_object(Bucket=s3_bucket, Key="c", IfModifiedSince=future)
    assert status_of(error) == 304
    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket=s3_bucket, Key="c", IfUnmodifiedSince=past)
    assert status_of(error) == 412
    assert s3.get_object(Bucket=s3_bucket, Key="c", IfModifiedSince=past)["Body"].read() == b"v1"


def test_get_condition_precedence(s3: Any, s3_bucket: str) -> None:
    etag = s3.put_object(Bucket=s3_bucket, Key="p", Body=b"v")["ETag"]
    past = datetime.now(UTC) - timedelta(days=1)
    future = datetime.now(UTC) + timedelta(days=1)

    # If-Match passes, so the failing If-Unmodified-Since is ignored.
    got = s3.get_object(Bucket=s3_bucket, Key="p", IfMatch=etag, IfUnmodifiedSince=past)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    # If-None-Match passes (another ETag), so the failing If-Modified-Since is ignored.
    got = s3.get_object(Bucket=s3_bucket, Key="p", IfNoneMatch='"other"', IfModifiedSince=future)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    # If-None-Match fails, so the passing If-Modified-Since does not help.
    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket=s3_bucket, Key="p", IfNoneMatch=etag, IfModifiedSince=past)
    assert status_of(error) == 304


def test_head_missing_key(s3: Any, s3_bucket: str) -> None:
    with pytest.raises(ClientError) as error:
        s3.head_object(Bucket=s3_bucket, Key="missing")
    assert status_of(error) == 404
    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket=s3_bucket, Key="missing")
    assert error_code(error) == "NoSuchKey"


def test_delete_object(s3: Any, s3_bucket: str) -> None:
    s3.put_object(Bucket=s3_bucket, Key="d", Body=b"x")

    first = s3.delete_object(Bucket=s3_bucket, Key="d")
    again = s3.delete_object(Bucket=s3_bucket, Key="d")

    assert first["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError):
        s3.head_object(Bucket=s3_bucket, Key="d")


def test_delete_objects_quiet(s3: Any, s3_bucket: str) -> None:
    keys = [f"k{i}" for i in range(5)]
    for key in keys:
        s3.put_object(Bucket=s3_bucket, Key=key, Body=b"x")

    loud = s3.delete_objects(
        Bucket=s3_bucket, Delete={"Objects": [{"Key": k} for k in [*keys[:3], "never"]]}
    )
    quiet = s3.delete_objects(
        Bucket=s3_bucket, Delete={"Objects": [{"Key": k} for k in keys[3:]], "Quiet": True}
    )

    assert sorted(d["Key"] for d in loud["Deleted"]) == ["k0", "k1", "k2", "never"]
    assert "Deleted" not in quiet
    assert "Errors" not in quiet
    assert s3.list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"])
def test_checksum_stored_and_returned(s3: Any, s3_bucket: str, algorithm: str) -> None:
    data = make_data(MIB + 3, seed=6)
    put = s3.put_object(Bucket=s3_bucket, Key="c", Body=data, ChecksumAlgorithm=algorithm)

    head = s3.head_object(Bucket=s3_bucket, Key="c", ChecksumMode="ENABLED")
    got = s3.get_object(Bucket=s3_bucket, Key="c", ChecksumMode="ENABLED")

    field = f"Checksum{algorithm}"
    assert head[field] == put[field]
    assert got[field] == put[field]
    assert got["Body"].read() == data
    assert head["ChecksumType"] == "FULL_OBJECT"


def test_default_checksum_is_crc64nvme(s3: Any, s3_bucket: str, gateway: Any) -> None:
    from .s3gw_support import object_url, send, sign

    data = b"no checksum declared"
    request = sign(gateway, "PUT", object_url(gateway, s3_bucket, "plain"), body=data)
    assert send(gateway, request).status == 200

    head = s3.head_object(Bucket=s3_bucket, Key="plain", ChecksumMode="ENABLED")

    expected = awscrt.checksums.crc64nvme(data).to_bytes(8, "big")
    assert head["ChecksumCRC64NVME"] == base64.b64encode(expected).decode()


def test_wrong_checksum_is_bad_digest(s3: Any, s3_bucket: str) -> None:
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=s3_bucket, Key="bad", Body=b"data", ChecksumCRC32="AAAAAA==")
    assert error_code(error) == "BadDigest"
    with pytest.raises(ClientError) as error:
        s3.put_object(
            Bucket=s3_bucket, Key="bad", Body=b"data", ContentMD5="1B2M2Y8AsgTpgAmY7PhCfg=="
        )
    assert error_code(error) == "BadDigest"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=s3_bucket, Key="bad")


def test_malformed_digest_is_invalid(s3: Any, s3_bucket: str) -> None:
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=s3_bucket, Key="bad", Body=b"data", ContentMD5="not-base64!")
    assert error_code(error) == "InvalidDigest"
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=s3_bucket, Key="bad", Body=b"data", ChecksumSHA256="AAAA")
    assert error_code(error) == "InvalidRequest"
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=s3_bucket, Key="bad", Body=b"data", ChecksumSHA256="bad")
    assert error_code(error) == "InvalidRequest"


def test_content_md5_accepted(s3: Any, s3_bucket: str) -> None:
    data = b"checked"
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    s3.put_object(Bucket=s3_bucket, Key="md5", Body=data, ContentMD5=md5)
    assert s3.get_object(Bucket=s3_bucket, Key="md5")["Body"].read() == data


def test_conditional_put(s3: Any, s3_bucket: str) -> None:
    first = s3.put_object(Bucket=s3_bucket, Key="w", Body=b"v1", IfNoneMatch="*")

    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=s3_bucket, Key="w", Body=b"v2", IfNoneMatch="*")
    assert status_of(error) == 412
    with pytest.raises(ClientError) as error:
        s3.put_object(
            Bucket=s3_bucket, Key="w", Body=b"v2", IfMatch='"00000000000000000000000000000000"'
        )
    assert status_of(error) == 412
    s3.put_object(Bucket=s3_bucket, Key="w", Body=b"v3", IfMatch=first["ETag"])
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=s3_bucket, Key="absent", Body=b"v", IfMatch=first["ETag"])
    assert error_code(error) == "NoSuchKey"

    assert s3.get_object(Bucket=s3_bucket, Key="w")["Body"].read() == b"v3"


def test_conditional_put_rfc_forms(s3: Any, s3_bucket: str) -> None:
    # If-Match: * needs any object, and nothing is written when there is none.
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=s3_bucket, Key="rfc", Body=b"v0", IfMatch="*")
    assert status_of(error) == 412
    assert error_code(error) == "PreconditionFailed"
    with pytest.raises(ClientError) as error:
        s3.head_object(Bucket=s3_bucket, Key="rfc")
    assert status_of(error) == 404

    first = s3.put_object(Bucket=s3_bucket, Key="rfc", Body=b"v1")
    s3.put_object(Bucket=s3_bucket, Key="rfc", Body=b"v2", IfMatch="*")
    second_etag = s3.head_object(Bucket=s3_bucket, Key="rfc")["ETag"]

    # If-None-Match with ETags fails only when the current ETag is one of them.
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=s3_bucket, Key="rfc", Body=b"v3", IfNoneMatch=f'"0", {second_etag}')
    assert status_of(error) == 412
    assert s3.get_object(Bucket=s3_bucket, Key="rfc")["Body"].read() == b"v2"
    s3.put_object(Bucket=s3_bucket, Key="rfc", Body=b"v3", IfNoneMatch=first["ETag"])
    s3.put_object(Bucket=s3_bucket, Key="new", Body=b"n", IfNoneMatch='"abc"')

    assert s3.get_object(Bucket=s3_bucket, Key="rfc")["Body"].read() == b"v3"
    assert s3.get_object(Bucket=s3_bucket, Key="new")["Body"].read() == b"n"


def test_conditional_put_race_one_wins(gateway: Any, s3_bucket: str) -> None:
    from .s3gw_support import s3_client

    writer_count = 8
    barrier = threading.Barrier(writer_count)
    outcomes: list[str] = []
    lock = threading.Lock()

    def write(index: int) -> None:
        client = s3_client(gateway)
        barrier.wait(timeout=30)
        try:
            client.put_object(
                Bucket=s3_bucket, Key="race", Body=f"writer {index}".encode(), IfNoneMatch="*"
            )
            outcome = f"won {index}"
        except ClientError as error:
            outcome = error.response["Error"]["Code"]
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writer_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    winners = [o for o in outcomes if o.startswith("won")]
    assert len(outcomes) == writer_count
    assert len(winners) == 1, outcomes
    assert outcomes.count("PreconditionFailed") == writer_count - 1
    body = s3_client(gateway).get_object(Bucket=s3_bucket, Key="race")["Body"].read()
    assert body == f"writer {winners[0].split()[1]}".encode()


def test_copy_object(s3: Any, s3_bucket: str) -> None:
    data = make_data(2 * MIB + 1, seed=7)
    source_key = "dir/a file+ü?.bin"
    put = s3.put_object(
        Bucket=s3_bucket, Key=source_key, Body=data, ContentType="text/x", Metadata={"a": "1"}
    )

    copied = s3.copy_object(
        Bucket=s3_bucket, Key="copy", CopySource={"Bucket": s3_bucket, "Key": source_key}
    )
    replaced = s3.copy_object(
        Bucket=s3_bucket,
        Key="replaced",
        CopySource=f"{s3_bucket}/{source_key}",
        MetadataDirective="REPLACE",
        ContentType="text/y",
        Metadata={"b": "2"},
    )

    assert copied["CopyObjectResult"]["ETag"] == put["ETag"]
    assert "CopySourceVersionId" not in copied, "the bucket never had versioning"
    assert replaced["CopyObjectResult"]["ETag"] == put["ETag"]
    copy_head = s3.head_object(Bucket=s3_bucket, Key="copy")
    assert copy_head["ContentType"] == "text/x"
    assert copy_head["Metadata"] == {"a": "1"}
    replaced_head = s3.head_object(Bucket=s3_bucket, Key="replaced")
    assert replaced_head["ContentType"] == "text/y"
    assert replaced_head["Metadata"] == {"b": "2"}
    assert s3.get_object(Bucket=s3_bucket, Key="copy")["Body"].read() == data


def test_copy_conditions_and_self_copy(s3: Any, s3_bucket: str) -> None:
    etag = s3.put_object(Bucket=s3_bucket, Key="src", Body=b"x")["ETag"]
    source = {"Bucket": s3_bucket, "Key": "src"}

    with pytest.raises(ClientError) as error:
        s3.copy_object(Bucket=s3_bucket, Key="dst", CopySource=source, CopySourceIfMatch='"0"')
    assert status_of(error) == 412
    with pytest.raises(ClientError) as error:
        s3.copy_object(Bucket=s3_bucket, Key="dst", CopySource=source, CopySourceIfNoneMatch=etag)
    assert status_of(error) == 412
    future = datetime.now(UTC) + timedelta(days=1)
    with pytest.raises(ClientError) as error:
        s3.copy_object(
            Bucket=s3_bucket, Key="dst", CopySource=source, CopySourceIfModifiedSince=future
        )
    assert status_of(error) == 412
    with pytest.raises(ClientError) as error:
        s3.copy_object(Bucket=s3_bucket, Key="src", CopySource=source)
    assert error_code(error) == "InvalidRequest"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=s3_bucket, Key="dst")

    s3.copy_object(
        Bucket=s3_bucket,
        Key="src",
        CopySource=source,
        MetadataDirective="REPLACE",
        Metadata={"new": "yes"},
        CopySourceIfMatch=etag,
    )
    assert s3.head_object(Bucket=s3_bucket, Key="src")["Metadata"] == {"new": "yes"}


def test_key_too_long(s3: Any, s3_bucket: str) -> None:
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=s3_bucket, Key="k" * 1025, Body=b"x")
    assert error_code(error) == "KeyTooLongError"
    s3.put_object(Bucket=s3_bucket, Key="é" * 512, Body=b"x")
    assert s3.head_object(Bucket=s3_bucket, Key="é" * 512)["ContentLength"] == 1


def test_metadata_too_large(s3: Any, s3_bucket: str) -> None:
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=s3_bucket, Key="m", Body=b"x", Metadata={"big": "v" * 2100})
    assert error_code(error) == "MetadataTooLarge"


def test_overwrite_changes_last_modified(s3: Any, s3_bucket: str) -> None:
    s3.put_object(Bucket=s3_bucket, Key="t", Body=b"1")
    first = s3.head_object(Bucket=s3_bucket, Key="t")["LastModified"]
    time.sleep(1.1)
    s3.put_object(Bucket=s3_bucket, Key="t", Body=b"22")
    second = s3.head_object(Bucket=s3_bucket, Key="t")
    assert second["LastModified"] > first
    assert second["ContentLength"] == 2
