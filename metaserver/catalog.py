"""The bucket catalog, kept in the metaserver's system database and mirrored in memory."""

from __future__ import annotations

import logging
import time

import rocksdict

from store._pb import common_pb2 as pb
from store.errors import AlreadyExists, NoSuchBucket, Unavailable
from store.names import check_bucket_name

log = logging.getLogger(__name__)

_BUCKET_TAG = b"B"


class BucketCatalog:
    """Buckets by name. A bucket being deleted rejects new uploads and commits."""

    def __init__(self, db: rocksdict.Rdict) -> None:
        self._db = db
        self._sync = rocksdict.WriteOptions()
        self._sync.sync = True
        self.buckets: dict[str, pb.BucketRecord] = {}
        self.deleting: set[str] = set()
        iterator = db.iter()
        iterator.seek(_BUCKET_TAG)
        while iterator.valid() and iterator.key().startswith(_BUCKET_TAG):
            record = pb.BucketRecord.FromString(iterator.value())
            self.buckets[record.name] = record
            iterator.next()

    def create(self, name: str, owner: str) -> pb.BucketRecord:
        check_bucket_name(name)
        if name in self.buckets:
            raise AlreadyExists(f"bucket {name!r} already exists")
        record = pb.BucketRecord(name=name, owner=owner, created_unix_ns=time.time_ns())
        self._write(name, record)
        self.buckets[name] = record
        log.info("bucket created bucket=%s owner=%s", name, owner or "-")
        return record

    def get(self, name: str) -> pb.BucketRecord:
        record = self.buckets.get(name)
        if record is None:
            raise NoSuchBucket(f"bucket {name!r} does not exist; create it first")
        return record

    def check_writable(self, name: str) -> None:
        """Raise unless new objects may be written to the bucket."""
        self.get(name)
        if name in self.deleting:
            raise Unavailable(f"bucket {name!r} is being deleted; retry if the delete fails")

    def begin_delete(self, name: str) -> None:
        self.get(name)
        if name in self.deleting:
            raise Unavailable(f"bucket {name!r} is already being deleted")
        self.deleting.add(name)

    def finish_delete(self, name: str, deleted: bool) -> None:
        self.deleting.discard(name)
        if deleted:
            self._write(name, None)
            del self.buckets[name]
            log.info("bucket deleted bucket=%s", name)

    def _write(self, name: str, record: pb.BucketRecord | None) -> None:
        batch = rocksdict.WriteBatch(raw_mode=True)
        key = _BUCKET_TAG + name.encode()
        if record is None:
            batch.delete(key)
        else:
            batch.put(key, record.SerializeToString())
        self._db.write(batch, self._sync)
