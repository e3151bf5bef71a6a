"""store: a scale-out parallel object store.

`store.Client` (blocking) and `store.AsyncClient` (asyncio) are the SDK; the
error classes in `store.errors` are re-exported here.
"""

from store.client import AsyncClient
from store.errors import (
    AlreadyExists,
    BadDigest,
    BucketNotEmpty,
    ChecksumMismatch,
    DiskFull,
    EntityTooSmall,
    InvalidArgument,
    InvalidPart,
    InvalidPartOrder,
    InvalidRequest,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    NoSuchUser,
    NotFound,
    PreconditionFailed,
    ResourceExhausted,
    StoreError,
    Timeout,
    Unavailable,
)
from store.sync import Client, ObjectFile
from store.types import BucketInfo, ListEntry, ListPage, ObjectInfo

__all__ = [
    "AlreadyExists",
    "AsyncClient",
    "BadDigest",
    "BucketInfo",
    "BucketNotEmpty",
    "ChecksumMismatch",
    "Client",
    "DiskFull",
    "EntityTooSmall",
    "InvalidArgument",
    "InvalidPart",
    "InvalidPartOrder",
    "InvalidRequest",
    "ListEntry",
    "ListPage",
    "NoSuchBucket",
    "NoSuchKey",
    "NoSuchUpload",
    "NoSuchUser",
    "NotFound",
    "ObjectFile",
    "ObjectInfo",
    "PreconditionFailed",
    "ResourceExhausted",
    "StoreError",
    "Timeout",
    "Unavailable",
]
