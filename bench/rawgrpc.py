"""Client side of the raw grpcio baseline: start raw_server.py and measure it.

The client uses the store's channel options and, like the SDK, one grpc.aio
channel per server. It also applies the allocator tuning that AsyncClient
applies to its whole process, because without it every received 1 MiB
message is a fresh mmap() and the raw download ran about 2.5 times slower
on the 2-core test machine. The baseline then differs from the SDK only in
what the store does per call.
"""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from types import TracebackType

import grpc.aio
from benchlib import BENCH_DIR, MIB, RateSample, run_async_load

from store.memory import tune_malloc
from store.rpc import CHANNEL_OPTIONS

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
SMALL_RPC_BYTES = 128


class RawServer:
    """raw_server.py running as a child process on 127.0.0.1 with an OS-chosen port."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self.address = ""

    def __enter__(self) -> RawServer:
        self.process = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "raw_server.py"), "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.address = f"127.0.0.1:{self._read_port()}"
        return self

    def _read_port(self) -> int:
        assert self.process is not None and self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], START_TIMEOUT_S)
        line = self.process.stdout.readline() if ready else ""
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(
                f"raw_server.py pid={self.process.pid} did not print its port within "
                f"{START_TIMEOUT_S}s (got {line!r})"
            )
        return int(line)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        """SIGTERM the server by pid, then SIGKILL it if it is still running."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class RawClient:
    """A grpc.aio client of raw_server.py; create it inside the event loop that uses it."""

    def __init__(self, address: str) -> None:
        tune_malloc()
        self.channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self._download = self.channel.unary_stream("/rawbench.Raw/Download")
        self._upload = self.channel.stream_unary("/rawbench.Raw/Upload")
        self._echo = self.channel.unary_unary("/rawbench.Raw/Echo")
        self._small_request = b"x" * SMALL_RPC_BYTES

    async def close(self) -> None:
        await self.channel.close()

    async def download_mb_s(self, total_bytes: int, message_bytes: int = MIB) -> float:
        """Stream `total_bytes` from the server in messages of `message_bytes`; return MB/s."""
        count = max(1, total_bytes // message_bytes)
        request = f"{count},{message_bytes}".encode()
        start_s = time.perf_counter()
        received_bytes = 0
        async for message in self._download(request):
            received_bytes += len(message)
        elapsed_s = time.perf_counter() - start_s
        if received_bytes != count * message_bytes:
            raise RuntimeError(f"raw download got {received_bytes} of {count * message_bytes}")
        return received_bytes / elapsed_s / 1e6

    async def upload_mb_s(self, total_bytes: int, message_bytes: int = MIB) -> float:
        """Stream `total_bytes` to the server in messages of `message_bytes`; return MB/s."""
        count = max(1, total_bytes // message_bytes)
        payload = bytes(message_bytes)

        async def messages() -> AsyncIterator[bytes]:
            for _ in range(count):
                yield payload

        start_s = time.perf_counter()
        reply = await self._upload(messages())
        elapsed_s = time.perf_counter() - start_s
        if int(reply) != count * message_bytes:
            raise RuntimeError(f"raw upload stored {reply!r} of {count * message_bytes} bytes")
        return count * message_bytes / elapsed_s / 1e6

    async def echo(self, worker: int, index: int) -> bytes:
        reply: bytes = await self._echo(self._small_request)
        return reply

    async def small_rpc_load(self, concurrency: int, duration_s: float) -> RateSample:
        """Unary calls of SMALL_RPC_BYTES each way from `concurrency` tasks."""
        return await run_async_load(self.echo, concurrency, duration_s)
