"""The transaction manager's paths that only the service's tests reached (re-arm, the revert records
a full disk refused, the journal replay the lifecycle reads, the listing of transactions), tested on
the manager itself: the mutation run on main (tools/mutation.py, docs/mutation.md) found faults
in them that no transaction test noticed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lumos_mcp.errors import (
    ApplyFailedError,
    ConflictError,
    ExternalChangeError,
    InvalidValueError,
    JournalError,
    TransactionStateError,
)
from lumos_mcp.kernelfs.backend import Backend
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.txn import TransactionManager, TxState
from lumos_mcp.txn.journal import Journal, scan
from lumos_mcp.txn.manager import change_digest
from tests.txn_helpers import FakeClock

SWAPPINESS = "proc/sys/vm/swappiness"
DIRTY_RATIO = "proc/sys/vm/dirty_ratio"


def refuse_appends(monkeypatch: pytest.MonkeyPatch, manager: TransactionManager, journal_path: Path) -> None:
    """The journal refuses every append from now on, as a full disk would."""

    def refuse(record: dict[str, Any]) -> None:
        raise JournalError("no space left on device", path=str(journal_path))

    monkeypatch.setattr(manager.journal, "append", refuse)


# ---------------------------------------------------------------------------- rearm
def test_a_rearm_moves_the_deadline_to_its_window_from_now_and_journals_it(
    fake: FakeKernel, manager: TransactionManager, journal_path: Path, clock: FakeClock
) -> None:
    tx = manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60)  # due at 1060
    clock.now = 1050.0
    assert manager.rearm(tx.id, confirm_within_s=30).deadline == 1080.0
    assert manager.next_deadline() == 1080.0
    armed = [r for r in scan(journal_path).records if r["t"] == "armed"]
    assert [(r["tx"], r["deadline"], r["ts"]) for r in armed] == [(tx.id, 1060.0, 1000.0), (tx.id, 1080.0, 1050.0)]
    clock.now = 1070.0  # past the old deadline, before the new one
    assert manager.expire_due() == []
    assert fake.read(SWAPPINESS) == "10\n"
    clock.now = 1080.0
    assert [t.id for t, _ in manager.expire_due()] == [tx.id]
    assert fake.read(SWAPPINESS) == "60\n"


def test_a_rearm_refuses_a_transaction_that_is_not_applied(manager: TransactionManager, journal_path: Path) -> None:
    staged = manager.stage({"vm.swappiness": 10})
    with pytest.raises(TransactionStateError) as info:
        manager.rearm(staged.id, confirm_within_s=30)
    assert info.value.fields == {"txid": staged.id, "state": "staged", "wanted": "applied"}
    assert staged.deadline is None
    assert not journal_path.exists() or scan(journal_path).records == []


def test_a_rearm_the_journal_refuses_keeps_the_old_deadline(
    manager: TransactionManager, journal_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    tx = manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60)
    clock.now = 1050.0
    refuse_appends(monkeypatch, manager, journal_path)
    with pytest.raises(JournalError):
        manager.rearm(tx.id, confirm_within_s=300)
    assert (tx.deadline, manager.next_deadline()) == (1060.0, 1060.0)


# ---------------------------------------------------------------------------- unrecorded reverts
def test_revert_records_a_full_disk_refused_are_written_later_oldest_first(
    fake: FakeKernel,
    backend: Backend,
    manager: TransactionManager,
    journal_path: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60)
    second = manager.apply(manager.stage({"vm.dirty_ratio": 30}).id, confirm_within_s=60)
    clock.now = 1061.0
    refuse_appends(monkeypatch, manager, journal_path)
    expired = manager.expire_due()
    # the knobs are restored although the journal refused every record
    assert [t.id for t, _ in expired] == [first.id, second.id]
    assert (fake.read(SWAPPINESS), fake.read(DIRTY_RATIO)) == ("60\n", "20\n")
    assert [(r["t"], r["tx"], r["reason"]) for r in manager.unrecorded] == [
        ("reverted", first.id, "deadline"),
        ("reverted", second.id, "deadline"),
    ]
    with pytest.raises(JournalError):  # still refused: both keep waiting
        manager.retry_unrecorded()
    assert [r["tx"] for r in manager.unrecorded] == [first.id, second.id]
    monkeypatch.undo()
    manager.retry_unrecorded()
    assert manager.unrecorded == []
    reverted = [(r["tx"], r["reason"]) for r in scan(journal_path).records if r["t"] == "reverted"]
    assert reverted == [(first.id, "deadline"), (second.id, "deadline")]
    manager.close()
    fresh = TransactionManager(backend, journal_path)
    report = fresh.recover()
    fresh.close()
    assert (report.transactions, report.clean) == ((), True)


def test_retrying_with_nothing_unrecorded_writes_nothing(manager: TransactionManager, journal_path: Path) -> None:
    manager.commit(manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60).id)
    before = journal_path.read_bytes()
    manager.retry_unrecorded()
    assert journal_path.read_bytes() == before


# ---------------------------------------------------------------------------- replay and listing
def test_the_replay_names_each_open_transaction_with_the_knobs_it_wrote_and_counts_the_committed(
    backend: Backend, manager: TransactionManager, journal_path: Path
) -> None:
    manager.commit(manager.apply(manager.stage({"vm.dirty_ratio": 30}).id, confirm_within_s=60).id)
    reverted = manager.apply(manager.stage({"net.core.busy_poll": 50}).id, confirm_within_s=60)
    manager.revert(reverted.id)
    left_open = manager.apply(manager.stage({"vm.swappiness": 10, "kernel.sched_rr_timeslice_ms": 50}).id, 60)
    open_txs, committed = TransactionManager._replay(scan(journal_path).records)
    assert committed == 1
    assert list(open_txs) == [left_open.id]
    begin, written = open_txs[left_open.id]
    assert (begin["t"], begin["tx"]) == ("begin", left_open.id)
    assert written == ["vm.swappiness", "kernel.sched_rr_timeslice_ms"]


def test_transactions_are_listed_oldest_first_whatever_order_they_were_staged_in(
    manager: TransactionManager, clock: FakeClock
) -> None:
    staged = []
    for now, value in ((3000.0, 10), (1000.0, 20), (2000.0, 30)):
        clock.now = now
        staged.append(manager.stage({"vm.swappiness": value}))
    assert [t.id for t in manager.transactions()] == [staged[1].id, staged[2].id, staged[0].id]
    assert all(t.state is TxState.STAGED for t in manager.transactions())


# ---------------------------------------------------------------------------- supersede, revert, aliases
def test_recovery_honours_a_journaled_supersede_and_restores_only_the_knobs_still_owned(
    fake: FakeKernel, backend: Backend, manager: TransactionManager, journal_path: Path
) -> None:
    old = manager.apply(manager.stage({"vm.swappiness": 10, "vm.dirty_ratio": 30}).id, confirm_within_s=60)
    manager.supersede(old.id, {"vm.swappiness"})  # a newer write won swappiness: not ours to restore
    manager.close()  # the server dies with `old` still armed
    fresh = TransactionManager(backend, journal_path)
    report = fresh.recover()
    fresh.close()
    assert report.journal_problems == ()
    assert [(k.knob, k.action) for k in report.knobs] == [("vm.dirty_ratio", "restored")]
    assert (fake.read(SWAPPINESS), fake.read(DIRTY_RATIO)) == ("10\n", "20\n")


def test_a_supersede_refuses_a_transaction_that_is_not_applied(manager: TransactionManager) -> None:
    staged = manager.stage({"vm.swappiness": 10})
    with pytest.raises(TransactionStateError) as info:
        manager.supersede(staged.id, {"vm.swappiness"})
    assert info.value.fields == {"txid": staged.id, "state": "staged", "wanted": "applied"}


def test_a_revert_stopped_by_an_external_change_names_the_knob_and_both_values(
    fake: FakeKernel, manager: TransactionManager
) -> None:
    tx = manager.apply(manager.stage({"vm.swappiness": 10, "vm.dirty_ratio": 30}).id, confirm_within_s=60)
    fake.root.write_text(DIRTY_RATIO, "44")
    with pytest.raises(ExternalChangeError) as info:
        manager.revert(tx.id)
    assert info.value.fields == {"knob": "vm.dirty_ratio", "expected": 30, "actual": 44}


@pytest.mark.parametrize(
    "weight",
    [
        200,  # cpu.shares 2048: a value neither transaction's original nor the older one's target
        # cpu.shares 512: the file holds exactly what the older transaction wrote, so only the
        # commit's claim on the file keeps the next start from "restoring" the older original over it
        50,
    ],
)
def test_a_committed_alias_of_a_file_an_older_failed_restore_still_holds_is_not_clobbered_by_the_next_start(
    fake: FakeKernel, backend: Backend, manager: TransactionManager, journal_path: Path, weight: int
) -> None:
    # on cgroup v1 cpu_weight and cpu_shares are two views of cpu.shares (original 1024): the
    # first transaction's restore fails and stays open for the next start; a later transaction
    # commits the other view of the same file, which that start must keep
    shares = "sys/fs/cgroup/cpu/batch/cpu.shares"
    first = manager.apply(manager.stage({"cgroup.batch.cpu_shares": 512}).id, confirm_within_s=60)
    fake.rule(shares, reject=["1024"])
    _, results = manager.revert(first.id)
    assert [r.action for r in results] == ["error"]
    fake.rule(shares, reject=[])
    manager.commit(manager.apply(manager.stage({"cgroup.batch.cpu_weight": weight}).id, confirm_within_s=60).id)
    committed = fake.read(shares)
    assert committed != "1024\n"
    manager.close()
    fresh = TransactionManager(backend, journal_path)
    report = fresh.recover()
    fresh.close()
    assert fake.read(shares) == committed
    assert [k.knob for k in report.knobs] == []


# ---------------------------------------------------------------------------- states, kill points, recovery records
def test_a_commit_refuses_a_transaction_that_is_not_applied_naming_it(manager: TransactionManager) -> None:
    staged = manager.stage({"vm.swappiness": 10})
    with pytest.raises(TransactionStateError) as info:
        manager.commit(staged.id)
    assert info.value.fields == {"txid": staged.id, "state": "staged", "wanted": "applied"}


def test_a_reverted_transaction_is_closed_as_reverted_with_its_reason(
    manager: TransactionManager, clock: FakeClock
) -> None:
    tx = manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60)
    clock.now = 1010.0
    done, _ = manager.revert(tx.id, reason="operator")
    assert (done.state, done.outcome, done.closed_at) == (TxState.REVERTED, "operator", 1010.0)
    assert manager.holder_of("vm.swappiness") is None
    with pytest.raises(TransactionStateError):
        manager.revert(tx.id)


def test_apply_commit_revert_and_recovery_pass_their_kill_points_in_order(backend: Backend, journal_path: Path) -> None:
    # the crash test and `lumos-mcp selftest crash` kill at these labels (selftest names the recovery ones)
    seen: list[str] = []
    manager = TransactionManager(backend, journal_path, probe=seen.append)
    manager.commit(manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60).id)
    assert seen == [
        "apply:before-begin",
        "apply:after-begin",
        "apply:after-intent:0",
        "apply:after-file:0:0",
        "apply:after-write:0",
        "apply:after-armed",
        "commit:before-record",
        "commit:after-record",
    ]
    seen.clear()
    manager.revert(manager.apply(manager.stage({"vm.dirty_ratio": 30}).id, confirm_within_s=60).id)
    assert seen[-3:] == ["revert:requested:before-record", "rollback:after-restore:0", "revert:requested:after-record"]
    manager.apply(manager.stage({"vm.swappiness": 20, "vm.dirty_ratio": 40}).id, confirm_within_s=60)
    manager.close()  # the server dies with it armed
    seen.clear()
    fresh = TransactionManager(backend, journal_path, probe=seen.append)
    fresh.recover()
    fresh.close()
    assert seen == [
        "recover:before-record",
        "recover:after-restore:1",
        "recover:after-restore:0",
        "recover:after-record",
        "recover:rewrite:after-tmp",
        "recover:rewrite:after-rename",
        "recover:rewrite:after-reopen",
    ]


class Crash(BaseException):
    """Raised by a probe to stop a manager mid-operation, as a kill would (nothing catches it)."""


def test_a_crash_after_recovery_recorded_a_transaction_as_reverted_leaves_nothing_for_the_next_start(
    fake: FakeKernel, backend: Backend, manager: TransactionManager, journal_path: Path
) -> None:
    tx = manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60)
    manager.close()

    def probe(label: str) -> None:
        if label == "recover:after-record":
            raise Crash(label)

    crashing = TransactionManager(backend, journal_path, probe=probe)
    with pytest.raises(Crash):
        crashing.recover()
    crashing.close()
    assert [r["t"] for r in scan(journal_path).records if r.get("tx") == tx.id][-2:] == ["revert", "reverted"]
    fresh = TransactionManager(backend, journal_path)
    report = fresh.recover()
    fresh.close()
    assert (report.transactions, report.knobs) == ((), ())
    assert fake.read(SWAPPINESS) == "60\n"


def test_a_compaction_while_running_passes_its_kill_points_inside_the_commit_that_triggered_it(
    backend: Backend, journal_path: Path
) -> None:
    seen: list[str] = []
    manager = TransactionManager(backend, journal_path, probe=seen.append, compact_after_bytes=1)
    tx = manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60)
    seen.clear()
    manager.commit(tx.id)
    manager.close()
    assert seen == [
        "commit:before-record",
        "compact:after-tmp",
        "compact:after-rename",
        "compact:after-reopen",
        "commit:after-record",
    ]
    kept = scan(journal_path).records  # nothing open: compaction kept only the committed state
    assert [r["t"] for r in kept] == ["state"] and set(kept[0]["knobs"]) == {"vm.swappiness"}


def test_a_forged_original_with_a_second_line_is_refused_even_when_its_first_line_reads_as_a_value(
    fake: FakeKernel, backend: Backend, journal_path: Path
) -> None:
    thp = "sys/kernel/mm/transparent_hugepage/enabled"
    fake.file(thp, "always madvise [never]")
    journal = Journal(journal_path)
    knob = {"knob": "thp.enabled", "files": [thp], "codec": "plain", "after": "never"}
    journal.append({"t": "begin", "tx": "tx-forged", "digest": "0" * 64, "knobs": [knob | {"raw": ["[madvise]\nX"]}]})
    journal.append({"t": "write", "tx": "tx-forged", "knob": "thp.enabled"})
    journal.close()
    fresh = TransactionManager(backend, journal_path)
    report = fresh.recover()
    fresh.close()
    assert [(k.knob, k.action) for k in report.knobs] == [("thp.enabled", "refused")]
    assert fake.read(thp) == "always madvise [never]\n"


def test_stage_refusals_name_the_knob_and_the_value(manager: TransactionManager) -> None:
    with pytest.raises(InvalidValueError) as info:
        manager.stage({})
    assert info.value.fields == {"knob": "", "value": "{}"}
    with pytest.raises(InvalidValueError) as info:
        manager.stage({"thp.enabled": "sometimes"})
    assert info.value.fields["knob"] == "thp.enabled"


def test_a_takeover_refused_for_a_knob_its_holder_never_wrote_names_the_holder(manager: TransactionManager) -> None:
    # the holder holds cpu.shares through cpu_weight; cpu_shares is another id of that file: no takeover
    holder = manager.apply(manager.stage({"cgroup.batch.cpu_weight": 50}, speculative=True).id, 60)
    alias = manager.stage({"cgroup.batch.cpu_shares": 2048})
    with pytest.raises(ConflictError) as info:
        manager.apply(alias.id, confirm_within_s=60, take_over=lambda h: h.speculative)
    assert info.value.fields == {"knob": "cgroup.batch.cpu_shares", "holder": holder.id}


def test_the_replay_reads_past_a_record_without_a_transaction_and_honours_a_takeover(
    backend: Backend, manager: TransactionManager, journal_path: Path
) -> None:
    old = manager.apply(manager.stage({"vm.swappiness": 30, "vm.dirty_ratio": 25}, speculative=True).id, 60)
    journal = manager.journal
    journal.append({"t": "note"})  # no "tx": skipped, never the end of the replay
    new = manager.apply(manager.stage({"vm.swappiness": 40}).id, 60, take_over=lambda h: h.speculative)
    open_txs, _ = TransactionManager._replay(scan(journal_path).records)
    assert {txid: written for txid, (_, written) in open_txs.items()} == {
        old.id: ["vm.dirty_ratio"],
        new.id: ["vm.swappiness", "vm.swappiness"],
    }


# ---------------------------------------------------------------------------- gaps the re-run of issue 21 found
def test_a_takeover_refused_because_the_holders_value_changed_names_what_the_holder_wrote(
    fake: FakeKernel, manager: TransactionManager
) -> None:
    holder = manager.apply(manager.stage({"vm.swappiness": 30}, speculative=True).id, 60)
    taker = manager.stage({"vm.swappiness": 40})
    fake.root.write_text(SWAPPINESS, "35")
    with pytest.raises(ExternalChangeError) as info:
        manager.apply(taker.id, confirm_within_s=60, take_over=lambda h: h.id == holder.id)
    assert info.value.fields == {"knob": "vm.swappiness", "expected": 30, "actual": 35}


def test_a_choice_the_kernel_does_not_offer_is_refused_naming_the_value(
    fake: FakeKernel, manager: TransactionManager
) -> None:
    fake.block("vdb", scheduler="[mq-deadline] none")
    with pytest.raises(InvalidValueError) as info:
        manager.stage({"block.vdb.scheduler": "bfq"})
    assert info.value.fields == {"knob": "block.vdb.scheduler", "value": "bfq"}


def test_the_committed_state_is_what_the_journal_shows_committed(manager: TransactionManager, clock: FakeClock) -> None:
    assert manager.committed_state() == {}
    tx = manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60)
    clock.now = 1005.0
    manager.commit(tx.id)
    manager.apply(manager.stage({"vm.dirty_ratio": 30}).id, confirm_within_s=60)  # armed, not committed
    state = manager.committed_state()
    assert list(state) == ["vm.swappiness"]
    assert (state["vm.swappiness"]["value"], state["vm.swappiness"]["tx"]) == (10, tx.id)


def test_seeding_the_committed_state_journals_one_state_record_stamped_by_the_clock(
    manager: TransactionManager, journal_path: Path, clock: FakeClock
) -> None:
    entry = {"value": 10, "tx": "tx-old", "at": 900.0, "files": [SWAPPINESS], "codec": "plain", "original": 60}
    clock.now = 1234.5
    manager.seed_committed({"vm.swappiness": entry})
    assert scan(journal_path).records[-1] == {"t": "state", "ts": 1234.5, "knobs": {"vm.swappiness": entry}}
    assert manager.committed_state()["vm.swappiness"]["value"] == 10


def test_a_committed_transaction_says_committed(manager: TransactionManager, clock: FakeClock) -> None:
    tx = manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60)
    clock.now = 1010.0
    done = manager.commit(tx.id)
    assert (done.state, done.outcome, done.closed_at) == (TxState.COMMITTED, "committed", 1010.0)


def test_a_revert_of_a_knob_already_back_at_its_original_reports_unchanged(
    fake: FakeKernel, manager: TransactionManager
) -> None:
    tx = manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60)
    fake.root.write_text(SWAPPINESS, "60")  # someone put the original back
    _, results = manager.revert(tx.id, force=True)
    assert [(r.knob, r.action) for r in results] == [("vm.swappiness", "unchanged")]


def test_compaction_keeps_an_empty_state_record_and_adds_none_to_a_journal_that_never_had_one(
    manager: TransactionManager, journal_path: Path
) -> None:
    tx = manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60)
    manager.revert(tx.id)
    manager.compact()
    assert [r["t"] for r in scan(journal_path).records] == []  # never committed: stays empty
    manager.seed_committed({})  # marks the journal as complete
    manager.compact()
    assert [(r["t"], r["knobs"]) for r in scan(journal_path).records] == [("state", {})]


def test_a_value_the_kernel_clamps_fails_the_apply_naming_the_knob_in_its_cause(
    fake: FakeKernel, manager: TransactionManager
) -> None:
    fake.rule(SWAPPINESS, clamp=[0, 50])
    staged = manager.stage({"vm.swappiness": 80})
    with pytest.raises(ApplyFailedError) as info:
        manager.apply(staged.id, confirm_within_s=60)
    cause = info.value.fields["cause"]
    assert (cause["code"], cause["knob"], cause["expected"], cause["actual"]) == (
        "readback_mismatch",
        "vm.swappiness",
        80,
        50,
    )


def test_applying_a_transaction_that_is_not_staged_names_the_state_wanted(manager: TransactionManager) -> None:
    tx = manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60)
    with pytest.raises(TransactionStateError) as info:
        manager.apply(tx.id, confirm_within_s=60)
    assert info.value.fields == {"txid": tx.id, "state": "applied", "wanted": "staged"}


def test_a_change_writing_one_file_through_two_knob_ids_is_refused_naming_the_second(
    manager: TransactionManager,
) -> None:
    with pytest.raises(InvalidValueError) as info:
        manager.stage({"cgroup.batch.cpu_shares": 512, "cgroup.batch.cpu_weight": 50})
    assert info.value.fields == {"knob": "cgroup.batch.cpu_weight", "value": ""}


def test_a_staged_change_carries_the_digest_of_its_changes_into_its_begin_record(
    manager: TransactionManager, journal_path: Path
) -> None:
    staged = manager.stage({"vm.swappiness": 10, "vm.dirty_ratio": 30})
    assert staged.digest == change_digest(staged.changes) and len(staged.digest) == 64
    manager.apply(staged.id, confirm_within_s=60)
    (begin,) = [r for r in scan(journal_path).records if r["t"] == "begin"]
    assert begin["digest"] == staged.digest
