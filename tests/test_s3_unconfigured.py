"""Bucket and object settings the gateway never stores.

Reads return S3's "not set" error or empty document, deletes succeed, and both check the
bucket and the caller first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

import store

from .s3gw_support import GatewayInfo, s3_client
from .support import new_bucket_name

# boto3 method and the S3 error code (with 404) for a bucket without that setting.
MISSING = [
    ("get_bucket_tagging", "NoSuchTagSet"),
    ("get_bucket_cors", "NoSuchCORSConfiguration"),
    ("get_bucket_lifecycle_configuration", "NoSuchLifecycleConfiguration"),
    ("get_bucket_policy", "NoSuchBucketPolicy"),
    ("get_bucket_encryption", "ServerSideEncryptionConfigurationNotFoundError"),
    ("get_bucket_website", "NoSuchWebsiteConfiguration"),
    ("get_bucket_replication", "ReplicationConfigurationNotFoundError"),
    ("get_public_access_block", "NoSuchPublicAccessBlockConfiguration"),
    ("get_bucket_ownership_controls", "OwnershipControlsNotFoundError"),
    ("get_object_lock_configuration", "ObjectLockConfigurationNotFoundError"),
]
DELETES = [
    "delete_bucket_tagging",
    "delete_bucket_cors",
    "delete_bucket_lifecycle",
    "delete_bucket_policy",
    "delete_bucket_encryption",
    "delete_bucket_website",
    "delete_bucket_replication",
    "delete_public_access_block",
    "delete_bucket_ownership_controls",
]


def error_of(call: Callable[[], Any]) -> tuple[int, str]:
    with pytest.raises(ClientError) as error:
        call()
    response = error.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


@pytest.mark.parametrize(("method", "code"), MISSING)
def test_missing_setting(s3: Any, s3_bucket: str, method: str, code: str) -> None:
    assert error_of(lambda: getattr(s3, method)(Bucket=s3_bucket)) == (404, code)


def test_empty_settings(s3: Any, s3_bucket: str) -> None:
    logging = s3.get_bucket_logging(Bucket=s3_bucket)
    notification = s3.get_bucket_notification_configuration(Bucket=s3_bucket)
    accelerate = s3.get_bucket_accelerate_configuration(Bucket=s3_bucket)
    payment = s3.get_bucket_request_payment(Bucket=s3_bucket)

    assert "LoggingEnabled" not in logging
    assert not {"TopicConfigurations", "QueueConfigurations"} & set(notification)
    assert "Status" not in accelerate
    assert payment["Payer"] == "BucketOwner"


@pytest.mark.parametrize("method", DELETES)
def test_delete_setting(s3: Any, s3_bucket: str, method: str) -> None:
    s3.put_object(Bucket=s3_bucket, Key="k", Body=b"kept")

    response = getattr(s3, method)(Bucket=s3_bucket)

    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.get_object(Bucket=s3_bucket, Key="k")["Body"].read() == b"kept"


def test_checks_bucket_and_caller(
    gateway: GatewayInfo, client: store.Client, s3: Any, s3_bucket: str
) -> None:
    user = client.create_user(new_bucket_name("user"))
    other = s3_client(gateway, access_key=user.access_key, secret_key=user.secret_key)
    missing = new_bucket_name("missing")

    assert error_of(lambda: s3.get_bucket_cors(Bucket=missing)) == (404, "NoSuchBucket")
    assert error_of(lambda: s3.delete_bucket_policy(Bucket=missing)) == (404, "NoSuchBucket")
    assert error_of(lambda: other.get_bucket_tagging(Bucket=s3_bucket)) == (403, "AccessDenied")
    assert error_of(lambda: other.delete_bucket_cors(Bucket=s3_bucket)) == (403, "AccessDenied")
    assert error_of(lambda: other.get_bucket_logging(Bucket=s3_bucket)) == (403, "AccessDenied")
