"""Bucket settings that the gateway never stores: reading one reports that it is not set,
and deleting one succeeds.

Clients that inspect a bucket read its lifecycle, policy, encryption and the like, and
treat S3's "not configured" reply as the usual case. The MinIO SDKs' test suites are two
of them. Setting any of these stays NotImplemented (routing.py rejects the PUTs), so
each reply here is true of every bucket. Tags (tagging_handlers.py) and CORS rules
(cors.py) are stored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from store.s3.api_errors import S3Error
from store.s3.bucket_handlers import bucket_info
from store.s3.context import RequestContext
from store.s3.responses import xml_response
from store.s3.xmlcodec import add, new_document

Handler = Callable[[RequestContext], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class BucketSetting:
    """One bucket subresource: its query parameter, operations and the reply to a read."""

    parameter: str
    get_operation: str
    # The S3 error (code, message) that a read raises with 404. None when S3 returns a
    # document instead: the element `empty_root` with the children `empty_fields`.
    missing: tuple[str, str] | None
    empty_root: str = ""
    empty_fields: tuple[tuple[str, str], ...] = ()
    delete_operation: str = ""


SETTINGS = (
    BucketSetting(
        "lifecycle",
        "GetBucketLifecycleConfiguration",
        ("NoSuchLifecycleConfiguration", "The lifecycle configuration does not exist"),
        delete_operation="DeleteBucketLifecycle",
    ),
    BucketSetting(
        "policy",
        "GetBucketPolicy",
        ("NoSuchBucketPolicy", "The bucket policy does not exist"),
        delete_operation="DeleteBucketPolicy",
    ),
    BucketSetting(
        "encryption",
        "GetBucketEncryption",
        (
            "ServerSideEncryptionConfigurationNotFoundError",
            "The server side encryption configuration was not found",
        ),
        delete_operation="DeleteBucketEncryption",
    ),
    BucketSetting(
        "website",
        "GetBucketWebsite",
        (
            "NoSuchWebsiteConfiguration",
            "The specified bucket does not have a website configuration",
        ),
        delete_operation="DeleteBucketWebsite",
    ),
    BucketSetting(
        "replication",
        "GetBucketReplication",
        ("ReplicationConfigurationNotFoundError", "The replication configuration was not found"),
        delete_operation="DeleteBucketReplication",
    ),
    BucketSetting(
        "publicAccessBlock",
        "GetPublicAccessBlock",
        (
            "NoSuchPublicAccessBlockConfiguration",
            "The public access block configuration was not found",
        ),
        delete_operation="DeletePublicAccessBlock",
    ),
    BucketSetting(
        "ownershipControls",
        "GetBucketOwnershipControls",
        ("OwnershipControlsNotFoundError", "The bucket ownership controls were not found"),
        delete_operation="DeleteBucketOwnershipControls",
    ),
    BucketSetting(
        "object-lock",
        "GetObjectLockConfiguration",
        (
            "ObjectLockConfigurationNotFoundError",
            "Object Lock configuration does not exist for this bucket",
        ),
    ),
    BucketSetting("logging", "GetBucketLogging", None, empty_root="BucketLoggingStatus"),
    BucketSetting(
        "notification",
        "GetBucketNotificationConfiguration",
        None,
        empty_root="NotificationConfiguration",
    ),
    BucketSetting(
        "accelerate", "GetBucketAccelerateConfiguration", None, empty_root="AccelerateConfiguration"
    ),
    BucketSetting(
        "requestPayment",
        "GetBucketRequestPayment",
        None,
        empty_root="RequestPaymentConfiguration",
        empty_fields=(("Payer", "BucketOwner"),),
    ),
)

# Operations by the query parameter that selects them, for routing.py.
BUCKET_GETS = {setting.parameter: setting.get_operation for setting in SETTINGS}
BUCKET_DELETES = {
    setting.parameter: setting.delete_operation for setting in SETTINGS if setting.delete_operation
}


def _read_handler(setting: BucketSetting) -> Handler:
    async def read(context: RequestContext) -> web.StreamResponse:
        await bucket_info(context)
        if setting.missing is not None:
            code, message = setting.missing
            raise S3Error(code, message, http_status=404)
        root = new_document(setting.empty_root)
        for name, value in setting.empty_fields:
            add(root, name, value)
        return xml_response(root)

    return read


async def delete_bucket_setting(context: RequestContext) -> web.StreamResponse:
    await bucket_info(context)
    return web.Response(status=204)


HANDLERS: dict[str, Handler] = {
    **{setting.get_operation: _read_handler(setting) for setting in SETTINGS},
    **{operation: delete_bucket_setting for operation in BUCKET_DELETES.values()},
}
