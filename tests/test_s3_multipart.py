"""Multipart uploads through the gateway: boto3's transfer manager, part rules,
ListParts and ListMultipartUploads, UploadPartCopy and conditional completion."""

from __future__ import annotations

import base64
import hashlib
import threading
from pathlib import Path
from typing import Any

import awscrt.checksums
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from .s3gw_support import GatewayInfo, s3_client, upload_parts
from .support import MIB, make_data

PART_BYTES = 5 * MIB


def error_code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


def multipart_etag(parts: list[bytes]) -> str:
    digests = b"".join(hashlib.md5(part).digest() for part in parts)
    return f'"{hashlib.md5(digests).hexdigest()}-{len(parts)}"'


def test_transfer_manager_round_trip(s3: Any, s3_bucket: str, tmp_path: Path) -> None:
    data = make_data(12 * MIB + 321, seed=10)
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    config = TransferConfig(multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES)

    s3.upload_file(str(source), s3_bucket, "big.bin", Config=config)
    s3.download_file(s3_bucket, "big.bin", str(tmp_path / "copy.bin"), Config=config)

    parts = [data[i : i + PART_BYTES] for i in range(0, len(data), PART_BYTES)]
    head = s3.head_object(Bucket=s3_bucket, Key="big.bin", ChecksumMode="ENABLED")
    assert (tmp_path / "copy.bin").read_bytes() == data
    assert head["ETag"] == multipart_etag(parts)
    assert head["ContentLength"] == len(data)


