"""Object tags through boto3: x-amz-tagging on writes, the tagging subresource and its limits."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

import store
from store.errors import PreconditionFailed

from .s3gw_support import upload_parts
from .support import MIB, make_data


def _tag_set(s3: Any, bucket: str, key: str) -> list[dict[str, str]]:
    return list(s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"])


def _tagging(pairs: dict[str, str]) -> dict[str, list[dict[str, str]]]:
    return {"TagSet": [{"Key": key, "Value": value} for key, value in pairs.items()]}


def _error(call: Any) -> tuple[str, int]:
    with pytest.raises(ClientError) as error:
        call()
    response = error.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_tags_set_on_put(s3: Any, s3_bucket: str) -> None:
    """Tags of the x-amz-tagging header come back sorted by key, and a bare key has no value."""
    s3.put_object(Bucket=s3_bucket, Key="k", Body=b"data", Tagging="team=ml&scratch&a%20b=c%2Fd")

    tag_set = _tag_set(s3, s3_bucket, "k")
    head = s3.head_object(Bucket=s3_bucket, Key="k")
    got = s3.get_object(Bucket=s3_bucket, Key="k")

    assert tag_set == [
        {"Key": "a b", "Value": "c/d"},
        {"Key": "scratch", "Value": ""},
        {"Key": "team", "Value": "ml"},
    ]
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "3"
    assert got["TagCount"] == 3
    assert got["Body"].read() == b"data"


def test_replace_and_delete_tags(s3: Any, s3_bucket: str) -> None:
    """PutObjectTagging and DeleteObjectTagging change the tags only, not the object."""
    s3.put_object(Bucket=s3_bucket, Key="plain", Body=b"data")
    s3.put_object(Bucket=s3_bucket, Key="k", Body=b"data", Tagging="old=1")
    before = s3.head_object(Bucket=s3_bucket, Key="k")
    untagged_set = _tag_set(s3, s3_bucket, "plain")

    s3.put_object_tagging(
        Bucket=s3_bucket, Key="k", Tagging=_tagging({"project": "llm", "stage": "raw"})
    )
    replaced = _tag_set(s3, s3_bucket, "k")
    after = s3.head_object(Bucket=s3_bucket, Key="k")
    delete_reply = s3.delete_object_tagging(Bucket=s3_bucket, Key="k")
    deleted = _tag_set(s3, s3_bucket, "k")
    untagged = s3.head_object(Bucket=s3_bucket, Key="k")
    s3.put_object_tagging(Bucket=s3_bucket, Key="k", Tagging=_tagging({"x": "y"}))
    s3.put_object_tagging(Bucket=s3_bucket, Key="k", Tagging={"TagSet": []})

    assert untagged_set == []
    assert replaced == [{"Key": "project", "Value": "llm"}, {"Key": "stage", "Value": "raw"}]
    assert after["ETag"] == before["ETag"]
    assert after["LastModified"] == before["LastModified"]
    assert delete_reply["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert deleted == []
    assert "x-amz-tagging-count" not in untagged["ResponseMetadata"]["HTTPHeaders"]
    assert _tag_set(s3, s3_bucket, "k") == []
    assert s3.get_object(Bucket=s3_bucket, Key="k")["Body"].read() == b"data"


def test_tag_limits(s3: Any, s3_bucket: str) -> None:
    """S3's limits: 10 tags, keys of 128 characters, values of 256, no repeated key."""
    s3.put_object(Bucket=s3_bucket, Key="k", Body=b"data")
    largest = {f"{n:03d}".ljust(128, "k"): "v" * 256 for n in range(10)}
    too_many = {f"key{n}": "v" for n in range(11)}
    repeated = {"TagSet": [{"Key": "same", "Value": "1"}, {"Key": "same", "Value": "2"}]}

    s3.put_object_tagging(Bucket=s3_bucket, Key="k", Tagging=_tagging(largest))
    stored = _tag_set(s3, s3_bucket, "k")
    cases = {
        "11 tags": _tagging(too_many),
        "129-character key": _tagging({"k" * 129: "v"}),
        "257-character value": _tagging({"k": "v" * 257}),
        "repeated key": repeated,
    }
    errors = {
        name: _error(lambda t=tagging: s3.put_object_tagging(Bucket=s3_bucket, Key="k", Tagging=t))
        for name, tagging in cases.items()
    }
    # boto3 checks the lengths of a TagSet's keys, but not those of a header.
    header_errors = {
        header: _error(
            lambda h=header: s3.put_object(Bucket=s3_bucket, Key="other", Body=b"x", Tagging=h)
        )
        for header in ("a=1&a=2", "=empty-key")
    }

    assert stored == [{"Key": key, "Value": value} for key, value in largest.items()]
    assert errors == {name: ("InvalidTag", 400) for name in cases}
    assert header_errors == {header: ("InvalidTag", 400) for header in header_errors}
    assert "Contents" not in s3.list_objects_v2(Bucket=s3_bucket, Prefix="other")
    assert _tag_set(s3, s3_bucket, "k") == stored, "a rejected request changed the tags"


