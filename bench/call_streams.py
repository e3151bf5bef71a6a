"""CPU per call: grpc.aio unary calls against the same calls on reusable streams.

    .venv/bin/python bench/call_streams.py [--calls 4000] [--concurrency 8] [--rounds 3]

A server process serves one method both ways: as a plain unary method (the
baseline) and through store.callstream's StreamedHandlers. The client sends
CALLS calls with CONCURRENCY tasks, first as unary calls, then with
store.callstream.StreamedMethod, for small replies (128 bytes, like a stat)
and 512 KiB replies (a ReadBlocks reply). It reads the CPU time of both
processes from /proc before and after each phase. Both processes run on
uvloop with the store's channel and server options, as the servers do.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import time
from multiprocessing.connection import Connection
from pathlib import Path

import grpc
import grpc.aio
import uvloop
from benchlib import MIB, Row, new_report, process_cpu_s, progress

from store.callstream import StreamedHandlers, StreamedMethod
from store.rpc import CHANNEL_OPTIONS, SERVER_OPTIONS

SERVICE = "bench.Calls"
REPLY_SIZES_BYTES = (128, MIB // 2)


def _identity(message: bytes) -> bytes:
    return message


def serve(port_sender: Connection) -> None:
    """Run the server: the method Reply returns int(request) bytes."""

    async def main() -> None:
        payloads = {size: os.urandom(size) for size in REPLY_SIZES_BYTES}

        async def reply(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return payloads[int(request)]

        handlers = StreamedHandlers()
        unary = grpc.method_handlers_generic_handler(
            SERVICE,
            {"Reply": grpc.unary_unary_rpc_method_handler(reply, _identity, _identity)},
        )
        streamed = grpc.method_handlers_generic_handler(
            f"{SERVICE}Calls",
            {"Reply": handlers.method_handler(reply, _identity, _identity)},
        )
        server = grpc.aio.server(options=SERVER_OPTIONS)
        server.add_generic_rpc_handlers((unary, streamed))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        port_sender.send(port)
        await server.wait_for_termination()

    uvloop.run(main())


async def measure(
    address: str, server_pid: int, calls: int, concurrency: int, rounds: int
) -> dict[tuple[str, int], list[tuple[float, float, float]]]:
    """Return (calls/s, client ms/call, server ms/call) per (way, reply size), per round."""
    results: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        ways = {
            "unary": channel.unary_unary(f"/{SERVICE}/Reply", _identity, _identity),
            "streamed": StreamedMethod(channel, f"/{SERVICE}Calls/Reply", _identity, _identity),
        }
        for call in ways.values():
            await call(b"128", timeout=10.0)
        for number in range(rounds):
            for size in REPLY_SIZES_BYTES:
                for way, call in ways.items():
                    sample = await _phase(call, str(size).encode(), server_pid, calls, concurrency)
                    results.setdefault((way, size), []).append(sample)
                    progress(
                        f"round {number} {way} {size} B: {sample[0]:.0f} calls/s, "
                        f"client {sample[1]:.3f} ms, server {sample[2]:.3f} ms per call"
                    )
    return results


async def _phase(
    call: object, request: bytes, server_pid: int, calls: int, concurrency: int
) -> tuple[float, float, float]:
    async def worker(count: int) -> None:
        for _ in range(count):
            await call(request, timeout=10.0)  # type: ignore[operator]

    client_before_s = time.process_time()
    server_before_s = process_cpu_s(server_pid)
    started_s = time.perf_counter()
    await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
    elapsed_s = time.perf_counter() - started_s
    done = calls // concurrency * concurrency
    client_ms = (time.process_time() - client_before_s) * 1000 / done
    server_ms = (process_cpu_s(server_pid) - server_before_s) * 1000 / done
    return done / elapsed_s, client_ms, server_ms


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=4000, help="calls per phase (default: 4000)")
    parser.add_argument("--concurrency", type=int, default=8, help="client tasks (default: 8)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default: 3)")
    args = parser.parse_args()
    report = new_report("call_streams", vars(args), Path("/tmp"))

    receiver, sender = multiprocessing.Pipe(duplex=False)
    server = multiprocessing.Process(target=serve, args=(sender,), daemon=True)
    server.start()
    try:
        if not receiver.poll(30):
            raise RuntimeError("the benchmark server did not start within 30 s")
        port = receiver.recv()
        assert server.pid is not None
        results = uvloop.run(
            measure(f"127.0.0.1:{port}", server.pid, args.calls, args.concurrency, args.rounds)
        )
    finally:
        server.terminate()
        server.join(10)

    for size in REPLY_SIZES_BYTES:
        streamed, unary = results[("streamed", size)], results[("unary", size)]
        for index, (figure, unit) in enumerate(
            (("calls/s", "calls/s"), ("client CPU", "ms/call"), ("server CPU", "ms/call"))
        ):
            report.add(
                Row(
                    f"{size} B reply, streamed, {figure}",
                    unit,
                    [sample[index] for sample in streamed],
                    "unary",
                    [sample[index] for sample in unary],
                )
            )
    report.finish()


if __name__ == "__main__":
    main()
