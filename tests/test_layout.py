"""Unit tests of store/layout.py: chunk ids, stripe arithmetic and layout checks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store._pb import common_pb2 as pb
from store.errors import InvalidArgument
from store.layout import (
    CHUNK_ID_BYTES,
    check_layout,
    check_upload_id,
    chunk_id,
    split_chunk_id,
    stripes_for_range,
)

UPLOAD_ID = "0123456789abcdef0123456789abcdef"
OTHER_UPLOAD_ID = "f" * 32


def make_layout(lengths: list[int], upload_id: str = UPLOAD_ID) -> pb.Layout:
    layout = pb.Layout(chunk_size_bytes=max(lengths, default=1), replicas=1)
    offset = 0
    for index, length in enumerate(lengths):
        stripe = layout.stripes.add(offset_bytes=offset, length_bytes=length)
        stripe.chunks.add(chunk_id=chunk_id(upload_id, index), target="ds-1", length_bytes=length)
        offset += length
    return layout


def model_slices(lengths: list[int], offset: int, length: int) -> list[tuple[int, int, int]]:
    """Return (stripe index, start, end) of every stripe that overlaps the range, by brute force."""
    slices = []
    stripe_start = 0
    for index, stripe_length in enumerate(lengths):
        start = max(offset, stripe_start)
        end = min(offset + length, stripe_start + stripe_length)
        if end > start:
            slices.append((index, start - stripe_start, end - stripe_start))
        stripe_start += stripe_length
    return slices


@given(
    lengths=st.lists(st.integers(min_value=1, max_value=50), max_size=12),
    offset=st.integers(min_value=0, max_value=700),
    length=st.integers(min_value=-5, max_value=700),
)
def test_stripes_for_range_model(lengths: list[int], offset: int, length: int) -> None:
    layout = make_layout(lengths)
    got = [
        (piece.stripe_index, piece.start_bytes, piece.end_bytes)
        for piece in stripes_for_range(layout, offset, length)
    ]
    assert got == model_slices(lengths, offset, max(length, 0)), "slices differ from the model"


def test_stripes_for_range_boundaries() -> None:
    layout = make_layout([100, 100, 100])

    assert [
        (p.stripe_index, p.start_bytes, p.end_bytes) for p in stripes_for_range(layout, 99, 2)
    ] == [
        (0, 99, 100),
        (1, 0, 1),
    ], "a range across a stripe boundary"
    assert [p.stripe_index for p in stripes_for_range(layout, 100, 100)] == [1], "one whole stripe"
    assert stripes_for_range(layout, 300, 10) == [], "a range at the end covers nothing"
    assert stripes_for_range(layout, 0, 0) == [], "an empty range covers nothing"
    assert stripes_for_range(layout, 250, 1000)[-1].end_bytes == 100, "clipped at the end"


def test_chunk_id_round_trip() -> None:
    chunk = chunk_id(UPLOAD_ID, 70_000, 3)
    assert len(chunk) == CHUNK_ID_BYTES, f"chunk id has {len(chunk)} bytes"
    assert chunk.hex().startswith(UPLOAD_ID), "a chunk id starts with its upload id"
    assert split_chunk_id(chunk) == (UPLOAD_ID, 70_000, 3), "split_chunk_id of chunk_id"


def test_split_chunk_id_invalid() -> None:
    with pytest.raises(InvalidArgument) as caught:
        split_chunk_id(b"short")
    assert "5 bytes" in str(caught.value), f"the error does not give the length: {caught.value}"


@pytest.mark.parametrize("upload_id", ["", "abc", "g" * 32, "0" * 30, "0" * 34])
def test_check_upload_id_invalid(upload_id: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_upload_id(upload_id)
    assert repr(upload_id) in str(caught.value), f"the error does not name {upload_id!r}"


def test_check_layout_valid() -> None:
    check_layout(make_layout([10, 10, 5]), 25, UPLOAD_ID)
    check_layout(make_layout([]), 0, UPLOAD_ID)


def test_check_layout_invalid() -> None:
    gap = make_layout([10, 10])
    gap.stripes[1].offset_bytes = 11
    empty_stripe = make_layout([10, 10])
    empty_stripe.stripes[1].length_bytes = 0
    wrong_chunk_length = make_layout([10, 10])
    wrong_chunk_length.stripes[0].chunks[0].length_bytes = 9
    missing_copy = make_layout([10, 10])
    del missing_copy.stripes[0].chunks[:]
    cases = {
        "gap": (gap, 20, UPLOAD_ID, "starts at 11"),
        "empty stripe": (empty_stripe, 10, UPLOAD_ID, "empty"),
        "wrong size": (make_layout([10, 10]), 25, UPLOAD_ID, "25"),
        "other upload": (make_layout([10], OTHER_UPLOAD_ID), 10, UPLOAD_ID, "another upload"),
        "chunk length": (wrong_chunk_length, 20, UPLOAD_ID, "chunk length 9"),
        "copies": (missing_copy, 20, UPLOAD_ID, "0 chunks"),
    }
    for name, (layout, size, upload_id, fragment) in cases.items():
        with pytest.raises(InvalidArgument) as caught:
            check_layout(layout, size, upload_id)
        assert fragment in str(caught.value), (
            f"{name}: the error lacks {fragment!r}: {caught.value}"
        )
