"""Protection schemes: erasure coding K+M or N-way replication, named as text.

A bucket's scheme is fixed when the bucket is created and every layout
records the scheme it was written with. The text forms are "ec:K+M" (K data
chunks and M parity chunks per stripe) and "rep:N" (N copies of each stripe).
"auto" picks a scheme from the number of failure domains at the time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from store._pb import common_pb2 as pb
from store.errors import InvalidArgument
from store.limits import MAX_REPLICAS

AUTO = "auto"
MAX_DATA_CHUNKS = 32
MAX_PARITY_CHUNKS = 8
_EC = re.compile(r"ec:(\d{1,3})\+(\d{1,3})")
_REP = re.compile(r"rep:(\d{1,3})")


@dataclass(frozen=True, slots=True)
class Scheme:
    """K+M erasure coding when parity_chunks > 0, otherwise `replicas` copies."""

    data_chunks: int = 1
    parity_chunks: int = 0
    replicas: int = 1

    @property
    def erasure_coded(self) -> bool:
        return self.parity_chunks > 0

    @property
    def width(self) -> int:
        """Chunks per stripe, each on its own dataserver."""
        return self.data_chunks + self.parity_chunks if self.erasure_coded else self.replicas

    @property
    def tolerated_losses(self) -> int:
        """How many chunks of a stripe can be lost while the stripe stays readable."""
        return self.parity_chunks if self.erasure_coded else self.replicas - 1

    def __str__(self) -> str:
        if self.erasure_coded:
            return f"ec:{self.data_chunks}+{self.parity_chunks}"
        return f"rep:{self.replicas}"

    def stripe_bytes(self, chunk_size_bytes: int) -> int:
        """Object bytes in one full stripe: K chunks of data, or one for replication."""
        return chunk_size_bytes * self.data_chunks if self.erasure_coded else chunk_size_bytes

    def chunk_bytes(self, stripe_length_bytes: int) -> int:
        """Length of every chunk of a stripe holding `stripe_length_bytes` of the object."""
        if not self.erasure_coded:
            return stripe_length_bytes
        return -(-stripe_length_bytes // self.data_chunks)

    def fill(self, layout: pb.Layout) -> None:
        """Record the scheme in a layout."""
        layout.replicas = 1 if self.erasure_coded else self.replicas
        layout.data_chunks = self.data_chunks if self.erasure_coded else 0
        layout.parity_chunks = self.parity_chunks


def parse(text: str) -> Scheme:
    """Return the scheme named "ec:K+M" or "rep:N"; raise InvalidArgument otherwise."""
    ec = _EC.fullmatch(text.strip())
    if ec:
        data, parity = int(ec.group(1)), int(ec.group(2))
        if not (2 <= data <= MAX_DATA_CHUNKS and 1 <= parity <= MAX_PARITY_CHUNKS):
            raise InvalidArgument(
                f"scheme {text!r}: K must be 2..{MAX_DATA_CHUNKS} and M 1..{MAX_PARITY_CHUNKS}; "
                "for one data chunk use rep:N"
            )
        return Scheme(data_chunks=data, parity_chunks=parity)
    rep = _REP.fullmatch(text.strip())
    if rep:
        copies = int(rep.group(1))
        if not 1 <= copies <= MAX_REPLICAS:
            raise InvalidArgument(f"scheme {text!r}: N must be 1..{MAX_REPLICAS}")
        return Scheme(replicas=copies)
    raise InvalidArgument(
        f"invalid protection scheme {text!r}; use ec:K+M (such as ec:4+2), rep:N (such as "
        f"rep:3) or {AUTO}"
    )


def check(text: str) -> str:
    """Return `text` when it is "auto" or a valid scheme; raise InvalidArgument otherwise."""
    if text != AUTO:
        parse(text)
    return text


def for_domains(domain_count: int) -> Scheme:
    """Return the scheme "auto" picks for a cluster with this many failure domains.

    The choice is 4+2 from seven domains, 2+1 from three, and otherwise one copy per
    domain. Each survives the loss of one domain once there are two or more. 4+2
    waits for a seventh domain because a stripe needs all six of its chunks
    written: on exactly six, one lost domain would stop every write until it
    returns.
    """
    if domain_count >= 7:
        return Scheme(data_chunks=4, parity_chunks=2)
    if domain_count >= 3:
        return Scheme(data_chunks=2, parity_chunks=1)
    return Scheme(replicas=max(domain_count, 1))


def resolve(text: str, dataservers: Iterable[pb.DataserverInfo]) -> Scheme:
    """Return the scheme `text` names, resolving "auto" from the domains of live dataservers."""
    if text != AUTO:
        return parse(text)
    domains = {
        info.domain or info.id for info in dataservers if info.state != pb.DATASERVER_STATE_OUT
    }
    return for_domains(len(domains))


def of_counts(data_chunks: int, parity_chunks: int, replicas: int) -> Scheme:
    """Return the scheme of a record's fields: K and M when M > 0, else the replica count."""
    if parity_chunks:
        return Scheme(data_chunks=data_chunks, parity_chunks=parity_chunks)
    return Scheme(replicas=max(replicas, 1))


def of_layout(layout: pb.Layout) -> Scheme:
    """Return the scheme a layout was written with."""
    return of_counts(layout.data_chunks, layout.parity_chunks, layout.replicas)