def test_copy_tagging_directive(s3: Any, s3_bucket: str) -> None:
    s3.put_object(Bucket=s3_bucket, Key="src", Body=b"data", Tagging="from=source")
    source = {"Bucket": s3_bucket, "Key": "src"}

    s3.copy_object(Bucket=s3_bucket, Key="copied", CopySource=source)
    s3.copy_object(
        Bucket=s3_bucket,
        Key="replaced",
        CopySource=source,
        TaggingDirective="REPLACE",
        Tagging="new=tag",
    )
    s3.copy_object(
        Bucket=s3_bucket,
        Key="new-metadata",
        CopySource=source,
        MetadataDirective="REPLACE",
        Metadata={"m": "1"},
    )
    s3.copy_object(Bucket=s3_bucket, Key="untagged", CopySource=source, TaggingDirective="REPLACE")

    assert _tag_set(s3, s3_bucket, "copied") == [{"Key": "from", "Value": "source"}]
    assert _tag_set(s3, s3_bucket, "replaced") == [{"Key": "new", "Value": "tag"}]
    assert _tag_set(s3, s3_bucket, "new-metadata") == [{"Key": "from", "Value": "source"}]
    assert _tag_set(s3, s3_bucket, "untagged") == []


def test_multipart_upload_tags(s3: Any, s3_bucket: str) -> None:
    parts = [make_data(5 * MIB, seed=90), b"end"]

    upload_id, listed = upload_parts(s3, s3_bucket, "mp", parts, Tagging="kind=checkpoint")
    s3.complete_multipart_upload(
        Bucket=s3_bucket, Key="mp", UploadId=upload_id, MultipartUpload={"Parts": listed}
    )

    assert _tag_set(s3, s3_bucket, "mp") == [{"Key": "kind", "Value": "checkpoint"}]


def test_tagging_missing_object(s3: Any, s3_bucket: str) -> None:
    calls = {
        "get": lambda: s3.get_object_tagging(Bucket=s3_bucket, Key="absent"),
        "put": lambda: s3.put_object_tagging(
            Bucket=s3_bucket, Key="absent", Tagging=_tagging({"a": "b"})
        ),
        "delete": lambda: s3.delete_object_tagging(Bucket=s3_bucket, Key="absent"),
    }

    errors = {name: _error(call) for name, call in calls.items()}

    assert errors == {name: ("NoSuchKey", 404) for name in calls}
    assert "Contents" not in s3.list_objects_v2(Bucket=s3_bucket)


def test_bucket_tags(s3: Any, s3_bucket: str) -> None:
    """A bucket's tags: up to 50, sorted by key, absent (NoSuchTagSet) until set."""
    tags = {f"team-{n:02d}": f"value {n}" for n in range(50)}

    before = _error(lambda: s3.get_bucket_tagging(Bucket=s3_bucket))
    s3.put_bucket_tagging(Bucket=s3_bucket, Tagging=_tagging(dict(reversed(tags.items()))))
    stored = s3.get_bucket_tagging(Bucket=s3_bucket)["TagSet"]
    too_many = _error(
        lambda: s3.put_bucket_tagging(Bucket=s3_bucket, Tagging=_tagging({**tags, "extra": "1"}))
    )
    after_rejected = s3.get_bucket_tagging(Bucket=s3_bucket)["TagSet"]
    s3.delete_bucket_tagging(Bucket=s3_bucket)
    after = _error(lambda: s3.get_bucket_tagging(Bucket=s3_bucket))

    assert before == ("NoSuchTagSet", 404)
    assert stored == [{"Key": key, "Value": value} for key, value in tags.items()]
    assert too_many == ("InvalidTag", 400)
    assert after_rejected == stored
    assert after == ("NoSuchTagSet", 404)


def test_update_checks_version(client: store.Client, bucket: str) -> None:
    """The SDK's in-place metadata update applies only to the version it names."""
    first = client.put(bucket, "k", b"one")
    second = client.put(bucket, "k", b"two")

    with pytest.raises(PreconditionFailed):
        client.update_system_metadata(
            bucket, "k", set_entries={"x-amz-tagging": "a=1"}, if_version_id=first.version_id
        )
    updated = client.update_system_metadata(
        bucket, "k", set_entries={"x-amz-tagging": "a=1"}, if_version_id=second.version_id
    )

    assert updated.system_metadata == {"x-amz-tagging": "a=1"}
    assert updated.version_id == second.version_id
    assert client.get(bucket, "k") == b"two"
