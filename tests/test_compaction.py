"""The journal is compacted while running (issue 19 item 7): its size stays bounded over
many apply/commit cycles, and recovery after a compaction restores exactly what it would
have restored from the whole journal."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from lumos_mcp.errors import JournalError
from lumos_mcp.kernelfs.backend import Backend
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.txn import Transaction, TransactionManager
from lumos_mcp.txn import journal as journal_mod
from lumos_mcp.txn.journal import scan

SWAPPINESS = "proc/sys/vm/swappiness"
DIRTY_RATIO = "proc/sys/vm/dirty_ratio"
BACKGROUND = "proc/sys/vm/dirty_background_ratio"
LIMIT = 4096


def speculative(holder: Transaction) -> bool:
    return holder.speculative


def cycles(manager: TransactionManager, journal_path: Path, n: int) -> int:
    """Apply and commit ``n`` changes of vm.dirty_background_ratio; the largest journal size seen."""
    largest = 0
    for i in range(n):
        tx = manager.apply(manager.stage({"vm.dirty_background_ratio": 5 + i % 2}).id, confirm_within_s=60)
        manager.commit(tx.id)
        largest = max(largest, journal_path.stat().st_size)
    return largest


def test_the_journal_stays_bounded_over_many_apply_commit_cycles_and_still_recovers_an_open_transaction(
    fake: FakeKernel, backend: Backend, journal_path: Path
) -> None:
    manager = TransactionManager(backend, journal_path, compact_after_bytes=LIMIT)
    held = manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=3600)  # open throughout
    largest = cycles(manager, journal_path, 300)
    assert largest < 2 * LIMIT  # uncompacted, 300 cycles are about 180 KB (606 bytes each)
    assert manager.compact()
    manager.close()
    records = scan(journal_path).records
    assert [r["t"] for r in records] == ["state", "begin", "write", "armed"]  # the commits folded into one record
    assert {r.get("tx") for r in records[1:]} == {held.id}
    assert records[0]["knobs"]["vm.dirty_background_ratio"]["value"] == 6
    fresh = TransactionManager(backend, journal_path)
    report = fresh.recover()
    fresh.close()
    assert report.transactions == (held.id,)
    assert report.clean
    assert (fake.read(SWAPPINESS), fake.read(BACKGROUND)) == ("60\n", "6\n")


def test_a_compaction_keeps_a_knob_taken_over_by_a_committed_transaction_out_of_the_holders_restore(
    fake: FakeKernel, backend: Backend, journal_path: Path
) -> None:
    manager = TransactionManager(backend, journal_path, compact_after_bytes=LIMIT)
    old = manager.apply(manager.stage({"vm.swappiness": 30, "vm.dirty_ratio": 25}, speculative=True).id, 3600)
    new = manager.apply(manager.stage({"vm.swappiness": 30}).id, confirm_within_s=60, take_over=speculative)
    manager.commit(new.id)  # the committed value equals what the open holder wrote
    cycles(manager, journal_path, 30)
    manager.close()
    kept = {r.get("tx") for r in scan(journal_path).records}
    assert old.id in kept and new.id not in kept  # compacted after the commit
    fresh = TransactionManager(backend, journal_path)
    fresh.recover()
    fresh.close()
    assert (fake.read(SWAPPINESS), fake.read(DIRTY_RATIO)) == ("30\n", "20\n")


def test_a_compaction_keeps_an_open_transaction_whose_rollback_could_not_restore_a_knob(
    fake: FakeKernel, backend: Backend, journal_path: Path
) -> None:
    manager = TransactionManager(backend, journal_path, compact_after_bytes=LIMIT)
    tx = manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60)
    fake.rule(SWAPPINESS, reject=["60"])
    manager.revert(tx.id)  # in memory reverted; in the journal still open, for the next start
    cycles(manager, journal_path, 30)
    manager.close()
    assert tx.id in {r.get("tx") for r in scan(journal_path).records}
    fake.rule(SWAPPINESS, reject=[])
    fresh = TransactionManager(backend, journal_path)
    fresh.recover()
    fresh.close()
    assert fake.read(SWAPPINESS) == "60\n"


def test_a_compaction_that_cannot_write_its_new_file_leaves_the_journal_in_use(
    fake: FakeKernel, backend: Backend, journal_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = TransactionManager(backend, journal_path, compact_after_bytes=LIMIT)
    held = manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=3600)
    real_replace = os.replace

    def replace(src: str | Path, dst: str | Path) -> None:
        if Path(dst) == journal_path:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(src, dst)

    monkeypatch.setattr(journal_mod.os, "replace", replace)
    cycles(manager, journal_path, 20)
    assert manager.compaction_problem is not None
    assert manager.journal_problem is None  # still writing to the old journal
    assert not list(journal_path.parent.glob("*.tmp"))  # the temporary file is removed
    monkeypatch.setattr(journal_mod.os, "replace", real_replace)
    cycles(manager, journal_path, 10)
    manager.close()
    fresh = TransactionManager(backend, journal_path)
    assert fresh.recover().transactions == (held.id,)
    fresh.close()
    assert fake.read(SWAPPINESS) == "60\n"


def test_a_journal_with_corrupt_records_is_never_compacted(backend: Backend, journal_path: Path) -> None:
    manager = TransactionManager(backend, journal_path, compact_after_bytes=LIMIT)
    manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=3600)
    with open(journal_path, "ab") as f:
        f.write(b"garbage\n")
    before = journal_path.read_bytes()
    assert manager.compact() is False
    assert journal_path.read_bytes() == before
    manager.close()


def test_a_compaction_refuses_to_rename_over_a_journal_replaced_under_its_path(
    backend: Backend, journal_path: Path
) -> None:
    manager = TransactionManager(backend, journal_path, compact_after_bytes=LIMIT)
    manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=3600)
    other = journal_path.with_name("other")
    other.write_bytes(journal_path.read_bytes())
    other.replace(journal_path)
    inode = journal_path.stat().st_ino
    with pytest.raises(JournalError):
        manager.compact()
    assert journal_path.stat().st_ino == inode
    manager.close()
