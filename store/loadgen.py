"""Client load for tests and benchmarks, run as a process of its own (often in a client host).

    python -m store.loadgen mixed --meta HOST:PORT --bucket B [--seed N] ...
    python -m store.loadgen read --meta HOST:PORT --bucket B --digests FILE ...

`mixed` writes objects and reads them back until SIGTERM or SIGINT (or
--max-objects), like an application that keeps working through failures. Round i
puts key PREFIXi with object_data(seed, key, size) of --object-bytes + 7*i bytes,
reads it back and reads key PREFIX(i//2) again. At the end it prints one JSON
object: the acknowledged keys with their sizes, and every failed call or read of
other bytes, so the caller can check that no acknowledged write was lost.

`read` streams the objects named in --digests (a JSON file of BLAKE2b-128 hex
digests by key) in turn, starting at the one of index --shift. It prints
{"ready": true} once it is connected. Then, for each JSON line on stdin,
{"warm_at": T1, "end_at": T2} in time.monotonic() seconds (one clock for every
process of the machine), it reads until T2 and prints {"counted_bytes",
"objects_verified", "cpu_s", "errors"}: the bytes that arrived between T1 and
T2 and the CPU it used from T1 on. It exits at the end of stdin. Every object
read to its end is checked against its digest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import store

MIB = 1 << 20
# The size step between consecutive objects of the mixed load, so sizes are not all aligned.
SIZE_STEP_BYTES = 7


def object_data(seed: int, key: str, size_bytes: int) -> bytes:
    """Return the bytes the loads write as `key`: SHAKE-256 of seed and key."""
    return hashlib.shake_256(f"{seed}/{key}".encode()).digest(size_bytes)


def digest(data: bytes) -> str:
    """Return the BLAKE2b-128 hex digest that the read load checks."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def mixed_object_bytes(base_bytes: int, index: int) -> int:
    """Return the size of object `index` of a mixed load with --object-bytes `base_bytes`."""
    return base_bytes + SIZE_STEP_BYTES * index


class StopFlag:
    """Set by SIGTERM or SIGINT; the load finishes its current call and stops."""

    def __init__(self) -> None:
        self.event = threading.Event()
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)

    def _set(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()


def run_mixed(args: argparse.Namespace) -> dict[str, Any]:
    stop = StopFlag()
    acknowledged: dict[str, int] = {}
    errors: list[str] = []
    reads = 0
    rounds = 0
    with store.Client(
        args.meta, timeout_s=args.timeout_s, chunk_timeout_s=args.chunk_timeout_s
    ) as client:
        for index in range(args.max_objects):
            if stop.is_set():
                break
            rounds += 1
            key = f"{args.prefix}{index}"
            size = mixed_object_bytes(args.object_bytes, index)
            data = object_data(args.seed, key, size)
            earlier = f"{args.prefix}{index // 2}"
            try:
                client.put(args.bucket, key, data)
                acknowledged[key] = size
                print(f"put {key} {size} bytes", file=sys.stderr, flush=True)
                reads += 1
                if client.get(args.bucket, key) != data:
                    errors.append(f"{key} read back other bytes")
                if earlier in acknowledged:
                    reads += 1
                    expected = object_data(args.seed, earlier, acknowledged[earlier])
                    if client.get(args.bucket, earlier) != expected:
                        errors.append(f"{earlier} read again returned other bytes")
            except store.StoreError as error:
                errors.append(f"{key}: {type(error).__name__}: {error}")
                print(f"error {key}: {error}", file=sys.stderr, flush=True)
            stop.event.wait(args.pause_s)
    return {"acknowledged": acknowledged, "errors": errors, "rounds": rounds, "reads": reads}


def read_window(
    client: store.Client,
    args: argparse.Namespace,
    keys: list[str],
    digests: dict[str, str],
    warm_at: float,
    end_at: float,
) -> dict[str, Any]:
    """Stream `keys` in turn until `end_at`; count the bytes that arrive from `warm_at` on."""
    errors: list[str] = []
    counted = 0
    verified = 0
    cpu_warm: float | None = None
    index = 0
    while time.monotonic() < end_at:
        key = keys[index % len(keys)]
        index += 1
        hasher = hashlib.blake2b(digest_size=16)
        complete = False
        with client.open(args.bucket, key) as file:
            while (now := time.monotonic()) < end_at:
                if cpu_warm is None and now >= warm_at:
                    cpu_warm = time.process_time()
                piece = file.read(args.piece_bytes)
                if not piece:
                    complete = True
                    break
                if warm_at <= time.monotonic() <= end_at:
                    counted += len(piece)
                hasher.update(piece)
        if complete:
            if hasher.hexdigest() != digests[key]:
                errors.append(f"{args.bucket}/{key} read back differs from what was written")
            else:
                verified += 1
    cpu_s = time.process_time() - cpu_warm if cpu_warm is not None else 0.0
    return {
        "counted_bytes": counted,
        "objects_verified": verified,
        "cpu_s": round(cpu_s, 3),
        "errors": errors,
    }


def run_read(args: argparse.Namespace) -> None:
    """Print ready, then answer each window line on stdin with one result line, until EOF."""
    digests: dict[str, str] = json.loads(Path(args.digests).read_text())
    keys = sorted(digests)
    shift = args.shift % len(keys)
    keys = keys[shift:] + keys[:shift]
    options = {"timeout_s": args.timeout_s, "window_chunks": args.window_chunks}
    with store.Client(args.meta, **options) as client:
        client.cluster_map()
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            window = json.loads(line)
            warm_at, end_at = float(window["warm_at"]), float(window["end_at"])
            result = read_window(client, args, keys, digests, warm_at, end_at)
            print(json.dumps(result), flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m store.loadgen", description="Client load for tests and benchmarks."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    mixed = commands.add_parser("mixed", help="write and read objects until SIGTERM")
    read = commands.add_parser("read", help="stream objects in time windows given on stdin")
    for command in (mixed, read):
        command.add_argument("--meta", required=True, help="metaserver HOST:PORT")
        command.add_argument("--bucket", required=True, help="bucket to use (must exist)")
        command.add_argument("--timeout-s", type=float, default=60.0, help="SDK call timeout")
    mixed.add_argument("--prefix", default="load-", help="key prefix")
    mixed.add_argument("--seed", type=int, default=0, help="seed of the object bytes")
    mixed.add_argument(
        "--object-bytes", type=int, default=MIB, help="size of the first object; each adds 7"
    )
    mixed.add_argument("--max-objects", type=int, default=300, help="stop after this many")
    mixed.add_argument("--pause-s", type=float, default=0.05, help="pause between rounds")
    mixed.add_argument(
        "--chunk-timeout-s", type=float, default=5.0, help="seconds one chunk read or write waits"
    )
    read.add_argument("--digests", required=True, help="JSON file of hex digests by key")
    read.add_argument("--shift", type=int, default=0, help="start at the key with this index")
    read.add_argument("--window-chunks", type=int, default=2, help="stripes kept in flight")
    read.add_argument("--piece-bytes", type=int, default=MIB, help="bytes per read() call")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Warnings, such as chunk reads that failed and were retried, go to stderr.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    if args.command == "mixed":
        print(json.dumps(run_mixed(args)), flush=True)
    else:
        run_read(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
