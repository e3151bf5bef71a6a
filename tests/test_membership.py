"""Failure detection in Membership on a fake clock: up, suspect, down, out and back."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import rocksdict

import metaserver.main
from metaserver.membership import FailureTimeouts, Membership, state_after_silence
from metaserver.rocks import RocksEnv
from store._pb import common_pb2 as pb
from store.errors import InvalidArgument

UP = pb.DATASERVER_STATE_UP
SUSPECT = pb.DATASERVER_STATE_SUSPECT
DOWN = pb.DATASERVER_STATE_DOWN
OUT = pb.DATASERVER_STATE_OUT

TIMEOUTS = FailureTimeouts(suspect_s=3.0, down_s=10.0, out_s=600.0)


class FakeClock:
    """A monotonic clock that moves only when a test advances it."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        assert seconds >= 0
        self.now_s += seconds


@pytest.fixture
def db(tmp_path: Path) -> Iterator[rocksdict.Rdict]:
    database = RocksEnv().open(tmp_path / "system")
    try:
        yield database
    finally:
        database.close()


def new_membership(db: rocksdict.Rdict, clock: FakeClock) -> Membership:
    return Membership(db, pb.ClusterMap(cluster_id="test", shard_count=4), TIMEOUTS, clock)


def info(dataserver_id: str = "ds-a") -> pb.DataserverInfo:
    return pb.DataserverInfo(
        id=dataserver_id, address=f"127.0.0.1:{7000 + ord(dataserver_id[-1])}", free_bytes=1 << 30
    )


def state_of(membership: Membership, dataserver_id: str = "ds-a") -> int:
    for record in membership.cluster_map().dataservers:
        if record.id == dataserver_id:
            return record.state
    raise AssertionError(f"dataserver {dataserver_id} is not in the cluster map")


def test_silence_walks_every_state(db: rocksdict.Rdict) -> None:
    clock = FakeClock()
    membership = new_membership(db, clock)
    membership.register(info())
    epoch = membership.epoch

    steps = [
        (2.9, UP, []),
        (0.2, SUSPECT, ["ds-a"]),
        (6.8, SUSPECT, []),
        (0.2, DOWN, ["ds-a"]),
        (599.9, DOWN, []),
        (0.2, OUT, ["ds-a"]),
        (10_000.0, OUT, []),
    ]
    for seconds, expected, changed in steps:
        clock.advance(seconds)
        assert membership.check_timeouts() == changed, f"at {clock.now_s}"
        assert state_of(membership) == expected, f"state at {clock.now_s}"
        epoch += len(changed)
        assert membership.epoch == epoch, f"epoch at {clock.now_s}"


def test_heartbeats_keep_up(db: rocksdict.Rdict) -> None:
    clock = FakeClock()
    membership = new_membership(db, clock)
    membership.register(info())
    epoch = membership.epoch
    for _ in range(30):
        clock.advance(2.5)
        assert membership.heartbeat(info())
        assert membership.check_timeouts() == []
    assert state_of(membership) == UP
    assert membership.epoch == epoch, "heartbeats of an up dataserver changed the epoch"


@pytest.mark.parametrize(
    ("silence_s", "state"), [(4.0, SUSPECT), (11.0, DOWN), (700.0, OUT)], ids=str
)
def test_heartbeat_brings_back_up(db: rocksdict.Rdict, silence_s: float, state: int) -> None:
    clock = FakeClock()
    membership = new_membership(db, clock)
    membership.register(info())
    clock.advance(silence_s)
    membership.check_timeouts()
    assert state_of(membership) == state
    epoch = membership.epoch

    assert membership.heartbeat(info()), "a known dataserver was told to register"
    assert state_of(membership) == UP
    assert membership.epoch == epoch + 1, "coming back up did not bump the epoch"


def test_registration_brings_out_back_up(db: rocksdict.Rdict) -> None:
    clock = FakeClock()
    membership = new_membership(db, clock)
    membership.register(info())
    clock.advance(700.0)
    membership.check_timeouts()
    assert state_of(membership) == OUT

    membership.register(info())
    assert state_of(membership) == UP


