"""Transactions: one test per safety invariant this layer owns, plus conflicts, external
changes, supersede and the journal's failure modes."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from lumos_mcp.errors import (
    ApplyFailedError,
    ConflictError,
    ExternalChangeError,
    InvalidValueError,
    JournalError,
    TransactionStateError,
    UnknownTransactionError,
)
from lumos_mcp.kernelfs.backend import Backend
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.txn import TransactionManager, TxState
from lumos_mcp.txn import journal as journal_mod
from lumos_mcp.txn.journal import Journal, scan
from tests.txn_helpers import FakeClock

SWAPPINESS = "proc/sys/vm/swappiness"
DIRTY_RATIO = "proc/sys/vm/dirty_ratio"
BUSY_POLL = "proc/sys/net/core/busy_poll"
RR_SLICE = "proc/sys/kernel/sched_rr_timeslice_ms"
BATCH = "sys/fs/cgroup/cpu/batch"
FOUR = {"vm.swappiness": 10, "vm.dirty_ratio": 30, "net.core.busy_poll": 50, "kernel.sched_rr_timeslice_ms": 50}
FOUR_FILES = [SWAPPINESS, DIRTY_RATIO, BUSY_POLL, RR_SLICE]


class Crash(BaseException):
    """Raised by a probe to stop a manager mid-operation, as a kill would (nothing catches it)."""


def texts(fake: FakeKernel, files: list[str]) -> list[str]:
    return [fake.read(f) for f in files]


def crash_at(label: str) -> object:
    def probe(seen: str) -> None:
        if seen == label:
            raise Crash(seen)

    return probe


def fresh_recover(backend: Backend, journal_path: Path) -> TransactionManager:
    m = TransactionManager(backend, journal_path)
    m.recover()
    return m


# ---------------------------------------------------------------------------- invariant 2
def test_invariant_2_original_is_journaled_before_any_knob_is_written(
    fake: FakeKernel, backend: Backend, journal_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    originals = texts(fake, FOUR_FILES)
    seen: dict[str, object] = {}
    events: list[str] = []

    def probe(label: str) -> None:
        if label == "apply:after-intent:0":
            seen["records"] = scan(journal_path).records
            seen["files"] = texts(fake, FOUR_FILES)

    real_fsync = journal_mod.os.fsync
    real_append = Journal.append
    real_write = backend.root.write_text

    def fsync(fd: int) -> None:
        real_fsync(fd)
        events.append("fsync")

    def append(self: Journal, record: dict[str, object]) -> None:
        events.append(f"append:{record['t']}")
        real_append(self, record)

    def write_text(rel: str, value: str, *, knob: str | None = None) -> None:
        events.append(f"write:{rel}")
        real_write(rel, value, knob=knob)

    monkeypatch.setattr(journal_mod.os, "fsync", fsync)
    monkeypatch.setattr(Journal, "append", append)
    monkeypatch.setattr(backend.root, "write_text", write_text)
    manager = TransactionManager(backend, journal_path, probe=probe)
    manager.apply(manager.stage(FOUR).id, confirm_within_s=60)

    records = seen["records"]
    assert isinstance(records, list)
    begin = records[0]
    assert begin["t"] == "begin"
    assert [k["raw"] for k in begin["knobs"]] == [[t] for t in originals]
    assert [k["files"] for k in begin["knobs"]] == [[f] for f in FOUR_FILES]
    assert [r["t"] for r in records] == ["begin", "write"]
    assert seen["files"] == originals  # the intent is durable, the knob not yet touched
    # durability: "begin" was appended and fsync'd before the first kernel write
    first_write = next(i for i, e in enumerate(events) if e.startswith("write:"))
    assert events[:first_write][-4:] == ["append:begin", "fsync", "append:write", "fsync"]


def test_apply_refuses_to_write_anything_when_the_journal_cannot_be_written(
    fake: FakeKernel, backend: Backend, tmp_path: Path
) -> None:
    (tmp_path / "not-a-dir").write_text("")
    manager = TransactionManager(backend, tmp_path / "not-a-dir" / "journal")
    tx = manager.stage({"vm.swappiness": 10})
    with pytest.raises(JournalError):
        manager.apply(tx.id, confirm_within_s=60)
    assert fake.read(SWAPPINESS) == "60\n"


# ---------------------------------------------------------------------------- invariant 3
def test_invariant_3_partial_failure_rolls_back_in_reverse_order(
    fake: FakeKernel, backend: Backend, manager: TransactionManager, journal_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.rule(BUSY_POLL, reject=["50"])  # the third knob of four answers EINVAL
    originals = texts(fake, FOUR_FILES)
    done: list[str] = []
    real_write = backend.root.write_text

    def write_text(rel: str, value: str, *, knob: str | None = None) -> None:
        real_write(rel, value, knob=knob)
        done.append(rel)

    monkeypatch.setattr(backend.root, "write_text", write_text)
    tx = manager.stage(FOUR)
    with pytest.raises(ApplyFailedError) as info:
        manager.apply(tx.id, confirm_within_s=60)

    assert info.value.fields["knob"] == "net.core.busy_poll"
    assert info.value.fields["cause"]["code"] == "invalid_value"
    assert done == [SWAPPINESS, DIRTY_RATIO, DIRTY_RATIO, SWAPPINESS]  # written, then undone newest first
    assert texts(fake, FOUR_FILES) == originals
    assert manager.get(tx.id).state is TxState.FAILED
    assert [r["t"] for r in scan(journal_path).records][-2:] == ["revert", "reverted"]
    assert manager.holder_of("vm.swappiness") is None
    again = manager.stage({"vm.swappiness": 10})
    assert manager.apply(again.id, confirm_within_s=60).state is TxState.APPLIED


# ---------------------------------------------------------------------------- invariant 5
def test_invariant_5_armed_transaction_is_reverted_at_its_deadline(
    fake: FakeKernel, manager: TransactionManager, clock: FakeClock
) -> None:
    originals = texts(fake, FOUR_FILES)
    tx = manager.apply(manager.stage(FOUR).id, confirm_within_s=30)
    assert manager.next_deadline() == clock.now + 30
    assert texts(fake, FOUR_FILES) == ["10\n", "30\n", "50\n", "50\n"]
    clock.advance(29.9)
    assert manager.expire_due() == []
    clock.advance(0.1)
    [(expired, results)] = manager.expire_due()
    assert expired.id == tx.id
    assert (expired.state, expired.outcome) == (TxState.REVERTED, "deadline")
    assert [(r.knob, r.action) for r in results] == [(k, "restored") for k in reversed(FOUR)]
    assert texts(fake, FOUR_FILES) == originals
    assert manager.next_deadline() is None
    assert manager.expire_due() == []


def test_a_deadline_at_clock_zero_still_expires(fake: FakeKernel, backend: Backend, journal_path: Path) -> None:
    clock = FakeClock(0.0)
    manager = TransactionManager(backend, journal_path, clock=clock)
    manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=0)
    assert manager.next_deadline() == 0.0
    assert len(manager.expire_due()) == 1
    assert fake.read(SWAPPINESS) == "60\n"


def test_invariant_5_real_timer_reverts_an_unconfirmed_apply(
    fake: FakeKernel, backend: Backend, journal_path: Path
) -> None:
    manager = TransactionManager(backend, journal_path)  # real clock
    reverted = threading.Event()
    stop = threading.Event()

    def auto_revert() -> None:  # what the server's background task does
        while not stop.is_set():
            deadline = manager.next_deadline()
            if deadline is not None and time.time() >= deadline and manager.expire_due():
                reverted.set()
            stop.wait(0.01)

    timer = threading.Thread(target=auto_revert, daemon=True)
    timer.start()
    try:
        tx = manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=0.3)
        assert fake.read(SWAPPINESS) == "10\n"
        assert reverted.wait(timeout=10), "auto-revert did not run within 10 s"
    finally:
        stop.set()
        timer.join(timeout=5)
    assert not timer.is_alive()
    assert (manager.get(tx.id).state, manager.get(tx.id).outcome) == (TxState.REVERTED, "deadline")
    assert fake.read(SWAPPINESS) == "60\n"


def test_auto_revert_leaves_an_externally_changed_knob_as_found_and_reports_it(
    fake: FakeKernel, manager: TransactionManager, clock: FakeClock
) -> None:
    manager.apply(manager.stage({"vm.swappiness": 10, "vm.dirty_ratio": 30}).id, confirm_within_s=5)
    fake.root.write_text(DIRTY_RATIO, "44")  # an operator's own change
    clock.advance(5)
    [(tx, results)] = manager.expire_due()
    assert {r.knob: r.action for r in results} == {"vm.swappiness": "restored", "vm.dirty_ratio": "external_change"}
    assert (fake.read(SWAPPINESS), fake.read(DIRTY_RATIO)) == ("60\n", "44\n")
    assert tx.state is TxState.REVERTED


def test_auto_revert_still_restores_the_rest_when_a_cgroup_vanished(
    fake: FakeKernel, manager: TransactionManager, clock: FakeClock
) -> None:
    manager.apply(manager.stage({"vm.swappiness": 10, "cgroup.batch.cpu_idle": True}).id, confirm_within_s=5)
    shutil.rmtree(fake.base / BATCH)  # the batch job ended and its cgroup went away
    clock.advance(5)
    [(tx, results)] = manager.expire_due()
    assert {r.knob: r.action for r in results} == {"cgroup.batch.cpu_idle": "error", "vm.swappiness": "restored"}
    assert fake.read(SWAPPINESS) == "60\n"
    assert tx.state is TxState.REVERTED
    assert manager.expire_due() == []


# ---------------------------------------------------------------------------- invariant 10
def test_invariant_10_clamped_readback_is_reported_not_hidden(
    fake: FakeKernel, manager: TransactionManager, journal_path: Path
) -> None:
    fake.sysctl("vm.swappiness", "60", clamp=(0, 100))  # the kernel clamps instead of refusing
    tx = manager.stage({"vm.dirty_ratio": 30, "vm.swappiness": 150})
    with pytest.raises(ApplyFailedError) as info:
        manager.apply(tx.id, confirm_within_s=60)
    cause = info.value.fields["cause"]
    assert (cause["code"], cause["expected"], cause["actual"]) == ("readback_mismatch", 150, 100)
    assert info.value.fields["knob"] == "vm.swappiness"
    # rolled back: the clamped value is ours, not someone else's change
    assert (fake.read(SWAPPINESS), fake.read(DIRTY_RATIO)) == ("60\n", "20\n")
    assert scan(journal_path).records[-1]["t"] == "reverted"


def test_values_compare_after_normalisation(fake: FakeKernel, manager: TransactionManager) -> None:
    tx = manager.stage({"thp.enabled": " never ", "cgroup.batch.cpu_max": "-1 50000", "kernel.numa_balancing": "+1"})
    assert [c.after for c in tx.changes] == ["never", "max 50000", 1]
    manager.apply(tx.id, confirm_within_s=60)
    assert fake.read("sys/kernel/mm/transparent_hugepage/enabled") == "always madvise [never]\n"
    manager.commit(tx.id)  # the kernel's bracketed form reads back as the same value


# ---------------------------------------------------------------------------- conflicts
def test_a_second_transaction_on_a_held_knob_gets_a_conflict_naming_the_holder(
    fake: FakeKernel, manager: TransactionManager
) -> None:
    first = manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60)
    second = manager.stage({"vm.dirty_ratio": 30, "vm.swappiness": 20})
    with pytest.raises(ConflictError) as info:
        manager.apply(second.id, confirm_within_s=60)
    assert info.value.fields == {"knob": "vm.swappiness", "holder": first.id}
    assert manager.holder_of("vm.swappiness") == first.id
    assert (fake.read(SWAPPINESS), fake.read(DIRTY_RATIO)) == ("10\n", "20\n")
    assert manager.get(second.id).state is TxState.STAGED


def test_two_logical_knobs_sharing_a_file_conflict(fake: FakeKernel, manager: TransactionManager) -> None:
    # on cgroup v1 cpu_weight is written as cpu.shares: the same file as cpu_shares
    first = manager.apply(manager.stage({"cgroup.batch.cpu_weight": 50}).id, confirm_within_s=60)
    second = manager.stage({"cgroup.batch.cpu_shares": 2048})
    with pytest.raises(ConflictError) as info:
        manager.apply(second.id, confirm_within_s=60)
    assert info.value.fields == {"knob": "cgroup.batch.cpu_shares", "holder": first.id}
    assert fake.read(f"{BATCH}/cpu.shares") == "512\n"
    with pytest.raises(InvalidValueError):  # nor may one change write a file twice
        manager.stage({"cgroup.batch.cpu_weight": 50, "cgroup.batch.cpu_shares": 2048})


def test_a_released_knob_can_be_taken_by_the_next_transaction(manager: TransactionManager) -> None:
    first = manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60)
    manager.revert(first.id)
    second = manager.apply(manager.stage({"vm.swappiness": 20}).id, confirm_within_s=60)
    assert manager.holder_of("vm.swappiness") == second.id


# ---------------------------------------------------------------------------- external changes
def test_external_change_is_detected_at_commit(fake: FakeKernel, manager: TransactionManager) -> None:
    tx = manager.apply(manager.stage({"vm.swappiness": 10, "vm.dirty_ratio": 30}).id, confirm_within_s=60)
    fake.root.write_text(DIRTY_RATIO, "44")
    with pytest.raises(ExternalChangeError) as info:
        manager.commit(tx.id)
    assert info.value.fields == {"knob": "vm.dirty_ratio", "expected": 30, "actual": 44}
    assert manager.get(tx.id).state is TxState.APPLIED  # nothing committed, still armed


def test_external_change_stops_a_revert_unless_forced(fake: FakeKernel, manager: TransactionManager) -> None:
    tx = manager.apply(manager.stage({"vm.swappiness": 10, "vm.dirty_ratio": 30}).id, confirm_within_s=60)
    fake.root.write_text(DIRTY_RATIO, "44")
    with pytest.raises(ExternalChangeError) as info:
        manager.revert(tx.id)
    assert info.value.fields["knob"] == "vm.dirty_ratio"
    assert (fake.read(SWAPPINESS), fake.read(DIRTY_RATIO)) == ("10\n", "44\n")  # nothing written
    _, results = manager.revert(tx.id, force=True)
    assert {r.knob: r.action for r in results} == {"vm.swappiness": "restored", "vm.dirty_ratio": "restored"}
    assert (fake.read(SWAPPINESS), fake.read(DIRTY_RATIO)) == ("60\n", "20\n")
    assert manager.get(tx.id).changes[1].after == 30  # the record of what we wrote stays true


def test_forced_revert_restores_shares_that_are_not_an_exact_weight(
    fake: FakeKernel, manager: TransactionManager
) -> None:
    tx = manager.apply(manager.stage({"cgroup.batch.cpu_weight": 50}).id, confirm_within_s=60)
    fake.root.write_text(f"{BATCH}/cpu.shares", "1000")  # weight 98 would be 1004 shares
    _, results = manager.revert(tx.id, force=True)
    assert [r.action for r in results] == ["restored"]
    assert fake.read(f"{BATCH}/cpu.shares") == "1024\n"


def test_stale_stage_is_refused_at_apply(fake: FakeKernel, manager: TransactionManager, journal_path: Path) -> None:
    tx = manager.stage({"vm.swappiness": 10})
    fake.root.write_text(SWAPPINESS, "70")
    with pytest.raises(ExternalChangeError) as info:
        manager.apply(tx.id, confirm_within_s=60)
    assert info.value.fields == {"knob": "vm.swappiness", "expected": 60, "actual": 70}
    assert fake.read(SWAPPINESS) == "70\n"
    assert scan(journal_path).records == []


# ---------------------------------------------------------------------------- ordering trap
def test_cpu_idle_and_cpu_shares_apply_in_order_and_revert_in_reverse(
    fake: FakeKernel, manager: TransactionManager
) -> None:
    fake.file(f"{BATCH}/cpu.idle", "1")
    fake.file(f"{BATCH}/cpu.shares", "3")  # what the kernel shows while idle is set
    tx = manager.stage({"cgroup.batch.cpu_idle": False, "cgroup.batch.cpu_shares": 128})
    manager.apply(tx.id, confirm_within_s=60)
    assert (fake.read(f"{BATCH}/cpu.idle"), fake.read(f"{BATCH}/cpu.shares")) == ("0\n", "128\n")
    _, results = manager.revert(tx.id)  # shares first (allowed while idle=0), then idle
    assert [r.action for r in results] == ["restored", "restored"]
    assert (fake.read(f"{BATCH}/cpu.idle"), fake.read(f"{BATCH}/cpu.shares")) == ("1\n", "3\n")

    wrong_order = manager.stage({"cgroup.batch.cpu_shares": 128, "cgroup.batch.cpu_idle": False})
    with pytest.raises(ApplyFailedError) as info:
        manager.apply(wrong_order.id, confirm_within_s=60)
    assert info.value.fields["knob"] == "cgroup.batch.cpu_shares"
    assert (fake.read(f"{BATCH}/cpu.idle"), fake.read(f"{BATCH}/cpu.shares")) == ("1\n", "3\n")


# ---------------------------------------------------------------------------- supersede
def test_a_superseded_knob_is_neither_checked_nor_restored_by_its_old_transaction(
    fake: FakeKernel, manager: TransactionManager
) -> None:
    old = manager.apply(manager.stage({"vm.swappiness": 10, "vm.dirty_ratio": 30}).id, confirm_within_s=60)
    manager.supersede(old.id, {"vm.swappiness"})
    assert manager.holder_of("vm.swappiness") is None
    assert manager.holder_of("vm.dirty_ratio") == old.id
    new = manager.apply(manager.stage({"vm.swappiness": 20}).id, confirm_within_s=60)
    manager.commit(new.id)
    _, results = manager.revert(old.id)
    assert [(r.knob, r.action) for r in results] == [("vm.dirty_ratio", "restored")]
    assert (fake.read(SWAPPINESS), fake.read(DIRTY_RATIO)) == ("20\n", "20\n")


def test_a_transaction_keeps_committing_after_one_knob_was_superseded(
    fake: FakeKernel, manager: TransactionManager
) -> None:
    old = manager.apply(manager.stage({"vm.swappiness": 10, "vm.dirty_ratio": 30}).id, confirm_within_s=60)
    manager.supersede(old.id, {"vm.swappiness"})
    manager.apply(manager.stage({"vm.swappiness": 20}).id, confirm_within_s=60)
    assert manager.commit(old.id).state is TxState.COMMITTED
    assert (fake.read(SWAPPINESS), fake.read(DIRTY_RATIO)) == ("20\n", "30\n")


def test_superseding_every_knob_closes_the_transaction(manager: TransactionManager) -> None:
    old = manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60)
    manager.supersede(old.id, {"vm.swappiness"})
    assert (old.state, old.outcome) == (TxState.COMMITTED, "superseded")
    assert manager.next_deadline() is None


def test_recovery_does_not_restore_a_knob_superseded_by_a_committed_transaction(
    fake: FakeKernel, backend: Backend, manager: TransactionManager, journal_path: Path
) -> None:
    old = manager.apply(manager.stage({"vm.swappiness": 10, "vm.dirty_ratio": 30}).id, confirm_within_s=60)
    manager.supersede(old.id, {"vm.swappiness"})
    manager.commit(manager.apply(manager.stage({"vm.swappiness": 20}).id, confirm_within_s=60).id)
    manager.close()  # the server dies with `old` still armed
    fresh_recover(backend, journal_path)
    assert (fake.read(SWAPPINESS), fake.read(DIRTY_RATIO)) == ("20\n", "20\n")


# ---------------------------------------------------------------------------- recovery and journal
def test_recovery_restores_an_uncommitted_transaction_and_keeps_a_committed_one(
    fake: FakeKernel, backend: Backend, manager: TransactionManager, journal_path: Path
) -> None:
    manager.commit(manager.apply(manager.stage({"vm.dirty_ratio": 30}).id, confirm_within_s=60).id)
    armed = manager.apply(manager.stage({"vm.swappiness": 10, "thp.enabled": "never"}).id, confirm_within_s=60)
    manager.close()
    m = TransactionManager(backend, journal_path)
    report = m.recover()
    assert report.transactions == (armed.id,)
    assert report.committed_kept == 1
    assert report.clean
    assert (fake.read(SWAPPINESS), fake.read(DIRTY_RATIO)) == ("60\n", "30\n")
    assert fake.read("sys/kernel/mm/transparent_hugepage/enabled") == "always [madvise] never\n"
    records = scan(journal_path).records  # compacted: only the committed state is left
    assert [r["t"] for r in records] == ["state"]
    assert {k: e["value"] for k, e in records[0]["knobs"].items()} == {"vm.dirty_ratio": 30}
    assert m.recover().transactions == ()


def test_a_torn_final_journal_record_is_ignored(
    fake: FakeKernel, backend: Backend, manager: TransactionManager, journal_path: Path
) -> None:
    tx = manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60)
    manager.close()
    with open(journal_path, "ab") as f:  # the commit's write was cut short: never acknowledged
        f.write(b'{"r":{"t":"commit","tx":"' + tx.id.encode())
    m = TransactionManager(backend, journal_path)
    report = m.recover()
    assert report.transactions == (tx.id,)
    assert len(report.journal_problems) == 1
    assert m.journal_problem is None
    assert fake.read(SWAPPINESS) == "60\n"
    m.apply(m.stage({"vm.swappiness": 20}).id, confirm_within_s=60)  # still accepts writes


def test_a_torn_tail_does_not_turn_into_corruption_when_recovery_is_interrupted(
    fake: FakeKernel, backend: Backend, manager: TransactionManager, journal_path: Path
) -> None:
    manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60)
    manager.close()
    with open(journal_path, "ab") as f:
        f.write(b'{"r":{"t":"comm')
    interrupted = TransactionManager(backend, journal_path, probe=crash_at("recover:after-record"))
    with pytest.raises(Crash):
        interrupted.recover()
    interrupted.close()
    m = TransactionManager(backend, journal_path)
    report = m.recover()
    assert scan(journal_path).corrupt_lines == []
    assert m.journal_problem is None, report.journal_problems
    assert fake.read(SWAPPINESS) == "60\n"


def test_a_corrupt_middle_record_is_reported_and_further_applies_are_refused(
    fake: FakeKernel, backend: Backend, manager: TransactionManager, journal_path: Path
) -> None:
    manager.commit(manager.apply(manager.stage({"vm.dirty_ratio": 30}).id, confirm_within_s=60).id)
    armed = manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60)
    manager.close()
    lines = journal_path.read_bytes().split(b"\n")
    assert b'"armed"' in lines[2]
    lines[2] = lines[2].replace(b'"armed"', b'"ARMED"')  # a flipped byte: the CRC no longer matches
    journal_path.write_bytes(b"\n".join(lines))

    m = TransactionManager(backend, journal_path)
    report = m.recover()
    assert report.transactions == (armed.id,)  # recovered as far as the intact records go
    assert not report.clean
    assert m.journal_problem is not None
    assert (fake.read(SWAPPINESS), fake.read(DIRTY_RATIO)) == ("60\n", "30\n")
    tx = m.stage({"vm.swappiness": 20})  # staging writes nothing and is still allowed
    with pytest.raises(JournalError) as info:
        m.apply(tx.id, confirm_within_s=60)
    assert info.value.code == "journal_unavailable"
    assert fake.read(SWAPPINESS) == "60\n"


# ---------------------------------------------------------------------------- states
def test_transactions_move_only_through_their_states(manager: TransactionManager) -> None:
    tx = manager.stage({"vm.swappiness": 10})
    with pytest.raises(TransactionStateError):
        manager.commit(tx.id)
    with pytest.raises(TransactionStateError):
        manager.revert(tx.id)
    manager.apply(tx.id, confirm_within_s=60)
    with pytest.raises(TransactionStateError):
        manager.apply(tx.id, confirm_within_s=60)
    manager.commit(tx.id)
    with pytest.raises(TransactionStateError) as info:
        manager.revert(tx.id)
    assert info.value.fields == {"txid": tx.id, "state": "committed", "wanted": "applied"}
    with pytest.raises(UnknownTransactionError):
        manager.get("tx-nope")
