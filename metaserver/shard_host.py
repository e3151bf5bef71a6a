"""The shards one metaserver process serves, and its two sides of a shard move.

The primary's cluster map assigns each shard to one metaserver. This
process opens the shards it served last, as recorded in its system
database (`--shards` seeds the record on first start). After each map
change it drops the shards the map gives to others and opens those it gains.

A move, run by the primary (metaserver/shard_move.py), goes through both
ends. The source freezes the shard, so the writes acknowledged before that
are all in a RocksDB checkpoint it takes then. The target copies the
checkpoint's files, verifying each file's CRC32C, installs them under its
shards directory and opens the database, but does not serve it until the
primary has assigned it the shard. Then the source retires its copy and
deletes it. Retiring fails the writes it kept waiting with StaleEpoch, so
their clients send them to the target. A freeze ends by itself after its lease, so a primary that
dies mid-move leaves the shard writable at its source.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import grpc
import rocksdict

from metaserver.rocks import RocksEnv
from metaserver.shard import Shard
from store._pb import common_pb2 as pb
from store._pb import meta_pb2
from store.channels import ChannelPool
from store.checksum import crc32c
from store.errors import ChecksumMismatch, InvalidArgument, StaleEpoch, StoreError, Unavailable
from store.rpc import error_from_rpc
from store.shardmap import format_shard_ranges, parse_shard_ranges

log = logging.getLogger(__name__)

# JSON: {"serving": {shard: directory}, "imported": {shard: directory}}, directories in shards/.
SERVED_KEY = b"served-shards"
CHECKPOINT_PIECE_BYTES = 1 << 20
# Reads that started on a retired shard get this long to finish before its database closes.
RETIRE_GRACE_S = 10.0
# RocksDB names its files with letters, digits, dots, dashes and underscores only.
_FILE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


@dataclass(slots=True)
class OutgoingMove:
    move_id: str
    shard: Shard
    checkpoint: Path
    lease: asyncio.TimerHandle


@dataclass(slots=True)
class IncomingMove:
    move_id: str
    shard: Shard
    lease: asyncio.TimerHandle


class ShardHost:
    """Owns this process's Shard objects; `serving` is shared with the services that use them."""

    def __init__(
        self,
        directory: Path,
        env: RocksEnv,
        executor: Executor,
        system_db: rocksdict.Rdict,
        info: pb.MetaserverInfo,
        shard_count: int,
    ) -> None:
        self.directory = directory
        self.env = env
        self.executor = executor
        self.system_db = system_db
        self.info = info
        self.shard_count = shard_count
        self.serving: dict[int, Shard] = {}
        self.started = False
        self._outgoing: dict[int, OutgoingMove] = {}
        self._incoming: dict[int, IncomingMove] = {}
        # Retired shards whose databases stay open for reads in flight, and whether to delete them.
        self._retiring: dict[int, tuple[Shard, bool]] = {}
        # Imports found at start whose move may have been committed while this process was down.
        self._imported_dirs: dict[int, str] = {}
        self._channels = ChannelPool()
        self._cleanups: set[asyncio.Task[None]] = set()
        self._sync = rocksdict.WriteOptions()
        self._sync.sync = True

    # Paths.

    def shard_path(self, number: int) -> Path:
        """Return where a shard created here lives; an imported one lives under its move id."""
        return self.directory / "shards" / f"{number:04d}"

    def _move_path(self, move_id: str, side: str) -> Path:
        return self.directory / "moves" / f"{move_id}-{side}"

    # Opening and closing.

    def open_initial(self, flag_shards: list[int]) -> list[int]:
        """Open the shards served before the last stop, or `flag_shards` on a first start."""
        stored = self.system_db.get(SERVED_KEY)
        paths = {number: self.shard_path(number) for number in flag_shards}
        if stored is not None:
            paths = self._stored_paths(stored)
            numbers = sorted(paths)
            if numbers != flag_shards:
                log.info(
                    "serving shards %s as recorded in %s, not --shards %s: shards moved since "
                    "the first start, and the cluster map decides",
                    format_shard_ranges(numbers) or "none",
                    self.directory,
                    format_shard_ranges(flag_shards),
                )
        for number, path in sorted(paths.items()):
            self.serving[number] = Shard(number, path, self.env, self.executor)
        self._record_served()
        return sorted(paths)

    def _stored_paths(self, stored: bytes) -> dict[int, Path]:
        if not stored.startswith(b"{"):
            # The first form of the record: shard ranges, each in its default directory.
            numbers = parse_shard_ranges(stored.decode(), self.shard_count) if stored else []
            return {number: self.shard_path(number) for number in numbers}
        record = json.loads(stored)
        shards_dir = self.directory / "shards"
        self._imported_dirs = {int(n): name for n, name in record["imported"].items()}
        return {int(n): shards_dir / name for n, name in record["serving"].items()}

    def start(self) -> None:
        for shard in self.serving.values():
            shard.start()
        self.started = True

    def _open(self, number: int, path: Path) -> Shard:
        shard = Shard(number, path, self.env, self.executor)
        if self.started:
            shard.start()
        return shard

    def _record_served(self) -> None:
        numbers = sorted(self.serving)
        imported = {n: move.shard.path.name for n, move in self._incoming.items()}
        record = {
            "serving": {str(n): self.serving[n].path.name for n in numbers},
            "imported": {str(n): name for n, name in (self._imported_dirs | imported).items()},
        }
        self.system_db.put(SERVED_KEY, json.dumps(record).encode(), self._sync)
        del self.info.shards[:]
        self.info.shards.extend(numbers)

    async def close(self) -> None:
        for move in self._outgoing.values():
            move.lease.cancel()
        for incoming in self._incoming.values():
            incoming.lease.cancel()
        for task in list(self._cleanups):
            task.cancel()
        await asyncio.gather(*self._cleanups, return_exceptions=True)
        for number in list(self._retiring):
            await self._close_retired(number)
        for shard in [*self.serving.values(), *(m.shard for m in self._incoming.values())]:
            await shard.stop()
        await self._channels.close()

    # The source's side of a move.

    async def freeze(self, number: int, move_id: str, lease_s: float) -> list[meta_pb2.ShardFile]:
        """Hold the shard's writes and take a checkpoint of it; return the checkpoint's files."""
        shard = self.serving.get(number)
        if shard is None:
            raise InvalidArgument(
                f"metaserver {self.info.id} does not serve shard {number}; it serves "
                f"{format_shard_ranges(sorted(self.serving)) or 'none'}"
            )
        if number in self._outgoing or shard.frozen:
            raise Unavailable(f"shard {number} is already moving; retry once that move ends")

        checkpoint = self._move_path(move_id, "out")
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(checkpoint, ignore_errors=True)
        started_s = time.monotonic()
        await shard.freeze()
        try:
            await asyncio.get_running_loop().run_in_executor(
                self.executor, _create_checkpoint, shard.db, checkpoint
            )
        except Exception as exc:
            shard.thaw()
            raise Unavailable(
                f"checkpoint of shard {number} into {checkpoint} failed: {exc}"
            ) from None

        lease = asyncio.get_running_loop().call_later(lease_s, self._lease_expired, number, move_id)
        self._outgoing[number] = OutgoingMove(move_id, shard, checkpoint, lease)
        files = [
            meta_pb2.ShardFile(name=path.name, size_bytes=path.stat().st_size)
            for path in sorted(checkpoint.iterdir())
        ]
        log.info(
            "shard=%d frozen for move=%s: checkpoint of %d files, %d bytes in %.2fs",
            number,
            move_id,
            len(files),
            sum(f.size_bytes for f in files),
            time.monotonic() - started_s,
        )
        return files

    def _lease_expired(self, number: int, move_id: str) -> None:
        move = self._outgoing.get(number)
        if move is None or move.move_id != move_id:
            return
        log.warning(
            "shard=%d move=%s not finished within its lease; serving its writes here again",
            number,
            move_id,
        )
        self._end_outgoing(number, committed=False, epoch=0)

    async def checkpoint_pieces(
        self, number: int, move_id: str
    ) -> AsyncIterator[meta_pb2.ShardFileChunk]:
        """Yield the files of a move's checkpoint in pieces, each file's last with its CRC32C."""
        move = self._outgoing.get(number)
        if move is None or move.move_id != move_id:
            raise InvalidArgument(f"shard {number} has no checkpoint for move {move_id}")
        loop = asyncio.get_running_loop()
        for path in sorted(move.checkpoint.iterdir()):
            with path.open("rb") as file:
                offset = 0
                checksum = 0
                while True:
                    data = await loop.run_in_executor(
                        self.executor, file.read, CHECKPOINT_PIECE_BYTES
                    )
                    checksum = crc32c(data, checksum)
                    last = len(data) < CHECKPOINT_PIECE_BYTES
                    yield meta_pb2.ShardFileChunk(
                        name=path.name,
                        offset=offset,
                        data=data,
                        last=last,
                        file_crc32c=checksum if last else 0,
                    )
                    offset += len(data)
                    if last:
                        break

    # The target's side of a move.

    async def import_shard(
        self, number: int, move_id: str, source_address: str, lease_s: float
    ) -> tuple[int, int]:
        """Copy a frozen shard's checkpoint from its source and open it, not yet serving."""
        if number in self.serving:
            raise InvalidArgument(f"metaserver {self.info.id} already serves shard {number}")
        if number in self._incoming:
            await self._discard_incoming(number)
        if number in self._retiring:
            # The shard moves back before the grace ended: its old database must close first.
            await self._close_retired(number)

        incoming = self._move_path(move_id, "in")
        shutil.rmtree(incoming, ignore_errors=True)
        incoming.mkdir(parents=True)
        request = meta_pb2.ReadShardCheckpointRequest(shard=number, move_id=move_id)
        stream = self._channels.meta(source_address).ReadShardCheckpoint(request, timeout=lease_s)
        try:
            copied_bytes, copied_files = await _receive_files(stream, incoming)
        except grpc.RpcError as exc:
            shutil.rmtree(incoming, ignore_errors=True)
            raise error_from_rpc(
                exc, f"checkpoint of shard {number} from {source_address}"
            ) from None
        except StoreError:
            shutil.rmtree(incoming, ignore_errors=True)
            raise

        # A directory of its own: a copy of the shard that moved away may still be open here.
        final = self.directory / "shards" / move_id
        final.parent.mkdir(parents=True, exist_ok=True)
        incoming.rename(final)
        _fsync_directory(final.parent)
        shard = self._open(number, final)
        lease = asyncio.get_running_loop().call_later(
            lease_s, self._import_expired, number, move_id
        )
        self._incoming[number] = IncomingMove(move_id, shard, lease)
        self._record_served()
        log.info(
            "shard=%d imported for move=%s from %s: %d files, %d bytes",
            number,
            move_id,
            source_address,
            copied_files,
            copied_bytes,
        )
        return copied_bytes, copied_files

    def _import_expired(self, number: int, move_id: str) -> None:
        move = self._incoming.get(number)
        if move is None or move.move_id != move_id:
            return
        log.warning("shard=%d import of move=%s not settled within its lease", number, move_id)
        self._later(self._discard_incoming(number))

    async def _discard_incoming(self, number: int) -> None:
        move = self._incoming.pop(number)
        move.lease.cancel()
        self._record_served()
        await move.shard.stop()
        shutil.rmtree(move.shard.path, ignore_errors=True)
        log.info("shard=%d import of move=%s discarded", number, move.move_id)

    # Both sides.

    async def finish(self, number: int, move_id: str, committed: bool, epoch: int) -> None:
        """End a move at this end: serve or drop the import, retire or thaw the source."""
        incoming = self._incoming.get(number)
        if incoming is not None and incoming.move_id == move_id:
            if committed:
                self._promote(number)
            else:
                await self._discard_incoming(number)
        outgoing = self._outgoing.get(number)
        if outgoing is not None and outgoing.move_id == move_id:
            self._end_outgoing(number, committed, epoch)

    def _promote(self, number: int) -> None:
        move = self._incoming.pop(number)
        move.lease.cancel()
        self.serving[number] = move.shard
        self._record_served()
        log.info("shard=%d served here from move=%s", number, move.move_id)

    def _end_outgoing(self, number: int, committed: bool, epoch: int) -> None:
        move = self._outgoing.pop(number)
        move.lease.cancel()
        if not committed:
            move.shard.thaw()
            shutil.rmtree(move.checkpoint, ignore_errors=True)
            return
        self._retire(number, epoch, delete=True)
        self._later(self._remove_after_grace(move.checkpoint))

    def _retire(self, number: int, epoch: int, delete: bool) -> None:
        """Stop serving a shard the map gives to another metaserver; keep or delete its data."""
        shard = self.serving.pop(number)
        shard.retire(
            StaleEpoch(
                f"shard {number} moved off metaserver {self.info.id} at epoch {epoch}; refresh "
                "the cluster map",
                epoch,
            )
        )
        self._record_served()
        self._retiring[number] = (shard, delete)
        self._later(self._close_retired(number, RETIRE_GRACE_S))

    async def _close_retired(self, number: int, delay_s: float = 0.0) -> None:
        await asyncio.sleep(delay_s)
        if number not in self._retiring:
            return
        shard, delete = self._retiring.pop(number)
        await shard.stop()
        if delete:
            shutil.rmtree(shard.path, ignore_errors=True)
            log.info("shard=%d copy deleted from %s", shard.number, shard.path)
        else:
            self._retire_directory(shard.path, "the cluster map assigns the shard elsewhere")

    async def _remove_after_grace(self, path: Path) -> None:
        await asyncio.sleep(RETIRE_GRACE_S)
        shutil.rmtree(path, ignore_errors=True)

    def _retire_directory(self, path: Path, reason: str) -> None:
        """Move a shard directory aside, kept for an operator to inspect or delete."""
        retired = self.directory / "retired" / f"{path.name}-{time.time_ns()}"
        retired.parent.mkdir(parents=True, exist_ok=True)
        path.rename(retired)
        log.warning("moved %s to %s: %s", path, retired, reason)

    def _later(self, coroutine: object) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)  # type: ignore[arg-type]
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    # Following the map.

    def reconcile(self, cluster_map: pb.ClusterMap, server_id: str) -> None:
        """Serve exactly the shards the map assigns here, except those in a move."""
        record = next((m for m in cluster_map.metaservers if m.id == server_id), None)
        if record is None:
            return
        assigned = set(record.shards)
        for number in list(self._outgoing):
            if number not in assigned:
                log.info(
                    "shard=%d move committed by the map at epoch %d", number, cluster_map.epoch
                )
                self._end_outgoing(number, committed=True, epoch=cluster_map.epoch)
        for number in sorted(set(self.serving) - assigned - set(self._outgoing)):
            log.warning(
                "shard=%d is assigned to another metaserver at epoch %d; no longer served here",
                number,
                cluster_map.epoch,
            )
            self._retire(number, cluster_map.epoch, delete=False)
        for number in sorted(assigned - set(self.serving)):
            self._gain(number)
        for number in sorted(set(self._imported_dirs) - assigned):
            # Left by a move that this process's restart cut short; the map never took it.
            path = self.directory / "shards" / self._imported_dirs.pop(number)
            shutil.rmtree(path, ignore_errors=True)
            self._record_served()
            log.info("shard=%d import at %s deleted: its move was not committed", number, path)

    def _gain(self, number: int) -> None:
        if number in self._incoming:
            self._promote(number)
            return
        path = self.shard_path(number)
        if number in self._imported_dirs:
            path = self.directory / "shards" / self._imported_dirs.pop(number)
        if not path.exists():
            log.error(
                "shard=%d is assigned here but %s does not exist; restore it or move the "
                "shard from a metaserver that has it",
                number,
                path,
            )
            return
        self.serving[number] = self._open(number, path)
        self._record_served()
        log.info("shard=%d served here as the cluster map assigns it", number)

    def frozen(self) -> set[int]:
        return set(self._outgoing)


