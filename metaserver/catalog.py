"""Buckets: the catalog on the primary metaserver and its mirror on secondaries.

The primary keeps every bucket in its system database. Secondaries keep an
in-memory copy that the primary link refreshes, and ask the primary directly
for a bucket they do not know yet, so a bucket is usable on every shard as
soon as its creation returns.

While a bucket is being deleted it is fenced on every metaserver: new
uploads and commits to it fail, so the emptiness check cannot race a write.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping

import rocksdict

from store._pb import common_pb2 as pb
from store.errors import AlreadyExists, NoSuchBucket, Unavailable
from store.names import check_bucket_name
from store.scheme import Scheme
from store.scheme import parse as parse_scheme

log = logging.getLogger(__name__)

_BUCKET_TAG = b"B"
_VERSION_KEY = b"V"


class Buckets:
    """Bucket lookups and fences shared by the catalog and the mirror."""

    def __init__(self) -> None:
        self.buckets: dict[str, pb.BucketRecord] = {}
        # Bumped on every create and delete, so followers know when to refresh.
        self.version = 0
        self.fenced: set[str] = set()

    def get(self, name: str) -> pb.BucketRecord:
        record = self.buckets.get(name)
        if record is None:
            raise NoSuchBucket(
                f"bucket {name!r} does not exist; check its name, or create it first"
            )
        return record

    def check_writable(self, name: str) -> None:
        """Raise unless new objects may be written to the bucket."""
        self.get(name)
        if name in self.fenced:
            raise Unavailable(f"bucket {name!r} is being deleted; retry if the delete fails")

    def scheme(self, name: str) -> Scheme:
        """Return the protection scheme of the bucket's new objects."""
        text = self.get(name).scheme
        # Buckets created before schemes existed keep one copy of each chunk.
        return parse_scheme(text) if text else Scheme()

    def sorted_records(self) -> list[pb.BucketRecord]:
        return [self.buckets[name] for name in sorted(self.buckets)]


class BucketCatalog(Buckets):
    """The authoritative catalog, on the primary metaserver."""

    def __init__(self, db: rocksdict.Rdict) -> None:
        super().__init__()
        self._db = db
        self._sync = rocksdict.WriteOptions()
        self._sync.sync = True
        stored_version = db.get(_VERSION_KEY)
        self.version = int.from_bytes(stored_version, "big") if stored_version else 0
        iterator = db.iter()
        iterator.seek(_BUCKET_TAG)
        while iterator.valid() and iterator.key().startswith(_BUCKET_TAG):
            record = pb.BucketRecord.FromString(iterator.value())
            self.buckets[record.name] = record
            iterator.next()

    def create(self, name: str, owner: str, protection: Scheme) -> pb.BucketRecord:
        check_bucket_name(name)
        if name in self.buckets:
            raise AlreadyExists(f"bucket {name!r} already exists; choose another name")
        record = pb.BucketRecord(
            name=name, owner=owner, created_unix_ns=time.time_ns(), scheme=str(protection)
        )
        self._write(name, record)
        self.buckets[name] = record
        log.info("bucket created bucket=%s owner=%s scheme=%s", name, owner or "-", protection)
        return record

    def update_settings(
        self, name: str, set_settings: Mapping[str, str], remove_settings: Iterable[str]
    ) -> pb.BucketRecord:
        """Set and remove settings of a bucket durably, and return the new record."""
        record = pb.BucketRecord()
        record.CopyFrom(self.get(name))
        for setting in remove_settings:
            record.settings.pop(setting, None)
        record.settings.update(set_settings)
        self._write(name, record)
        self.buckets[name] = record
        log.info("bucket settings updated bucket=%s settings=%s", name, sorted(record.settings))
        return record

    def begin_delete(self, name: str) -> None:
        self.get(name)
        if name in self.fenced:
            raise Unavailable(f"bucket {name!r} is already being deleted")
        self.fenced.add(name)

    def finish_delete(self, name: str, deleted: bool) -> None:
        self.fenced.discard(name)
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
        batch.put(_VERSION_KEY, (self.version + 1).to_bytes(8, "big"))
        self._db.write(batch, self._sync)
        self.version += 1


class BucketMirror(Buckets):
    """A secondary metaserver's copy of the primary's catalog."""

    def replace_all(self, records: list[pb.BucketRecord], version: int) -> None:
        self.buckets = {record.name: record for record in records}
        self.version = version

    def learn(self, record: pb.BucketRecord) -> None:
        """Add a bucket the primary just confirmed."""
        self.buckets[record.name] = record

    def fence(self, name: str) -> None:
        self.fenced.add(name)

    def release(self, name: str, deleted: bool) -> None:
        self.fenced.discard(name)
        if deleted:
            self.buckets.pop(name, None)
