"""GetObjectAttributes through boto3: attributes of single-part and multipart objects."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from botocore.exceptions import ClientError

from .s3gw_support import GatewayInfo, object_url, send, sign, upload_parts
from .support import MIB, make_data

ALL_ATTRIBUTES = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]


def _sha256_base64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_single_part_object(s3: Any, s3_bucket: str) -> None:
    data = make_data(3000, seed=80)
    put = s3.put_object(Bucket=s3_bucket, Key="one", Body=data, ChecksumAlgorithm="SHA256")
    head = s3.head_object(Bucket=s3_bucket, Key="one")

    attributes = s3.get_object_attributes(
        Bucket=s3_bucket, Key="one", ObjectAttributes=ALL_ATTRIBUTES
    )
    size_only = s3.get_object_attributes(
        Bucket=s3_bucket, Key="one", ObjectAttributes=["ObjectSize"]
    )

    assert attributes["ETag"] == hashlib.md5(data).hexdigest()
    assert put["ETag"] == f'"{attributes["ETag"]}"'
    assert attributes["ObjectSize"] == len(data)
    assert attributes["StorageClass"] == "STANDARD"
    assert attributes["Checksum"] == {
        "ChecksumSHA256": _sha256_base64(data),
        "ChecksumType": "FULL_OBJECT",
    }
    assert "ObjectParts" not in attributes
    assert attributes["LastModified"] == head["LastModified"]
    assert size_only["ObjectSize"] == len(data)
    assert "ETag" not in size_only
    assert "Checksum" not in size_only


def test_multipart_parts_paged(s3: Any, s3_bucket: str) -> None:
    parts = [make_data(5 * MIB, seed=81), make_data(5 * MIB, seed=82), make_data(700, seed=83)]
    upload_id, listed = upload_parts(s3, s3_bucket, "multi", parts, checksum_algorithm="SHA256")
    s3.complete_multipart_upload(
        Bucket=s3_bucket, Key="multi", UploadId=upload_id, MultipartUpload={"Parts": listed}
    )

    first = s3.get_object_attributes(
        Bucket=s3_bucket, Key="multi", ObjectAttributes=ALL_ATTRIBUTES, MaxParts=2
    )
    rest = s3.get_object_attributes(
        Bucket=s3_bucket,
        Key="multi",
        ObjectAttributes=["ObjectParts"],
        PartNumberMarker=first["ObjectParts"]["NextPartNumberMarker"],
    )

    assert first["ETag"].endswith("-3")
    assert first["ObjectSize"] == sum(len(p) for p in parts)
    assert first["Checksum"]["ChecksumType"] == "COMPOSITE"
    assert first["ObjectParts"]["TotalPartsCount"] == 3
    assert first["ObjectParts"]["IsTruncated"] is True
    assert first["ObjectParts"]["MaxParts"] == 2
    assert first["ObjectParts"]["NextPartNumberMarker"] == 2
    assert first["ObjectParts"]["Parts"] == [
        {"PartNumber": n, "Size": len(p), "ChecksumSHA256": _sha256_base64(p)}
        for n, p in enumerate(parts[:2], start=1)
    ]
    assert rest["ObjectParts"]["IsTruncated"] is False
    assert rest["ObjectParts"]["PartNumberMarker"] == 2
    assert rest["ObjectParts"]["Parts"] == [
        {"PartNumber": 3, "Size": 700, "ChecksumSHA256": _sha256_base64(parts[2])}
    ]


def test_invalid_attribute_names(s3: Any, gateway: GatewayInfo, s3_bucket: str) -> None:
    s3.put_object(Bucket=s3_bucket, Key="k", Body=b"value")

    with pytest.raises(ClientError) as unknown:
        s3.get_object_attributes(Bucket=s3_bucket, Key="k", ObjectAttributes=["Size"])
    url = object_url(gateway, s3_bucket, "k", "attributes")
    missing = send(gateway, sign(gateway, "GET", url))

    assert unknown.value.response["Error"]["Code"] == "InvalidArgument"
    assert "Size" in unknown.value.response["Error"]["Message"]
    assert missing.status == 400
    assert missing.code == "InvalidArgument"


def test_missing_object(s3: Any, s3_bucket: str) -> None:
    with pytest.raises(ClientError) as error:
        s3.get_object_attributes(Bucket=s3_bucket, Key="absent", ObjectAttributes=["ETag"])

    assert error.value.response["Error"]["Code"] == "NoSuchKey"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