def test_small_file_below_threshold(s3: Any, s3_bucket: str, tmp_path: Path) -> None:
    data = make_data(PART_BYTES - 1, seed=11)
    source = tmp_path / "small.bin"
    source.write_bytes(data)
    config = TransferConfig(multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES)

    s3.upload_file(str(source), s3_bucket, "small.bin", Config=config)

    head = s3.head_object(Bucket=s3_bucket, Key="small.bin")
    assert head["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'


def test_full_object_crc64nvme(s3: Any, s3_bucket: str) -> None:
    parts = [make_data(PART_BYTES, 12), make_data(1234, 13)]
    upload_id = s3.create_multipart_upload(
        Bucket=s3_bucket, Key="crc", ChecksumAlgorithm="CRC64NVME", ChecksumType="FULL_OBJECT"
    )["UploadId"]
    done = []
    for number, data in enumerate(parts, start=1):
        part = s3.upload_part(
            Bucket=s3_bucket,
            Key="crc",
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
            ChecksumAlgorithm="CRC64NVME",
        )
        done.append({"PartNumber": number, "ETag": part["ETag"]})

    completed = s3.complete_multipart_upload(
        Bucket=s3_bucket, Key="crc", UploadId=upload_id, MultipartUpload={"Parts": done}
    )

    whole = awscrt.checksums.crc64nvme(b"".join(parts)).to_bytes(8, "big")
    expected = base64.b64encode(whole).decode()
    assert completed["ChecksumCRC64NVME"] == expected
    head = s3.head_object(Bucket=s3_bucket, Key="crc", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == expected
    assert head["ChecksumType"] == "FULL_OBJECT"


def _crc64nvme(data: bytes) -> str:
    return base64.b64encode(awscrt.checksums.crc64nvme(data).to_bytes(8, "big")).decode()


def test_default_checksum_without_algorithm(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    """An upload created without an algorithm gets S3's default: full-object CRC-64/NVME.

    This holds for parts sent without a checksum, parts with another one, and copied parts.
    """
    plain = s3_client(gateway, request_checksum_calculation="when_required")
    source = make_data(PART_BYTES, 18)
    s3.put_object(Bucket=s3_bucket, Key="source", Body=source)
    parts = [make_data(PART_BYTES, 19), make_data(PART_BYTES, 20)]
    upload_id = plain.create_multipart_upload(Bucket=s3_bucket, Key="default")["UploadId"]

    unchecked = plain.upload_part(
        Bucket=s3_bucket, Key="default", UploadId=upload_id, PartNumber=1, Body=parts[0]
    )
    with_crc32 = s3.upload_part(
        Bucket=s3_bucket,
        Key="default",
        UploadId=upload_id,
        PartNumber=2,
        Body=parts[1],
        ChecksumAlgorithm="CRC32",
    )
    copied = plain.upload_part_copy(
        Bucket=s3_bucket,
        Key="default",
        UploadId=upload_id,
        PartNumber=3,
        CopySource={"Bucket": s3_bucket, "Key": "source"},
    )["CopyPartResult"]
    listed = plain.list_parts(Bucket=s3_bucket, Key="default", UploadId=upload_id)["Parts"]
    etags = [unchecked["ETag"], with_crc32["ETag"], copied["ETag"]]
    completed = plain.complete_multipart_upload(
        Bucket=s3_bucket,
        Key="default",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]},
    )
    head = s3.head_object(Bucket=s3_bucket, Key="default", ChecksumMode="ENABLED")
    body = s3.get_object(Bucket=s3_bucket, Key="default", ChecksumMode="ENABLED")["Body"].read()

    whole = b"".join([*parts, source])
    assert unchecked["ChecksumCRC64NVME"] == _crc64nvme(parts[0])
    assert "ChecksumCRC64NVME" not in with_crc32
    assert copied["ChecksumCRC64NVME"] == _crc64nvme(source)
    assert [part.get("ChecksumCRC64NVME") for part in listed] == [
        _crc64nvme(data) for data in (*parts, source)
    ]
    assert completed["ChecksumCRC64NVME"] == _crc64nvme(whole)
    assert completed["ChecksumType"] == "FULL_OBJECT"
    assert head["ChecksumCRC64NVME"] == _crc64nvme(whole)
    assert head["ChecksumType"] == "FULL_OBJECT"
    assert body == whole


def test_composite_sha256_checked_on_complete(s3: Any, s3_bucket: str) -> None:
    parts = [make_data(PART_BYTES, 14), make_data(999, 15)]
    upload_id, listed = upload_parts(s3, s3_bucket, "sha", parts, checksum_algorithm="SHA256")
    digests = b"".join(hashlib.sha256(data).digest() for data in parts)
    composite = f"{base64.b64encode(hashlib.sha256(digests).digest()).decode()}-2"
    wrong = f"{base64.b64encode(hashlib.sha256(b'other').digest()).decode()}-2"

    def complete(part_list: list[dict[str, Any]], **checksum: str) -> dict[str, Any]:
        return dict(
            s3.complete_multipart_upload(
                Bucket=s3_bucket,
                Key="sha",
                UploadId=upload_id,
                MultipartUpload={"Parts": part_list},
                **checksum,
            )
        )

    cases: list[tuple[list[dict[str, Any]], dict[str, str], str]] = [
        (listed, {"ChecksumSHA256": "bad"}, "InvalidRequest"),
        ([{**listed[0]}, {"PartNumber": 2, "ETag": listed[1]["ETag"]}], {}, "InvalidRequest"),
        (listed, {"ChecksumSHA256": wrong}, "BadDigest"),
        (listed, {"ChecksumCRC32": "AAAAAA=="}, "InvalidRequest"),
    ]
    for part_list, checksum, code in cases:
        with pytest.raises(ClientError) as error:
            complete(part_list, **checksum)
        assert error_code(error) == code, checksum
    with pytest.raises(ClientError) as error:
        s3.head_object(Bucket=s3_bucket, Key="sha")
    assert error.value.response["Error"]["Code"] == "404", "a failed complete stored the object"

    completed = complete(listed, ChecksumSHA256=composite)

    assert completed["ChecksumSHA256"] == composite
    head = s3.head_object(Bucket=s3_bucket, Key="sha", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == composite


def test_part_too_small(s3: Any, s3_bucket: str) -> None:
    upload_id, done = upload_parts(s3, s3_bucket, "k", [b"a" * 1000, b"b" * 1000])
    with pytest.raises(ClientError) as error:
        s3.complete_multipart_upload(
            Bucket=s3_bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": done}
        )
    assert error_code(error) == "EntityTooSmall"


def test_invalid_part_and_order(s3: Any, s3_bucket: str) -> None:
    upload_id, done = upload_parts(s3, s3_bucket, "k", [make_data(PART_BYTES, 14), b"end"])

    wrong_etag = [done[0], {"PartNumber": 2, "ETag": '"00000000000000000000000000000000"'}]
    with pytest.raises(ClientError) as error:
        s3.complete_multipart_upload(
            Bucket=s3_bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": wrong_etag}
        )
    assert error_code(error) == "InvalidPart"
    missing = [done[0], {"PartNumber": 3, "ETag": done[1]["ETag"]}]
    with pytest.raises(ClientError) as error:
        s3.complete_multipart_upload(
            Bucket=s3_bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": missing}
        )
    assert error_code(error) == "InvalidPart"
    with pytest.raises(ClientError) as error:
        s3.complete_multipart_upload(
            Bucket=s3_bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": done[::-1]}
        )
    assert error_code(error) == "InvalidPartOrder"

    s3.complete_multipart_upload(
        Bucket=s3_bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": done}
    )
    assert s3.head_object(Bucket=s3_bucket, Key="k")["ContentLength"] == PART_BYTES + 3


def test_complete_retry_succeeds(s3: Any, s3_bucket: str) -> None:
    """A client that retries a complete after a lost response gets the same object back."""
    upload_id, done = upload_parts(s3, s3_bucket, "k", [make_data(PART_BYTES, 16), b"end"])
    arguments = {
        "Bucket": s3_bucket,
        "Key": "k",
        "UploadId": upload_id,
        "MultipartUpload": {"Parts": done},
    }
    first = s3.complete_multipart_upload(**arguments)
    again = s3.complete_multipart_upload(**arguments)
    assert again["ETag"] == first["ETag"]
    assert s3.head_object(Bucket=s3_bucket, Key="k")["ContentLength"] == PART_BYTES + 3

    arguments["MultipartUpload"] = {"Parts": done[:1]}
    with pytest.raises(ClientError) as error:
        s3.complete_multipart_upload(**arguments)
    assert error_code(error) == "NoSuchUpload"
    message = error.value.response["Error"]["Message"]
    assert upload_id in message, message
    assert "127.0.0.1" not in message, "the message names a metaserver's address"


def test_abort_then_no_such_upload(s3: Any, s3_bucket: str) -> None:
    upload_id, _done = upload_parts(s3, s3_bucket, "k", [b"x"])

    s3.abort_multipart_upload(Bucket=s3_bucket, Key="k", UploadId=upload_id)

    with pytest.raises(ClientError) as error:
        s3.upload_part(Bucket=s3_bucket, Key="k", UploadId=upload_id, PartNumber=2, Body=b"y")
    assert error_code(error) == "NoSuchUpload"
    with pytest.raises(ClientError) as error:
        s3.list_parts(Bucket=s3_bucket, Key="k", UploadId=upload_id)
    assert error_code(error) == "NoSuchUpload"
    with pytest.raises(ClientError) as error:
        s3.abort_multipart_upload(Bucket=s3_bucket, Key="k", UploadId=upload_id)
    assert error_code(error) == "NoSuchUpload"
    with pytest.raises(ClientError) as error:
        s3.list_parts(Bucket=s3_bucket, Key="k", UploadId="not-an-upload-id")
    assert error_code(error) == "NoSuchUpload"


def test_part_number_out_of_range(s3: Any, s3_bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=s3_bucket, Key="k")["UploadId"]
    for number in (0, 10001):
        with pytest.raises(ClientError) as error:
            s3.upload_part(
                Bucket=s3_bucket, Key="k", UploadId=upload_id, PartNumber=number, Body=b"x"
            )
        assert error_code(error) == "InvalidArgument"


def test_list_parts_paginated(s3: Any, s3_bucket: str) -> None:
    parts = [f"part {n}".encode() for n in range(1, 8)]
    upload_id, done = upload_parts(s3, s3_bucket, "k", parts)

    pages = list(
        s3.get_paginator("list_parts").paginate(
            Bucket=s3_bucket, Key="k", UploadId=upload_id, PaginationConfig={"PageSize": 3}
        )
    )

    listed = [part for page in pages for part in page.get("Parts", [])]
    assert len(pages) == 3
    assert [p["PartNumber"] for p in listed] == list(range(1, 8))
    assert [p["ETag"] for p in listed] == [d["ETag"] for d in done]
    assert [p["Size"] for p in listed] == [len(p) for p in parts]


def test_list_multipart_uploads(s3: Any, s3_bucket: str) -> None:
    created = {}
    for key in ("a/1", "a/2", "b/1", "a/1"):
        upload_id = s3.create_multipart_upload(Bucket=s3_bucket, Key=key)["UploadId"]
        created.setdefault(key, []).append(upload_id)

    pages = list(
        s3.get_paginator("list_multipart_uploads").paginate(
            Bucket=s3_bucket, Prefix="a/", PaginationConfig={"PageSize": 2}
        )
    )

    listed = [(u["Key"], u["UploadId"]) for page in pages for u in page.get("Uploads", [])]
    expected = sorted((key, upload) for key in ("a/1", "a/2") for upload in created[key])
    assert sorted(listed) == expected
    assert len(listed) == len(set(listed))
    for key, upload_id in listed:
        s3.abort_multipart_upload(Bucket=s3_bucket, Key=key, UploadId=upload_id)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=s3_bucket, Prefix="a/")


def test_list_multipart_uploads_delimiter(s3: Any, s3_bucket: str) -> None:
    """Keys with the delimiter after the prefix roll up into CommonPrefixes, each one entry of
    a page, as in ListObjects. minio-js sends an empty delimiter before every upload."""
    keys = ["a/1", "a/2", "a/x/1", "b/1", "b/2", "c", "d/1", "e"]
    for key in keys:
        s3.create_multipart_upload(Bucket=s3_bucket, Key=key)

    pages = list(
        s3.get_paginator("list_multipart_uploads").paginate(
            Bucket=s3_bucket, Delimiter="/", PaginationConfig={"PageSize": 2}
        )
    )
    under_a = s3.list_multipart_uploads(Bucket=s3_bucket, Prefix="a/", Delimiter="/")
    empty = s3.list_multipart_uploads(Bucket=s3_bucket, Delimiter="")

    entries = [
        [u["Key"] for u in page.get("Uploads", [])]
        + [c["Prefix"] for c in page.get("CommonPrefixes", [])]
        for page in pages
    ]
    assert entries == [["a/", "b/"], ["c", "d/"], ["e"]]
    assert [page["IsTruncated"] for page in pages] == [True, True, False]
    assert pages[0]["Delimiter"] == "/"
    assert [u["Key"] for u in under_a["Uploads"]] == ["a/1", "a/2"]
    assert [c["Prefix"] for c in under_a["CommonPrefixes"]] == ["a/x/"]
    assert [u["Key"] for u in empty["Uploads"]] == keys
    assert "CommonPrefixes" not in empty


def test_upload_part_copy(s3: Any, s3_bucket: str) -> None:
    source = make_data(7 * MIB, seed=15)
    s3.put_object(Bucket=s3_bucket, Key="source", Body=source)
    upload_id = s3.create_multipart_upload(Bucket=s3_bucket, Key="target")["UploadId"]

    first = s3.upload_part_copy(
        Bucket=s3_bucket,
        Key="target",
        UploadId=upload_id,
        PartNumber=1,
        CopySource={"Bucket": s3_bucket, "Key": "source"},
        CopySourceRange=f"bytes=0-{PART_BYTES - 1}",
    )
    second = s3.upload_part_copy(
        Bucket=s3_bucket,
        Key="target",
        UploadId=upload_id,
        PartNumber=2,
        CopySource={"Bucket": s3_bucket, "Key": "source"},
        CopySourceRange=f"bytes={6 * MIB}-{7 * MIB - 1}",
    )
    s3.complete_multipart_upload(
        Bucket=s3_bucket,
        Key="target",
        UploadId=upload_id,
        MultipartUpload={
            "Parts": [
                {"PartNumber": 1, "ETag": first["CopyPartResult"]["ETag"]},
                {"PartNumber": 2, "ETag": second["CopyPartResult"]["ETag"]},
            ]
        },
    )

    body = s3.get_object(Bucket=s3_bucket, Key="target")["Body"].read()
    assert body == source[:PART_BYTES] + source[6 * MIB :]
    with pytest.raises(ClientError) as error:
        s3.upload_part_copy(
            Bucket=s3_bucket,
            Key="target2",
            UploadId=s3.create_multipart_upload(Bucket=s3_bucket, Key="target2")["UploadId"],
            PartNumber=1,
            CopySource={"Bucket": s3_bucket, "Key": "source"},
            CopySourceRange=f"bytes=0-{8 * MIB}",
        )
    assert error_code(error) == "InvalidRange"


def test_upload_part_copy_checksum(s3: Any, s3_bucket: str) -> None:
    """A copied part gets the checksum its upload was created with, so the upload completes."""
    source = make_data(6 * MIB, seed=17)
    s3.put_object(Bucket=s3_bucket, Key="source", Body=source)
    upload_id = s3.create_multipart_upload(
        Bucket=s3_bucket, Key="target", ChecksumAlgorithm="SHA256"
    )["UploadId"]

    copied = s3.upload_part_copy(
        Bucket=s3_bucket,
        Key="target",
        UploadId=upload_id,
        PartNumber=1,
        CopySource={"Bucket": s3_bucket, "Key": "source"},
    )["CopyPartResult"]
    part = {"PartNumber": 1, "ETag": copied["ETag"], "ChecksumSHA256": copied["ChecksumSHA256"]}
    s3.complete_multipart_upload(
        Bucket=s3_bucket, Key="target", UploadId=upload_id, MultipartUpload={"Parts": [part]}
    )
    head = s3.head_object(Bucket=s3_bucket, Key="target", ChecksumMode="ENABLED")

    part_sha256 = hashlib.sha256(source).digest()
    assert copied["ChecksumSHA256"] == base64.b64encode(part_sha256).decode()
    composite = base64.b64encode(hashlib.sha256(part_sha256).digest()).decode()
    assert head["ChecksumSHA256"] == f"{composite}-1"
    aborted = s3.create_multipart_upload(Bucket=s3_bucket, Key="target")["UploadId"]
    s3.abort_multipart_upload(Bucket=s3_bucket, Key="target", UploadId=aborted)
    with pytest.raises(ClientError) as error:
        s3.upload_part_copy(
            Bucket=s3_bucket,
            Key="target",
            UploadId=aborted,
            PartNumber=1,
            CopySource={"Bucket": s3_bucket, "Key": "source"},
        )
    assert error_code(error) == "NoSuchUpload"


def test_metadata_of_multipart_object(s3: Any, s3_bucket: str) -> None:
    upload_id, done = upload_parts(
        s3,
        s3_bucket,
        "k",
        [b"only part"],
        ContentType="text/plain",
        Metadata={"origin": "multipart"},
        CacheControl="no-store",
    )
    s3.complete_multipart_upload(
        Bucket=s3_bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": done}
    )

    head = s3.head_object(Bucket=s3_bucket, Key="k")
    assert head["ContentType"] == "text/plain"
    assert head["Metadata"] == {"origin": "multipart"}
    assert head["CacheControl"] == "no-store"
    assert head["ETag"] == multipart_etag([b"only part"])


def test_conditional_complete_race(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    uploads = [upload_parts(s3, s3_bucket, "race", [f"writer {n}".encode()]) for n in range(4)]
    barrier = threading.Barrier(len(uploads))
    outcomes: list[str] = []
    lock = threading.Lock()

    def complete(upload_id: str, parts: list[dict[str, Any]]) -> None:
        client = s3_client(gateway)
        barrier.wait(timeout=30)
        try:
            client.complete_multipart_upload(
                Bucket=s3_bucket,
                Key="race",
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
            outcome = "won"
        except ClientError as error:
            outcome = error.response["Error"]["Code"]
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=complete, args=upload) for upload in uploads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(outcomes) == ["PreconditionFailed"] * 3 + ["won"]


def test_conditional_complete_rfc_forms(s3: Any, s3_bucket: str) -> None:
    upload_id, parts = upload_parts(s3, s3_bucket, "cond", [b"first"])

    def complete(**condition: str) -> None:
        s3.complete_multipart_upload(
            Bucket=s3_bucket,
            Key="cond",
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
            **condition,
        )

    # If-Match: * fails while no object exists, and the upload stays open.
    with pytest.raises(ClientError) as error:
        complete(IfMatch="*")
    assert error.value.response["Error"]["Code"] == "PreconditionFailed"

    current = s3.put_object(Bucket=s3_bucket, Key="cond", Body=b"plain")
    with pytest.raises(ClientError) as error:
        complete(IfNoneMatch=current["ETag"])
    assert error.value.response["Error"]["Code"] == "PreconditionFailed"
    assert s3.get_object(Bucket=s3_bucket, Key="cond")["Body"].read() == b"plain"

    complete(IfMatch="*")
    assert s3.get_object(Bucket=s3_bucket, Key="cond")["Body"].read() == b"first"
