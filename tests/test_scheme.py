"""Protection scheme names, the automatic choice, and stripe arithmetic."""

from __future__ import annotations

import pytest

from store._pb import common_pb2 as pb
from store.errors import InvalidArgument
from store.scheme import Scheme, for_domains, of_layout, parse, resolve


@pytest.mark.parametrize(
    ("text", "width", "losses"), [("ec:4+2", 6, 2), ("ec:8+3", 11, 3), ("rep:3", 3, 2)]
)
def test_parse_round_trips(text: str, width: int, losses: int) -> None:
    scheme = parse(text)
    assert str(scheme) == text, f"{text} printed as {scheme}"
    assert scheme.width == width, scheme
    assert scheme.tolerated_losses == losses, scheme
    layout = pb.Layout()
    scheme.fill(layout)
    assert of_layout(layout) == scheme, f"{text} did not survive a layout"


@pytest.mark.parametrize("text", ["ec:1+1", "ec:4+0", "ec:4", "rep:0", "rep:9", "raid6", ""])
def test_bad_schemes_name_the_value(text: str) -> None:
    with pytest.raises(InvalidArgument, match="scheme"):
        parse(text)


@pytest.mark.parametrize(
    ("domains", "expected"),
    [
        (1, "rep:1"),
        (2, "rep:2"),
        (3, "ec:2+1"),
        (5, "ec:2+1"),
        (6, "ec:2+1"),
        (7, "ec:4+2"),
        (40, "ec:4+2"),
    ],
)
def test_auto_fits_the_domain_count(domains: int, expected: str) -> None:
    assert str(for_domains(domains)) == expected


def test_auto_counts_domains_not_servers() -> None:
    servers = [
        pb.DataserverInfo(id=f"ds-{i}", domain=f"host-{i // 2}", state=pb.DATASERVER_STATE_UP)
        for i in range(6)
    ]
    assert str(resolve("auto", servers)) == "ec:2+1", "six servers on three hosts are 3 domains"


def test_stripe_and_chunk_sizes() -> None:
    scheme = Scheme(data_chunks=4, parity_chunks=2)
    assert scheme.stripe_bytes(1 << 20) == 4 << 20
    assert scheme.chunk_bytes(10) == 3, "a 10-byte stripe needs 3-byte chunks under 4+2"
    assert Scheme(replicas=3).chunk_bytes(10) == 10
