"""`storectl bucket`, `ls`, `put`, `get`, `stat` and `rm`: the user commands over the SDK."""

from __future__ import annotations

import argparse
import mimetypes
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from store.discovery import resolve_meta_address
from store.errors import NoSuchKey
from store.sync import Client
from store.types import ObjectInfo

# The timeout of metadata commands when --timeout-s is not given.
DEFAULT_TIMEOUT_S = 30.0
STDIO_PATH = "-"


class UsageError(Exception):
    """Arguments that parse but do not fit together, so storectl exits with status 2."""


def parse_object_path(text: str) -> tuple[str, str]:
    """Split BUCKET/KEY into bucket and key. The key may be empty (BUCKET or BUCKET/)."""
    bucket, _, key = text.partition("/")
    if not bucket:
        raise argparse.ArgumentTypeError(f"invalid path {text!r}; expected BUCKET/KEY")
    return bucket, key


def parse_object_key(text: str) -> tuple[str, str]:
    """Split BUCKET/KEY where the key must not be empty."""
    bucket, key = parse_object_path(text)
    if not key:
        raise argparse.ArgumentTypeError(f"invalid path {text!r}; expected BUCKET/KEY with a key")
    return bucket, key


@contextmanager
def connect(args: argparse.Namespace) -> Iterator[Client]:
    address = resolve_meta_address(args.meta, args.dir)
    timeout_s = args.timeout_s if args.timeout_s is not None else DEFAULT_TIMEOUT_S
    with Client(address, timeout_s=timeout_s) as client:
        yield client


def _metadata_timeout_s(args: argparse.Namespace) -> float:
    return args.timeout_s if args.timeout_s is not None else DEFAULT_TIMEOUT_S


def _format_time(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


# Buckets.


def bucket_create(args: argparse.Namespace) -> int:
    with connect(args) as client:
        info = client.create_bucket(
            args.name, scheme=args.scheme, timeout_s=_metadata_timeout_s(args)
        )
    print(f"created bucket {args.name} ({info.scheme})")
    return 0


def bucket_rm(args: argparse.Namespace) -> int:
    with connect(args) as client:
        client.delete_bucket(args.name, timeout_s=_metadata_timeout_s(args))
    print(f"deleted bucket {args.name}")
    return 0


def bucket_ls(args: argparse.Namespace) -> int:
    with connect(args) as client:
        buckets = client.list_buckets(timeout_s=_metadata_timeout_s(args))
    for bucket in sorted(buckets, key=lambda b: b.name):
        print(f"{_format_time(bucket.created)}  {bucket.scheme:<8}  {bucket.name}")
    return 0


# Objects.


def ls(args: argparse.Namespace) -> int:
    """List keys under BUCKET/PREFIX, one page at a time, until the listing ends."""
    if args.path is None:
        return bucket_ls(args)
    bucket, prefix = args.path
    delimiter = "" if args.recursive else "/"
    with connect(args) as client:
        pages = client.iter_pages(
            bucket, prefix=prefix, delimiter=delimiter, timeout_s=_metadata_timeout_s(args)
        )
        for page in pages:
            for common_prefix in page.common_prefixes:
                print(f"{'PRE':>30} {common_prefix}")
            for entry in page.entries:
                print(f"{_format_time(entry.modified)} {entry.size_bytes:>10} {entry.key}")
    return 0


def put(args: argparse.Namespace) -> int:
    bucket, key = args.path
    local: str = args.file
    if not key or key.endswith("/"):
        if local == STDIO_PATH:
            raise UsageError("a put from standard input (-) needs a key: BUCKET/KEY")
        key += Path(local).name
    content_type = args.content_type or mimetypes.guess_type(key)[0] or ""
    with connect(args) as client:
        if local == STDIO_PATH:
            info = client.put(
                bucket, key, sys.stdin.buffer, content_type=content_type, timeout_s=args.timeout_s
            )
        else:
            info = client.put_file(
                bucket, key, local, content_type=content_type, timeout_s=args.timeout_s
            )
    source = "standard input" if local == STDIO_PATH else local
    print(f"uploaded {source} to {bucket}/{key} ({info.size_bytes} bytes, etag {info.etag})")
    return 0


def get(args: argparse.Namespace) -> int:
    bucket, key = args.path
    local: str = args.file
    with connect(args) as client:
        if local == STDIO_PATH:
            return _get_to_stdout(client, bucket, key, args.timeout_s)
        target = Path(local)
        if target.is_dir():
            target = target / key.rsplit("/", 1)[-1]
        info = client.get_file(bucket, key, target, timeout_s=args.timeout_s)
    print(f"downloaded {bucket}/{key} to {target} ({info.size_bytes} bytes)")
    return 0


def _get_to_stdout(client: Client, bucket: str, key: str, timeout_s: float | None) -> int:
    output = sys.stdout.buffer
    for piece in client.get_stream(bucket, key, timeout_s=timeout_s):
        output.write(piece)
    output.flush()
    return 0


def stat(args: argparse.Namespace) -> int:
    bucket, key = args.path
    with connect(args) as client:
        info = client.stat(bucket, key, timeout_s=_metadata_timeout_s(args))
    print(format_object_info(info))
    return 0


def format_object_info(info: ObjectInfo) -> str:
    fields = [
        ("bucket", info.bucket),
        ("key", info.key),
        ("size_bytes", str(info.size_bytes)),
        ("etag", info.etag),
        ("content_type", info.content_type or "-"),
        ("created", info.created.isoformat()),
        ("modified", info.modified.isoformat()),
        ("version_id", info.version_id),
        ("inline", "yes" if info.is_inline else "no"),
        ("chunk_size_bytes", str(info.chunk_size_bytes)),
        ("stripes", str(info.stripe_count)),
        ("scheme", info.scheme or "-"),
        ("chunks", str(info.chunk_count)),
    ]
    fields += [(f"metadata.{name}", value) for name, value in sorted(info.metadata.items())]
    width = max(len(name) for name, _ in fields)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in fields)


def rm(args: argparse.Namespace) -> int:
    bucket, key = args.path
    with connect(args) as client:
        existed = client.delete(bucket, key, timeout_s=_metadata_timeout_s(args))
    if not existed:
        raise NoSuchKey(f"object {bucket}/{key} does not exist; nothing was deleted")
    print(f"deleted {bucket}/{key}")
    return 0
