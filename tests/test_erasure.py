"""Reed–Solomon coding of stripes: systematic chunks, decoding from any K, ranges."""

from __future__ import annotations

import itertools
import os

import pytest

from store.erasure import Codec, codec
from store.errors import Unavailable


@pytest.mark.parametrize(("data", "parity"), [(2, 1), (4, 2), (8, 3)])
@pytest.mark.parametrize("length", [1, 7, 4096, 1_000_003])
def test_any_k_chunks_rebuild_every_chunk(data: int, parity: int, length: int) -> None:
    stripe = os.urandom(length)
    chunks = [bytes(chunk) for chunk in codec(data, parity).encode(stripe)]
    size = -(-length // data)
    assert [len(chunk) for chunk in chunks] == [size] * (data + parity)
    padded = stripe + bytes(size * data - length)
    assert b"".join(chunks[:data]) == padded, "data chunks must be the stripe's own bytes"
    width = data + parity
    survivors_sets = list(itertools.combinations(range(width), data))[:12]
    for survivors in survivors_sets:
        lost = [p for p in range(width) if p not in survivors]
        rebuilt = codec(data, parity).decode({p: chunks[p] for p in survivors}, lost)
        for position in lost:
            assert rebuilt[position] == chunks[position], f"position {position} from {survivors}"


@pytest.mark.parametrize(("data", "parity"), [(2, 1), (3, 2), (4, 2), (10, 4)])
def test_isal_parity_is_pyeclibs(data: int, parity: int) -> None:
    """Parity from ISA-L directly must match pyeclib's, which decodes it."""
    direct = Codec(data, parity)
    assert direct._parity is not None, "ISA-L from pyeclib's wheel did not load"
    through_pyeclib = Codec(data, parity)
    through_pyeclib._parity = None
    for length in (1, 33, 65536 * data, 3_000_017):
        stripe = os.urandom(length)
        got = [bytes(chunk) for chunk in direct.encode(bytearray(stripe))]
        assert got == [bytes(chunk) for chunk in through_pyeclib.encode(stripe)], length


def test_decode_a_byte_range_of_each_chunk() -> None:
    stripe = os.urandom(4 * 65536)
    chunks = [bytes(chunk) for chunk in codec(4, 2).encode(stripe)]
    start, end = 1000, 9000
    survivors = {p: chunks[p][start:end] for p in (1, 2, 4, 5)}
    rebuilt = codec(4, 2).decode(survivors, [0, 3])
    assert rebuilt[0] == chunks[0][start:end]
    assert rebuilt[3] == chunks[3][start:end]


def test_too_few_chunks_name_the_survivors() -> None:
    chunks = codec(4, 2).encode(os.urandom(4000))
    with pytest.raises(
        Unavailable, match=r"needs 4 chunks .* only 3 survive \(positions \[0, 1, 5\]\)"
    ):
        codec(4, 2).decode({0: chunks[0], 1: chunks[1], 5: chunks[5]}, [2])
