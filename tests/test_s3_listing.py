"""ListObjects V1 and V2 through the gateway, checked against a model of S3's rules."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from .s3gw_support import REGION, GatewayInfo

KEYS = sorted(
    [
        "a.txt",
        "b/1",
        "b/2",
        "b/c/3",
        "b/c/4",
        "c",
        "d/e/f/g",
        "d/x",
        "space key",
        "plus+key",
        "unicode/é/ü",
        "z" * 300,
    ]
    + [f"many/{i:03d}" for i in range(23)],
    key=lambda key: key.encode(),
)


@pytest.fixture
def listed_bucket(s3: Any, s3_bucket: str) -> str:
    for key in KEYS:
        s3.put_object(Bucket=s3_bucket, Key=key, Body=key.encode()[:10])
    return s3_bucket


def model(prefix: str, delimiter: str) -> tuple[list[str], list[str]]:
    """Return the keys and common prefixes S3 lists for a prefix and delimiter."""
    keys: list[str] = []
    prefixes: list[str] = []
    for key in KEYS:
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        if delimiter and delimiter in rest:
            common = prefix + rest[: rest.index(delimiter) + len(delimiter)]
            if common not in prefixes:
                prefixes.append(common)
        else:
            keys.append(key)
    return keys, prefixes


@pytest.mark.parametrize("page_size", [1, 4, 1000])
@pytest.mark.parametrize(("prefix", "delimiter"), [("", ""), ("", "/"), ("b/", "/"), ("d", "/")])
def test_list_v2_paginator(
    s3: Any, listed_bucket: str, page_size: int, prefix: str, delimiter: str
) -> None:
    pages = list(
        s3.get_paginator("list_objects_v2").paginate(
            Bucket=listed_bucket,
            Prefix=prefix,
            Delimiter=delimiter,
            PaginationConfig={"PageSize": page_size},
        )
    )

    keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
    prefixes = [item["Prefix"] for page in pages for item in page.get("CommonPrefixes", [])]
    expected_keys, expected_prefixes = model(prefix, delimiter)
    assert keys == expected_keys
    assert prefixes == expected_prefixes
    assert all(page["KeyCount"] <= page_size for page in pages)
    assert sum(page["KeyCount"] for page in pages) == len(keys) + len(prefixes)
    assert not pages[-1]["IsTruncated"]


@pytest.mark.parametrize("page_size", [2, 1000])
@pytest.mark.parametrize("delimiter", ["", "/"])
def test_list_v1_paginator(s3: Any, listed_bucket: str, page_size: int, delimiter: str) -> None:
    pages = list(
        s3.get_paginator("list_objects").paginate(
            Bucket=listed_bucket, Delimiter=delimiter, PaginationConfig={"PageSize": page_size}
        )
    )

    keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
    prefixes = [item["Prefix"] for page in pages for item in page.get("CommonPrefixes", [])]
    expected_keys, expected_prefixes = model("", delimiter)
    assert keys == expected_keys
    assert prefixes == expected_prefixes
    assert all("Owner" in item for page in pages for item in page.get("Contents", []))


def test_list_max_keys_zero(s3: Any, listed_bucket: str) -> None:
    page = s3.list_objects_v2(Bucket=listed_bucket, MaxKeys=0)
    assert page["KeyCount"] == 0
    assert "Contents" not in page
    assert page["MaxKeys"] == 0


def test_list_start_after(s3: Any, listed_bucket: str) -> None:
    page = s3.list_objects_v2(Bucket=listed_bucket, StartAfter="b/c/3")
    keys = [item["Key"] for item in page["Contents"]]
    assert keys == [key for key in KEYS if key.encode() > b"b/c/3"]
    assert page["StartAfter"] == "b/c/3"


def test_list_start_after_common_prefix(s3: Any, listed_bucket: str) -> None:
    page = s3.list_objects_v2(Bucket=listed_bucket, Delimiter="/", StartAfter="b/")
    assert [p["Prefix"] for p in page["CommonPrefixes"]][:1] == ["d/"]
    assert "b/" not in [p["Prefix"] for p in page["CommonPrefixes"]]


def test_list_encoding_type_url(s3: Any, listed_bucket: str) -> None:
    # boto3 decodes the names only when it chose encoding-type=url itself.
    page = s3.list_objects_v2(Bucket=listed_bucket, Prefix="unicode/", EncodingType="url")
    spaced = s3.list_objects_v2(Bucket=listed_bucket, Prefix="space", EncodingType="url")

    assert [item["Key"] for item in page["Contents"]] == ["unicode/%C3%A9/%C3%BC"]
    assert page["Prefix"] == "unicode/"
    assert [item["Key"] for item in spaced["Contents"]] == ["space%20key"]
    assert unquote(spaced["Contents"][0]["Key"]) == "space key"


def test_list_fetch_owner(s3: Any, listed_bucket: str) -> None:
    plain = s3.list_objects_v2(Bucket=listed_bucket, MaxKeys=1)
    owned = s3.list_objects_v2(Bucket=listed_bucket, MaxKeys=1, FetchOwner=True)
    assert "Owner" not in plain["Contents"][0]
    assert owned["Contents"][0]["Owner"]["ID"] == "root"


def test_list_bad_arguments(s3: Any, listed_bucket: str) -> None:
    with pytest.raises(ClientError) as error:
        s3.list_objects_v2(Bucket=listed_bucket, ContinuationToken="not a token")
    assert error.value.response["Error"]["Code"] == "InvalidArgument"
    with pytest.raises(ClientError) as error:
        s3.list_objects_v2(Bucket=listed_bucket, EncodingType="base64")
    assert error.value.response["Error"]["Code"] == "InvalidArgument"


def test_list_missing_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as error:
        s3.list_objects_v2(Bucket="no-such-bucket-here")
    assert error.value.response["Error"]["Code"] == "NoSuchBucket"


@pytest.mark.parametrize("page_size", [3, 1000])
@pytest.mark.parametrize(("prefix", "delimiter"), [("", ""), ("b/", "/"), ("", "/")])
def test_list_versions_paginator(
    s3: Any, listed_bucket: str, page_size: int, prefix: str, delimiter: str
) -> None:
    """An unversioned bucket lists each object once, as its latest version "null"."""
    pages = list(
        s3.get_paginator("list_object_versions").paginate(
            Bucket=listed_bucket,
            Prefix=prefix,
            Delimiter=delimiter,
            PaginationConfig={"PageSize": page_size},
        )
    )

    versions = [item for page in pages for item in page.get("Versions", [])]
    prefixes = [item["Prefix"] for page in pages for item in page.get("CommonPrefixes", [])]
    expected_keys, expected_prefixes = model(prefix, delimiter)
    assert [item["Key"] for item in versions] == expected_keys
    assert prefixes == expected_prefixes
    assert {item["VersionId"] for item in versions} == {"null"}
    assert all(item["IsLatest"] for item in versions)
    assert all(item["Owner"]["ID"] == "root" for item in versions)
    assert all("DeleteMarkers" not in page for page in pages)
    assert not pages[-1]["IsTruncated"]


def test_list_versions_markers(s3: Any, listed_bucket: str) -> None:
    first = s3.list_object_versions(Bucket=listed_bucket, MaxKeys=2)
    assert first["IsTruncated"]
    assert first["NextKeyMarker"] == KEYS[1]
    assert first["NextVersionIdMarker"] == "null"

    rest = s3.list_object_versions(
        Bucket=listed_bucket, MaxKeys=2, KeyMarker=KEYS[1], VersionIdMarker="null"
    )
    assert [item["Key"] for item in rest["Versions"]] == KEYS[2:4]
    assert rest["KeyMarker"] == KEYS[1]
    assert rest["VersionIdMarker"] == "null"


def test_list_versions_bad_markers(s3: Any, listed_bucket: str) -> None:
    with pytest.raises(ClientError) as error:
        s3.list_object_versions(Bucket=listed_bucket, VersionIdMarker="null")
    assert error.value.response["Error"]["Code"] == "InvalidArgument"
    with pytest.raises(ClientError) as error:
        s3.list_object_versions(Bucket=listed_bucket, KeyMarker="c", VersionIdMarker="v2")
    assert error.value.response["Error"]["Code"] == "InvalidArgument"
    assert "v2" in error.value.response["Error"]["Message"]


def test_object_versions_delete_empties_bucket(
    gateway: GatewayInfo, s3: Any, listed_bucket: str
) -> None:
    """boto3's usual way to empty a bucket: list the versions, delete them by version id."""
    resource = boto3.resource(
        "s3",
        endpoint_url=gateway.endpoint,
        aws_access_key_id=gateway.access_key,
        aws_secret_access_key=gateway.secret_key,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}),
    )
    bucket = resource.Bucket(listed_bucket)

    replies = bucket.object_versions.delete()

    deleted = [item for reply in replies for item in reply.get("Deleted", [])]
    assert sorted(item["Key"] for item in deleted) == sorted(KEYS)
    assert {item["VersionId"] for item in deleted} == {"null"}
    assert s3.list_objects_v2(Bucket=listed_bucket)["KeyCount"] == 0
    s3.delete_bucket(Bucket=listed_bucket)
