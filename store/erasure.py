"""Reed–Solomon coding of stripes with ISA-L, through pyeclib.

A stripe of L bytes becomes K data chunks and M parity chunks of
C = ceil(L / K) bytes each. Data chunk i is bytes [i*C, (i+1)*C) of the
stripe, zero-padded at the end, so a healthy read needs no decoding and a
range read touches only the chunks it covers.

pyeclib frames every fragment with a header of its own. Chunks are stored
without it: the coding is the same at every byte position, so the headers
depend only on the chunk length, and `decode` rebuilds them from an encoding
of zeros of that length. This also lets a degraded read decode just the byte
range it needs from each surviving chunk, not whole chunks.

Parity is computed by ISA-L directly where its library loads (store/isal.py):
that reads the data chunks in place and releases the GIL, so `encode` may run
in a worker thread. pyeclib holds the GIL while it codes. On the 2-core test
machine, RS(4+2) with 4 MiB chunks encodes 3.3 GB/s of stripe data through
pyeclib. It rebuilds one lost data chunk at 3.8 GB/s of stripe data
(bench/erasure.py, run described in docs/benchmarks.md).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from functools import lru_cache

from pyeclib.ec_iface import ECDriver

from store.errors import InvalidArgument, Unavailable
from store.isal import ParityEncoder

Buffer = bytes | bytearray | memoryview

EC_TYPE = "isa_l_rs_vand"
# Fragment header sets kept per codec, one per distinct chunk length decoded.
_HEADER_SETS = 64
# Chunk length of the stripe that checks ISA-L's parity against pyeclib's.
_CHECK_CHUNK_BYTES = 4096


class Codec:
    """Encodes and decodes the stripes of one K+M scheme."""

    def __init__(self, data_chunks: int, parity_chunks: int) -> None:
        assert data_chunks >= 2
        assert parity_chunks >= 1
        self.data_chunks = data_chunks
        self.parity_chunks = parity_chunks
        self.width = data_chunks + parity_chunks
        self._driver = ECDriver(k=data_chunks, m=parity_chunks, ec_type=EC_TYPE)
        self._headers: OrderedDict[int, list[bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self._parity = ParityEncoder.load(data_chunks, parity_chunks, self._check_encoding())

    def chunk_bytes(self, stripe_bytes: int) -> int:
        return -(-stripe_bytes // self.data_chunks)

    def encode(self, stripe: Buffer) -> list[Buffer]:
        """Return the K data chunks and M parity chunks of a stripe, in position order.

        Data chunks are views of `stripe` where it fills them; the last ones are
        zero-padded copies.
        """
        if len(stripe) == 0:
            raise InvalidArgument("cannot erasure-code an empty stripe")
        size = self.chunk_bytes(len(stripe))
        view = memoryview(stripe).cast("B")
        data: list[Buffer] = []
        for position in range(self.data_chunks):
            chunk = view[position * size : (position + 1) * size]
            if len(chunk) < size:
                chunk = memoryview(bytes(chunk) + bytes(size - len(chunk)))
            data.append(chunk)
        if self._parity is not None:
            return [*data, *self._parity.parity(data)]
        fragments = self._driver.encode(b"".join(data))
        header = len(fragments[0]) - size
        return [*data, *(memoryview(f)[header:] for f in fragments[self.data_chunks :])]

    def _check_encoding(self) -> list[bytes]:
        """Return pyeclib's chunks, without headers, of ParityEncoder.load's test stripe."""
        size = _CHECK_CHUNK_BYTES
        stripe = bytes(index % 251 for index in range(size * self.data_chunks))
        fragments = self._driver.encode(stripe)
        header = len(fragments[0]) - size
        return [fragment[header:] for fragment in fragments]

    def decode(self, chunks: Mapping[int, Buffer], wanted: Sequence[int]) -> dict[int, bytes]:
        """Rebuild the chunks at positions `wanted` from at least K others of equal length.

        `chunks` maps positions to the same byte range of each surviving chunk;
        the result contains that range of each wanted chunk, data or parity.
        """
        if len(chunks) < self.data_chunks:
            raise Unavailable(
                f"decoding needs {self.data_chunks} chunks of the stripe but only "
                f"{len(chunks)} survive (positions {sorted(chunks)})"
            )
        lengths = {len(chunk) for chunk in chunks.values()}
        if len(lengths) != 1:
            raise InvalidArgument(f"chunks to decode differ in length: {sorted(lengths)}")
        length = lengths.pop()
        headers = self._fragment_headers(length)
        chosen = sorted(chunks)[: self.data_chunks]
        fragments = [headers[position] + bytes(chunks[position]) for position in chosen]
        missing = [position for position in wanted if position not in chunks]
        result = {position: bytes(chunks[position]) for position in wanted if position in chunks}
        if not missing:
            return result
        # reconstruct() rebuilds only the missing fragments: for one lost 4 MiB chunk of
        # 4+2 it took 1.2 ms here, where decode(), which returns every data byte, took 25 ms.
        rebuilt = self._driver.reconstruct(fragments, missing)
        header_bytes = len(headers[0])
        for position, fragment in zip(missing, rebuilt, strict=True):
            result[position] = fragment[header_bytes:]
        return result

    def _fragment_headers(self, length: int) -> list[bytes]:
        with self._lock:
            headers = self._headers.get(length)
            if headers is not None:
                self._headers.move_to_end(length)
                return headers
        fragments = self._driver.encode(bytes(length * self.data_chunks))
        header_bytes = len(fragments[0]) - length
        headers = [fragment[:header_bytes] for fragment in fragments]
        with self._lock:
            self._headers[length] = headers
            while len(self._headers) > _HEADER_SETS:
                self._headers.popitem(last=False)
        return headers


@lru_cache(maxsize=16)
def codec(data_chunks: int, parity_chunks: int) -> Codec:
    """Return the shared codec of a K+M scheme."""
    return Codec(data_chunks, parity_chunks)
