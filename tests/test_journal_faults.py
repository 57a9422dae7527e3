"""The journal under storage faults: a short or failed append is cut back to the last good
record, a blank line or several corrupt regions do not hide later records, and a journal
file replaced under its path is refused and reported."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from lumos_mcp.errors import JournalError
from lumos_mcp.kernelfs.backend import Backend
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.service import Service
from lumos_mcp.txn import TransactionManager
from lumos_mcp.txn import journal as journal_mod
from lumos_mcp.txn.journal import Journal, scan

SWAPPINESS = "proc/sys/vm/swappiness"
DIRTY_RATIO = "proc/sys/vm/dirty_ratio"


def failing_write(monkeypatch: pytest.MonkeyPatch, keep: int, then: Callable[[int], int]) -> None:
    """Make the journal's next ``os.write`` put only the first ``keep`` bytes on disk, then
    hand ``then(bytes_written)`` back as its result (or raise from it)."""
    real = os.write
    calls = [0]

    def write(fd: int, data: bytes) -> int:
        calls[0] += 1
        if calls[0] > 1:
            return real(fd, data)
        done = real(fd, data[:keep])
        return then(done)

    monkeypatch.setattr(journal_mod.os, "write", write)


def enospc(done: int) -> int:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_short_journal_write_is_cut_back_and_the_next_record_is_readable(
    journal_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(journal_path)
    journal.append({"t": "begin", "tx": "tx-1"})
    good = journal_path.read_bytes()
    failing_write(monkeypatch, keep=7, then=lambda done: done)  # the disk filled after 7 bytes
    with pytest.raises(JournalError) as info:
        journal.append({"t": "commit", "tx": "tx-1"})
    assert info.value.fields["path"] == str(journal_path)
    assert journal_path.read_bytes() == good  # the 7 bytes are gone
    journal.append({"t": "reverted", "tx": "tx-1"})
    journal.close()
    result = scan(journal_path)
    assert [r["t"] for r in result.records] == ["begin", "reverted"]
    assert (result.corrupt_lines, result.torn_tail) == ([], False)


def test_a_journal_write_failing_with_enospc_after_some_bytes_leaves_the_file_at_the_last_good_record(
    journal_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(journal_path)
    journal.append({"t": "begin", "tx": "tx-1"})
    good = journal_path.read_bytes()
    failing_write(monkeypatch, keep=12, then=enospc)
    with pytest.raises(JournalError):
        journal.append({"t": "commit", "tx": "tx-1"})
    assert journal_path.read_bytes() == good
    journal.append({"t": "commit", "tx": "tx-1"})
    journal.close()
    assert [r["t"] for r in scan(journal_path).records] == ["begin", "commit"]


def test_a_record_whose_fsync_failed_is_cut_so_recovery_never_trusts_it(
    journal_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(journal_path)
    journal.append({"t": "begin", "tx": "tx-1"})
    good = journal_path.read_bytes()

    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(journal_mod.os, "fsync", fsync)
    with pytest.raises(JournalError):
        journal.append({"t": "commit", "tx": "tx-1"})
    assert journal_path.read_bytes() == good


def test_a_fragment_that_cannot_be_cut_stops_every_later_append_and_is_reported(
    backend: Backend, journal_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = TransactionManager(backend, journal_path)
    manager.commit(manager.apply(manager.stage({"vm.dirty_ratio": 30}).id, confirm_within_s=60).id)
    failing_write(monkeypatch, keep=5, then=lambda done: done)

    def ftruncate(fd: int, size: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(journal_mod.os, "ftruncate", ftruncate)
    tx = manager.stage({"vm.swappiness": 10})
    with pytest.raises(JournalError):
        manager.apply(tx.id, confirm_within_s=60)
    assert manager.journal_problem is not None  # status shows it
    monkeypatch.undo()
    with pytest.raises(JournalError) as info:  # nothing glues onto the fragment
        manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60)
    assert info.value.code == "journal_unavailable"
    assert backend.root.read_text(SWAPPINESS) == "60\n"
    manager.close()


def test_recovery_reads_past_a_blank_line_in_the_journal(
    fake: FakeKernel, backend: Backend, journal_path: Path
) -> None:
    manager = TransactionManager(backend, journal_path)
    manager.commit(manager.apply(manager.stage({"vm.dirty_ratio": 30}).id, confirm_within_s=60).id)
    manager.close()
    with open(journal_path, "ab") as f:
        f.write(b"\n  \n")
    manager = TransactionManager(backend, journal_path)
    armed = manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60)
    manager.close()
    fresh = TransactionManager(backend, journal_path)
    report = fresh.recover()
    fresh.close()
    assert report.transactions == (armed.id,)
    assert (fake.read(SWAPPINESS), fake.read(DIRTY_RATIO)) == ("60\n", "30\n")


def test_two_corrupt_regions_are_both_reported_and_every_intact_transaction_is_recovered(
    fake: FakeKernel, backend: Backend, journal_path: Path
) -> None:
    manager = TransactionManager(backend, journal_path)
    first = manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60)
    second = manager.apply(manager.stage({"vm.dirty_ratio": 30}).id, confirm_within_s=60)
    manager.close()
    lines = journal_path.read_bytes().split(b"\n")
    kinds = [scan_line_kind(line) for line in lines]
    armed = [i for i, k in enumerate(kinds) if k == "armed"]
    assert len(armed) == 2
    for i in armed:  # a flipped byte in each transaction's "armed" record: two corrupt regions
        lines[i] = lines[i].replace(b'"armed"', b'"ARMED"')
    lines.insert(armed[1], b"not json at all")
    journal_path.write_bytes(b"\n".join(lines))

    fresh = TransactionManager(backend, journal_path)
    report = fresh.recover()
    fresh.close()
    assert report.transactions == (first.id, second.id)
    assert scan(journal_path).corrupt_lines == [armed[0] + 1, armed[1] + 1, armed[1] + 2]
    assert fresh.journal_problem is not None
    assert (fake.read(SWAPPINESS), fake.read(DIRTY_RATIO)) == ("60\n", "20\n")


def scan_line_kind(line: bytes) -> str:
    return line.split(b'"t":"', 1)[1].split(b'"', 1)[0].decode() if b'"t":"' in line else ""


def test_a_journal_file_replaced_under_its_path_is_refused_and_named_in_status(
    fake: FakeKernel, make_service: Callable[..., Service], tmp_path: Path
) -> None:
    service = make_service()
    journal_path = service.txns.journal_path
    service.txns.commit(service.txns.apply(service.txns.stage({"vm.dirty_ratio": 30}).id, confirm_within_s=60).id)
    assert service.status()["journal_problem"] is None
    impostor = journal_path.with_name("impostor")
    impostor.write_bytes(journal_path.read_bytes())
    os.replace(impostor, journal_path)  # same path, another inode
    tx = service.txns.stage({"vm.swappiness": 10})
    with pytest.raises(JournalError) as info:
        service.txns.apply(tx.id, confirm_within_s=60)
    assert info.value.code == "journal_unavailable"
    assert info.value.fields["path"] == str(journal_path)
    assert fake.read(SWAPPINESS) == "60\n"
    problem = service.status()["journal_problem"]
    assert problem is not None and str(journal_path) in problem


def test_a_commit_cut_short_by_a_full_disk_can_be_retried_and_recovery_then_keeps_it(
    fake: FakeKernel, backend: Backend, journal_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = TransactionManager(backend, journal_path)
    tx = manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60)
    failing_write(monkeypatch, keep=9, then=lambda done: done)
    with pytest.raises(JournalError):
        manager.commit(tx.id)
    monkeypatch.undo()
    manager.commit(tx.id)  # still armed after the failed commit: commit again
    manager.close()
    fresh = TransactionManager(backend, journal_path)
    report = fresh.recover()
    fresh.close()
    assert report.clean, report.journal_problems
    assert (report.transactions, report.committed_kept) == ((), 1)
    assert fake.read(SWAPPINESS) == "10\n"


def test_a_journal_file_removed_while_running_refuses_further_writes_and_is_reported(
    fake: FakeKernel, backend: Backend, journal_path: Path
) -> None:
    manager = TransactionManager(backend, journal_path)
    manager.commit(manager.apply(manager.stage({"vm.dirty_ratio": 30}).id, confirm_within_s=60).id)
    journal_path.unlink()
    with pytest.raises(JournalError) as info:
        manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60)
    assert info.value.fields["path"] == str(journal_path)
    assert manager.journal_problem is not None
    assert fake.read(SWAPPINESS) == "60\n"
    manager.close()


# ---------------------------------------------------------------- gaps the mutation run on main found
def test_a_torn_tail_after_several_records_keeps_every_intact_record(journal_path: Path) -> None:
    journal = Journal(journal_path)
    for n in range(3):
        journal.append({"t": "note", "n": n})
    journal.close()
    with journal_path.open("ab") as f:
        f.write(b'{"torn')
    Journal(journal_path).close()  # opening drops the torn tail, and only it
    result = scan(journal_path)
    assert [r["n"] for r in result.records] == [0, 1, 2]
    assert not result.torn_tail and not result.corrupt_lines


def test_a_journal_moved_aside_and_replaced_by_another_file_is_refused(journal_path: Path) -> None:
    journal = Journal(journal_path)
    journal.append({"t": "note"})
    os.rename(journal_path, journal_path.with_name("moved-aside"))  # the old file keeps its link
    journal_path.write_bytes(b"")
    with pytest.raises(JournalError):
        journal.append({"t": "note"})
    assert journal.broken is not None


def test_a_link_to_the_journal_itself_planted_at_its_path_is_refused(journal_path: Path) -> None:
    journal = Journal(journal_path)
    journal.append({"t": "note"})
    moved = journal_path.with_name("moved-aside")
    os.rename(journal_path, moved)
    journal_path.symlink_to(moved)  # following it would find the very file we hold open
    with pytest.raises(JournalError):
        journal.append({"t": "note"})
    assert journal.broken is not None


def test_the_journal_counts_the_bytes_it_holds_for_compaction(journal_path: Path) -> None:
    journal = Journal(journal_path)
    for n in range(3):
        journal.append({"t": "note", "n": n})
    assert journal.size == journal_path.stat().st_size > 0
    journal.close()
    reopened = Journal(journal_path)
    assert reopened.size == journal_path.stat().st_size
    reopened.rewrite([{"t": "note", "n": 9}])
    assert reopened.size == journal_path.stat().st_size
    reopened.close()


def test_a_compaction_passes_each_of_its_kill_points_in_order(journal_path: Path) -> None:
    journal = Journal(journal_path)
    journal.append({"t": "note"})
    steps: list[str] = []
    journal.rewrite([{"t": "kept"}], probe=steps.append)
    assert steps == ["after-tmp", "after-rename", "after-reopen"]
    journal.close()


def test_a_compaction_whose_directory_sync_fails_after_the_rename_breaks_the_journal(
    journal_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lumos_mcp import privfs

    journal = Journal(journal_path)
    journal.append({"t": "note"})

    def failing_fsync_dir(directory: str | os.PathLike[str]) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(privfs, "fsync_dir", failing_fsync_dir)
    with pytest.raises(JournalError) as info:
        journal.rewrite([{"t": "kept"}])
    assert info.value.fields["path"] == str(journal_path)
    assert journal.broken is not None  # the open fd no longer names the file at the path
    with pytest.raises(JournalError):
        journal.append({"t": "note"})
