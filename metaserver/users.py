"""Users of the S3 gateway and their key pairs, kept in the primary's system database.

    "A" access key  UserRecord (name, access key, secret, creation time)
    "N" user name   the user's access key

The root user is created with the cluster. Its keys come from the
STORE_ROOT_ACCESS_KEY and STORE_ROOT_SECRET_KEY environment variables of the
primary metaserver when both are set (and follow them on later starts), and
are generated otherwise. Secrets never reach the log.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import string
import time

import rocksdict

from store._pb import common_pb2 as pb
from store.errors import AlreadyExists, InvalidArgument, NoSuchUser

log = logging.getLogger(__name__)

ROOT_USER = "root"
ROOT_ACCESS_KEY_ENV = "STORE_ROOT_ACCESS_KEY"
ROOT_SECRET_KEY_ENV = "STORE_ROOT_SECRET_KEY"

_KEY_TAG = b"A"
_NAME_TAG = b"N"
_USER_NAME = re.compile(r"^[A-Za-z0-9_.@+=,-]{1,64}$")
_ACCESS_KEY = re.compile(r"^[A-Za-z0-9]{16,128}$")
ACCESS_KEY_CHARS = string.ascii_uppercase + string.digits
SECRET_KEY_CHARS = string.ascii_letters + string.digits + "+/"


def generate_keys() -> tuple[str, str]:
    """Return a new (access key, secret key) pair in the shape of AWS keys."""
    access_key = "STOR" + "".join(secrets.choice(ACCESS_KEY_CHARS) for _ in range(16))
    secret_key = "".join(secrets.choice(SECRET_KEY_CHARS) for _ in range(40))
    return access_key, secret_key


class UserDirectory:
    def __init__(self, db: rocksdict.Rdict) -> None:
        self._db = db
        self._sync = rocksdict.WriteOptions()
        self._sync.sync = True

    def ensure_root(self) -> None:
        """Create the root user, or update its keys from the environment."""
        wanted_access = os.environ.get(ROOT_ACCESS_KEY_ENV, "")
        wanted_secret = os.environ.get(ROOT_SECRET_KEY_ENV, "")
        if bool(wanted_access) != bool(wanted_secret):
            raise InvalidArgument(
                f"set both {ROOT_ACCESS_KEY_ENV} and {ROOT_SECRET_KEY_ENV}, or neither"
            )
        current = self._by_name(ROOT_USER)
        if current is not None and (
            not wanted_access
            or (current.access_key == wanted_access and current.secret_key == wanted_secret)
        ):
            return
        if current is not None:
            self._remove(current)
        record = self.create(ROOT_USER, wanted_access, wanted_secret)
        source = "the environment" if wanted_access else "a generator"
        log.info("root user keys set from %s access_key=%s", source, record.access_key)

    def create(self, name: str, access_key: str = "", secret_key: str = "") -> pb.UserRecord:
        """Create a user; returns its record with the secret."""
        if not _USER_NAME.match(name):
            raise InvalidArgument(
                f"invalid user name {name!r}: use 1 to 64 letters, digits or _.@+=,-"
            )
        if self._by_name(name) is not None:
            raise AlreadyExists(f"user {name!r} already exists; remove it first or pick a name")
        if bool(access_key) != bool(secret_key):
            raise InvalidArgument("give both an access key and a secret key, or neither")
        if not access_key:
            access_key, secret_key = generate_keys()
        if not _ACCESS_KEY.match(access_key):
            raise InvalidArgument(
                f"invalid access key {access_key!r}: use 16 to 128 letters and digits"
            )
        if len(secret_key) < 16:
            raise InvalidArgument("the secret key must be at least 16 characters long")
        if self._db.get(_KEY_TAG + access_key.encode()) is not None:
            raise AlreadyExists(f"access key {access_key} belongs to another user")
        record = pb.UserRecord(
            name=name,
            access_key=access_key,
            secret_key=secret_key,
            created_unix_ns=time.time_ns(),
        )
        batch = rocksdict.WriteBatch(raw_mode=True)
        batch.put(_KEY_TAG + access_key.encode(), record.SerializeToString())
        batch.put(_NAME_TAG + name.encode(), access_key.encode())
        self._db.write(batch, self._sync)
        log.info("user created name=%s access_key=%s", name, access_key)
        return record

    def delete(self, name: str) -> None:
        if name == ROOT_USER:
            raise InvalidArgument("the root user cannot be removed")
        record = self._by_name(name)
        if record is None:
            raise NoSuchUser(f"user {name!r} does not exist")
        self._remove(record)
        log.info("user removed name=%s access_key=%s", name, record.access_key)

    def _remove(self, record: pb.UserRecord) -> None:
        batch = rocksdict.WriteBatch(raw_mode=True)
        batch.delete(_KEY_TAG + record.access_key.encode())
        batch.delete(_NAME_TAG + record.name.encode())
        self._db.write(batch, self._sync)

    def _by_name(self, name: str) -> pb.UserRecord | None:
        access_key = self._db.get(_NAME_TAG + name.encode())
        return None if access_key is None else self.by_access_key(access_key.decode())

    def by_access_key(self, access_key: str) -> pb.UserRecord | None:
        value = self._db.get(_KEY_TAG + access_key.encode())
        return None if value is None else pb.UserRecord.FromString(value)

    def list(self) -> list[pb.UserRecord]:
        """Return every user, sorted by name, without secrets."""
        users = []
        iterator = self._db.iter()
        iterator.seek(_KEY_TAG)
        while iterator.valid() and iterator.key().startswith(_KEY_TAG):
            record = pb.UserRecord.FromString(iterator.value())
            record.secret_key = ""
            users.append(record)
            iterator.next()
        return sorted(users, key=lambda user: user.name)
