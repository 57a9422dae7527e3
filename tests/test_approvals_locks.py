"""The approval store's locking, observed: every write path holds the lock file exclusively
while it reads and rewrites the store, so no approval is ever spent twice.

The observation needs no timing: the store reads its clock inside the locked section, so a
clock that probes the lock file through its own open file description (flock conflicts
between descriptions, even in one process) sees which lock the store holds at that moment.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from lumos_mcp.approvals import LOCK_FILE, ApprovalStore
from lumos_mcp.errors import ApprovalInvalidError

DIGEST = "sha256:" + "cd" * 32
NOW = 1_714_557_600.0


def held_lock(lock_path: Path) -> str:
    """Which lock another holder has on ``lock_path``: "exclusive", "shared" or "none"."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return "exclusive"
        fcntl.flock(fd, fcntl.LOCK_UN)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return "shared"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return "none"
    finally:
        os.close(fd)


class ProbingClock:
    """A fixed clock that records the lock held on the store's lock file at each reading."""

    def __init__(self, state_dir: Path) -> None:
        self.lock_path = state_dir / LOCK_FILE
        self.seen: list[str] = []
        self.probing = False

    def __call__(self) -> float:
        if self.probing:
            self.seen.append(held_lock(self.lock_path))
        return NOW


def probed(tmp_path: Path) -> tuple[ApprovalStore, ProbingClock]:
    state = tmp_path / "state"
    clock = ProbingClock(state)
    return ApprovalStore(state, clock=clock), clock


def _request(s: ApprovalStore) -> None:
    s.request("tx-9", DIGEST, "new", lifetime_s=60)


def _elicited(s: ApprovalStore) -> None:
    s.record_elicited("tx-9", DIGEST, "new", granted=True)


def _pending(s: ApprovalStore) -> str:
    return next(a.id for a in s.list(status="pending"))


def _grant(s: ApprovalStore) -> None:
    s.grant(_pending(s), by="alice")


def _deny(s: ApprovalStore) -> None:
    s.deny(_pending(s), by="alice")


def _consume(s: ApprovalStore) -> None:
    granted = next(a for a in s.list(status="granted"))
    s.consume(granted.id, granted.txid, granted.digest)


def _expire(s: ApprovalStore) -> None:
    s.expire_due()


WRITES: dict[str, Callable[[ApprovalStore], None]] = {
    "request": _request,
    "record_elicited": _elicited,
    "grant": _grant,
    "deny": _deny,
    "consume": _consume,
    "expire_due": _expire,
}


@pytest.mark.parametrize("operation", list(WRITES))
def test_every_write_path_holds_the_lock_file_exclusively_while_it_works(tmp_path: Path, operation: str) -> None:
    store, clock = probed(tmp_path)
    store.request("tx-1", DIGEST, "pending one", lifetime_s=60)
    ready = store.request("tx-2", DIGEST, "granted one", lifetime_s=60)
    store.grant(ready.id, by="alice")
    clock.probing = True
    WRITES[operation](store)
    # the last reading is the write path's own, taken inside its locked section
    assert clock.seen, "the write path never read its clock"
    assert clock.seen[-1] == "exclusive"


def test_the_lock_is_released_once_a_write_returns(tmp_path: Path) -> None:
    store, _ = probed(tmp_path)
    store.request("tx-1", DIGEST, "pending one", lifetime_s=60)
    assert held_lock(store.state_dir / LOCK_FILE) == "none"


def test_a_consumed_approval_cannot_be_consumed_again_by_another_store(tmp_path: Path) -> None:
    first = ApprovalStore(tmp_path / "state")
    a = first.record_elicited("tx-1", DIGEST, "once", granted=True)
    first.consume(a.id, "tx-1", DIGEST)
    with pytest.raises(ApprovalInvalidError) as info:
        ApprovalStore(tmp_path / "state").consume(a.id, "tx-1", DIGEST)
    assert info.value.fields["reason"] == "used"