def _create_checkpoint(db: rocksdict.Rdict, path: Path) -> None:
    rocksdict.Checkpoint(db).create_checkpoint(str(path))


async def _receive_files(
    stream: AsyncIterator[meta_pb2.ShardFileChunk], directory: Path
) -> tuple[int, int]:
    """Write a checkpoint stream into `directory`; return its bytes and files."""
    copied_bytes = 0
    copied_files = 0
    name = ""
    file = None
    checksum = 0
    try:
        async for piece in stream:
            if piece.name != name:
                if file is not None:
                    raise ChecksumMismatch(f"checkpoint file {name} ended without its last piece")
                if not _FILE_NAME.match(piece.name):
                    raise InvalidArgument(f"checkpoint file name {piece.name!r} is not valid")
                name = piece.name
                file = (directory / name).open("xb")
                checksum = 0
            assert file is not None
            if piece.offset != file.tell():
                raise ChecksumMismatch(
                    f"checkpoint file {name}: piece at offset {piece.offset}, expected "
                    f"{file.tell()}"
                )
            file.write(piece.data)
            checksum = crc32c(piece.data, checksum)
            copied_bytes += len(piece.data)
            if piece.last:
                if checksum != piece.file_crc32c:
                    raise ChecksumMismatch(
                        f"checkpoint file {name}: CRC32C {checksum:08x}, source sent "
                        f"{piece.file_crc32c:08x}"
                    )
                file.flush()
                os.fsync(file.fileno())
                file.close()
                file = None
                copied_files += 1
        if file is not None:
            raise ChecksumMismatch(f"checkpoint stream ended inside file {name}")
    finally:
        if file is not None:
            file.close()
    _fsync_directory(directory)
    return copied_bytes, copied_files


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