def test_state_changes_logged(db: rocksdict.Rdict, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    membership = new_membership(db, clock)
    membership.register(info())
    caplog.set_level(logging.INFO, logger="metaserver.membership")
    caplog.clear()
    clock.advance(4.0)
    membership.check_timeouts()
    clock.advance(1.0)
    membership.heartbeat(info())

    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages
    address = info().address
    assert f"id=ds-a address={address} state=up->suspect since_heartbeat_s=4.0" in messages[0]
    assert f"id=ds-a address={address} previous_address={address} state=suspect->up" in messages[1]
    assert "since_heartbeat_s=5.0" in messages[1]


def silence_one_of_two(db: rocksdict.Rdict, clock: FakeClock, silence_s: float) -> Membership:
    """Register ds-a and ds-b, then let `silence_s` pass with heartbeats from ds-b only."""
    membership = new_membership(db, clock)
    membership.register(info("ds-a"))
    membership.register(info("ds-b"))
    clock.advance(silence_s)
    membership.heartbeat(info("ds-b"))
    membership.check_timeouts()
    assert state_of(membership, "ds-b") == UP
    return membership


def test_out_survives_reload(db: rocksdict.Rdict) -> None:
    clock = FakeClock()
    membership = silence_one_of_two(db, clock, silence_s=700.0)
    assert state_of(membership, "ds-a") == OUT
    epoch = membership.epoch

    reloaded = new_membership(db, clock)
    assert reloaded.epoch == epoch
    assert state_of(reloaded, "ds-a") == OUT
    assert state_of(reloaded, "ds-b") == UP
    clock.advance(2.0)
    assert reloaded.check_timeouts() == []
    assert state_of(reloaded, "ds-a") == OUT, "an out dataserver changed state without heartbeat"

    reloaded.heartbeat(info("ds-a"))
    assert state_of(reloaded, "ds-a") == UP


def test_reload_restarts_timers(db: rocksdict.Rdict) -> None:
    """After a restart silence counts from zero again, also for a down dataserver."""
    clock = FakeClock()
    membership = silence_one_of_two(db, clock, silence_s=11.0)
    assert state_of(membership, "ds-a") == DOWN

    clock.advance(1000.0)
    reloaded = new_membership(db, clock)
    clock.advance(9.0)
    reloaded.check_timeouts()
    assert state_of(reloaded, "ds-a") == DOWN
    assert state_of(reloaded, "ds-b") == SUSPECT, "an up dataserver lost its full timeout"
    clock.advance(600.0)
    reloaded.check_timeouts()
    assert state_of(reloaded, "ds-a") == DOWN, "a down dataserver went out too early"
    clock.advance(2.0)
    reloaded.check_timeouts()
    assert state_of(reloaded, "ds-a") == OUT


@pytest.mark.parametrize(
    ("state", "silence_s", "expected"),
    [
        (UP, 0.0, UP),
        (UP, 3.0, UP),
        (UP, 3.1, SUSPECT),
        (UP, 10.1, DOWN),
        (UP, 610.1, OUT),
        (SUSPECT, 0.0, SUSPECT),
        (DOWN, 0.0, DOWN),
        (DOWN, 610.1, OUT),
        (OUT, 0.0, OUT),
    ],
)
def test_state_after_silence(state: int, silence_s: float, expected: int) -> None:
    assert state_after_silence(state, silence_s, TIMEOUTS) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("timeouts", "flag"),
    [
        (FailureTimeouts(suspect_s=10.0, down_s=10.0, out_s=600.0), "--dataserver-suspect-s 10.0"),
        (FailureTimeouts(suspect_s=0.0, down_s=10.0, out_s=600.0), "--dataserver-suspect-s 0.0"),
        (FailureTimeouts(suspect_s=3.0, down_s=-1.0, out_s=600.0), "--dataserver-timeout-s -1.0"),
        (FailureTimeouts(suspect_s=3.0, down_s=10.0, out_s=0.0), "--dataserver-out-s 0.0"),
    ],
)
def test_bad_timeouts_rejected(timeouts: FailureTimeouts, flag: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        timeouts.validate()
    assert flag in str(caught.value)


def test_metaserver_flags_checked() -> None:
    args = metaserver.main.parse_args(
        ["--dir", "unused", "--dataserver-suspect-s", "5", "--dataserver-timeout-s", "4"]
    )
    with pytest.raises(InvalidArgument) as caught:
        metaserver.main.validate(args)
    assert "--dataserver-suspect-s 5.0 must be below --dataserver-timeout-s 4.0" in str(
        caught.value
    )
    defaults = metaserver.main.failure_timeouts(metaserver.main.parse_args(["--dir", "unused"]))
    assert defaults == FailureTimeouts(suspect_s=3.0, down_s=10.0, out_s=600.0)
