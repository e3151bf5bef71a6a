"""The error hierarchy shared by the SDK and the servers.

Every error has a stable `code` string. Servers turn an error into a gRPC
status plus the trailing metadata key `store-error` holding the code, and
the SDK turns it back into the same class, so callers catch the class on
either side of the wire. Messages name the bucket, key, server and cause.
"""

from __future__ import annotations

import grpc

ERROR_CODE_METADATA_KEY = "store-error"
EPOCH_METADATA_KEY = "store-epoch"


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""

    code = "Internal"
    grpc_status = grpc.StatusCode.INTERNAL
    # The message as the server raised it, without the caller's prefix that names the
    # server and its address; None for errors raised in this process.
    server_message: str | None = None


class NotFound(StoreError):
    code = "NotFound"
    grpc_status = grpc.StatusCode.NOT_FOUND


class NoSuchBucket(NotFound):
    code = "NoSuchBucket"


class NoSuchKey(NotFound):
    code = "NoSuchKey"


class NoSuchUpload(NotFound):
    code = "NoSuchUpload"


class ChunkNotFound(NotFound):
    code = "ChunkNotFound"


class NoSuchUser(NotFound):
    code = "NoSuchUser"


class AlreadyExists(StoreError):
    code = "AlreadyExists"
    grpc_status = grpc.StatusCode.ALREADY_EXISTS


class BucketNotEmpty(StoreError):
    code = "BucketNotEmpty"
    grpc_status = grpc.StatusCode.FAILED_PRECONDITION


class InvalidArgument(StoreError):
    code = "InvalidArgument"
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT


class BadDigest(InvalidArgument):
    """The content does not match the checksum or Content-MD5 the writer sent."""

    code = "BadDigest"


class InvalidPart(InvalidArgument):
    """A part listed to complete a multipart upload is missing or has another ETag."""

    code = "InvalidPart"


class InvalidRequest(InvalidArgument):
    """A request that contradicts the state it applies to, such as a part without its checksum."""

    code = "InvalidRequest"


class InvalidPartOrder(InvalidArgument):
    code = "InvalidPartOrder"


class EntityTooSmall(InvalidArgument):
    """A part other than the last is smaller than the minimum part size."""

    code = "EntityTooSmall"


class PreconditionFailed(StoreError):
    """A conditional write or delete whose condition did not hold."""

    code = "PreconditionFailed"
    grpc_status = grpc.StatusCode.FAILED_PRECONDITION


class StaleEpoch(StoreError):
    """The caller's cluster map is older than the server's; refresh and retry."""

    code = "StaleEpoch"
    grpc_status = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, message: str, server_epoch: int | None = None) -> None:
        super().__init__(message)
        # The server's epoch, sent back with the error so the client refreshes to at least it.
        self.server_epoch = server_epoch


class Unavailable(StoreError):
    code = "Unavailable"
    grpc_status = grpc.StatusCode.UNAVAILABLE


class Timeout(Unavailable):
    code = "Timeout"
    grpc_status = grpc.StatusCode.DEADLINE_EXCEEDED


class ResourceExhausted(StoreError):
    code = "ResourceExhausted"
    grpc_status = grpc.StatusCode.RESOURCE_EXHAUSTED


class DiskFull(ResourceExhausted):
    code = "DiskFull"


class ChecksumMismatch(StoreError):
    """Bytes whose CRC32C did not match the recorded value; never returned."""

    code = "ChecksumMismatch"
    grpc_status = grpc.StatusCode.DATA_LOSS


class InternalError(StoreError):
    code = "Internal"
    grpc_status = grpc.StatusCode.INTERNAL


def _subclasses(cls: type[StoreError]) -> list[type[StoreError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_subclasses(sub))
    return found


ERRORS_BY_CODE: dict[str, type[StoreError]] = {cls.code: cls for cls in _subclasses(StoreError)}
ERRORS_BY_CODE["Internal"] = InternalError

# Used when a status arrives without our code, for example from grpc itself.
_ERRORS_BY_STATUS: dict[grpc.StatusCode, type[StoreError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: PreconditionFailed,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Timeout,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.DATA_LOSS: ChecksumMismatch,
    grpc.StatusCode.CANCELLED: Unavailable,
}


def error_for_status(status: grpc.StatusCode | None, code: str | None, message: str) -> StoreError:
    """Build the StoreError for a gRPC status and the optional store-error code."""
    if code and code in ERRORS_BY_CODE:
        return ERRORS_BY_CODE[code](message)
    if status is not None and status in _ERRORS_BY_STATUS:
        return _ERRORS_BY_STATUS[status](message)
    return InternalError(message)
