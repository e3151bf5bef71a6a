"""store: a scale-out parallel object store.

`store.Client` (blocking) and `store.AsyncClient` (asyncio) are the SDK; the
error classes in `store.errors` are re-exported here.
"""

from store.client import AsyncClient
from store.errors import (
    AlreadyExists,
    BucketNotEmpty,
    ChecksumMismatch,
    DiskFull,
    InvalidArgument,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
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
    "BucketInfo",
    "BucketNotEmpty",
    "ChecksumMismatch",
    "Client",
    "DiskFull",
    "InvalidArgument",
    "ListEntry",
    "ListPage",
    "NoSuchBucket",
    "NoSuchKey",
    "NoSuchUpload",
    "NotFound",
    "ObjectFile",
    "ObjectInfo",
    "PreconditionFailed",
    "ResourceExhausted",
    "StoreError",
    "Timeout",
    "Unavailable",
]
