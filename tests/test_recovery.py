"""Recovery and rollback: a failed restore is retried by the next start, a crash after a
speculative takeover restores the true original, a newer committed write is never clobbered,
and recovery writes only the files the catalog resolves today (issue 19 item 3)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lumos_mcp import audit
from lumos_mcp.errors import ApplyFailedError
from lumos_mcp.kernelfs.backend import Backend
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.knobs import default_catalog
from lumos_mcp.service import Service
from lumos_mcp.txn import Transaction, TransactionManager, TxState
from lumos_mcp.txn.journal import Journal, scan
from tests.txn_helpers import FakeClock

SWAPPINESS = "proc/sys/vm/swappiness"
DIRTY_RATIO = "proc/sys/vm/dirty_ratio"
RR_SLICE = "proc/sys/kernel/sched_rr_timeslice_ms"


class Crash(BaseException):
    """Raised by a probe to stop a manager mid-operation, as a kill would (nothing catches it)."""


@pytest.fixture
def manager(backend: Backend, journal_path: Path) -> Iterator[TransactionManager]:
    m = TransactionManager(backend, journal_path)
    yield m
    m.close()


def recover(backend: Backend, journal_path: Path) -> Any:
    m = TransactionManager(backend, journal_path)
    try:
        return m.recover()
    finally:
        m.close()


def kinds(journal_path: Path, txid: str) -> list[str]:
    return [r["t"] for r in scan(journal_path).records if r.get("tx") == txid]


# ---------------------------------------------------------------------------- failed restores
def test_a_revert_whose_restore_failed_is_not_journaled_as_reverted_and_the_next_start_restores_it(
    fake: FakeKernel, backend: Backend, manager: TransactionManager, journal_path: Path
) -> None:
    tx = manager.apply(manager.stage({"vm.swappiness": 10, "vm.dirty_ratio": 30}).id, confirm_within_s=60)
    fake.rule(SWAPPINESS, reject=["60"])  # the kernel refuses the original back
    _, results = manager.revert(tx.id)
    assert {r.knob: r.action for r in results} == {"vm.swappiness": "error", "vm.dirty_ratio": "restored"}
    assert "reverted" not in kinds(journal_path, tx.id)
    manager.close()
    fake.rule(SWAPPINESS, reject=[])
    report = recover(backend, journal_path)
    assert report.transactions == (tx.id,)
    assert (fake.read(SWAPPINESS), fake.read(DIRTY_RATIO)) == ("60\n", "20\n")
    assert recover(backend, journal_path).transactions == ()


def test_an_apply_whose_rollback_failed_is_not_journaled_as_reverted_and_the_next_start_restores_it(
    fake: FakeKernel, backend: Backend, manager: TransactionManager, journal_path: Path
) -> None:
    fake.rule(DIRTY_RATIO, reject=["30"])  # the second write fails: roll back the first
    fake.rule(SWAPPINESS, reject=["60"])  # ... whose restore fails too
    tx = manager.stage({"vm.swappiness": 10, "vm.dirty_ratio": 30})
    with pytest.raises(ApplyFailedError):
        manager.apply(tx.id, confirm_within_s=60)
    assert fake.read(SWAPPINESS) == "10\n"
    assert "reverted" not in kinds(journal_path, tx.id)
    manager.close()
    fake.rule(SWAPPINESS, reject=[])
    recover(backend, journal_path)
    assert fake.read(SWAPPINESS) == "60\n"


def test_a_restore_that_fails_during_recovery_is_retried_by_the_next_start(
    fake: FakeKernel, backend: Backend, manager: TransactionManager, journal_path: Path
) -> None:
    tx = manager.apply(manager.stage({"vm.swappiness": 10, "vm.dirty_ratio": 30}).id, confirm_within_s=60)
    manager.close()
    fake.rule(SWAPPINESS, reject=["60"])
    first = recover(backend, journal_path)
    assert {r.knob: r.action for r in first.knobs} == {"vm.swappiness": "error", "vm.dirty_ratio": "restored"}
    assert not first.clean
    for _ in range(2):  # a start that fails again keeps what the one after it needs
        again = recover(backend, journal_path)
        assert again.transactions == (tx.id,)
    fake.rule(SWAPPINESS, reject=[])
    last = recover(backend, journal_path)
    assert [(r.knob, r.action) for r in last.knobs if r.knob == "vm.swappiness"] == [("vm.swappiness", "restored")]
    assert (fake.read(SWAPPINESS), fake.read(DIRTY_RATIO)) == ("60\n", "20\n")
    assert recover(backend, journal_path).transactions == ()


def test_a_failed_recovery_restore_of_a_taken_over_knob_is_retried_to_the_true_original(
    fake: FakeKernel, backend: Backend, manager: TransactionManager, journal_path: Path
) -> None:
    spec = manager.apply(manager.stage({"vm.swappiness": 30}, speculative=True).id, confirm_within_s=60)
    manager.apply(manager.stage({"vm.swappiness": 40}).id, confirm_within_s=60, take_over=lambda h: h.speculative)
    assert spec.state is TxState.COMMITTED  # superseded entirely
    manager.close()
    fake.rule(SWAPPINESS, reject=["60"])
    recover(backend, journal_path)
    assert fake.read(SWAPPINESS) == "40\n"
    fake.rule(SWAPPINESS, reject=[])
    recover(backend, journal_path)
    assert fake.read(SWAPPINESS) == "60\n"


# ---------------------------------------------------------------------------- takeover and crashes
def takeover_run(manager: TransactionManager, clock: FakeClock, then: str) -> None:
    spec = manager.apply(
        manager.stage({"vm.swappiness": 30, "vm.dirty_ratio": 25}, speculative=True).id, confirm_within_s=60
    )
    if then == "fail":  # the taking transaction's second write fails: its rollback restores both
        manager.backend.root.set_behaviours({RR_SLICE: {"reject": ["25"]}})
        with pytest.raises(ApplyFailedError):
            manager.apply(
                manager.stage({"vm.swappiness": 40, "kernel.sched_rr_timeslice_ms": 25}).id, 60, take_over=yes
            )
        return
    tx = manager.apply(manager.stage({"vm.swappiness": 40}).id, confirm_within_s=60, take_over=yes)
    if then == "commit":
        manager.commit(tx.id)
    elif then == "revert":
        manager.revert(tx.id)
    elif then == "expire":
        clock.now += 61
        manager.expire_due()
    elif then == "supersede":
        manager.supersede(spec.id, {"vm.dirty_ratio"})


def yes(holder: Transaction) -> bool:
    return holder.speculative


TAKEOVER_ENDINGS = ["none", "commit", "revert", "expire", "supersede", "fail"]


@pytest.mark.parametrize("then", TAKEOVER_ENDINGS)
def test_a_crash_at_any_point_after_a_speculative_takeover_is_recovered_without_error(
    tmp_path: Path, then: str
) -> None:
    from lumos_mcp.kernelfs.fake import typical_host

    labels: list[str] = []
    clock = FakeClock()
    fake = typical_host(tmp_path / "complete" / "kernel")
    backend = Backend(fake.root, default_catalog())
    m = TransactionManager(backend, tmp_path / "complete" / "journal", clock=clock, probe=labels.append)
    takeover_run(m, clock, then)
    m.close()
    assert "apply:after-begin" in labels
    for n, label in enumerate(labels):
        fake = typical_host(tmp_path / str(n) / "kernel")
        backend = Backend(fake.root, default_catalog())
        journal = tmp_path / str(n) / "journal"

        clock = FakeClock()
        m = TransactionManager(backend, journal, clock=clock, probe=crash_at_call(n + 1))
        with pytest.raises(Crash):
            takeover_run(m, clock, then)
        m.close()
        committed = then == "commit" and n >= labels.index("commit:after-record")
        report = recover(backend, journal)
        assert report.clean, (label, report)
        expected = ("40\n" if committed else "60\n", "20\n", "100\n")
        assert (fake.read(SWAPPINESS), fake.read(DIRTY_RATIO), fake.read(RR_SLICE)) == expected, label
        assert recover(backend, journal).transactions == (), label


def test_a_crash_inside_recovery_after_a_speculative_takeover_is_finished_by_the_next_start(tmp_path: Path) -> None:
    from lumos_mcp.kernelfs.fake import typical_host

    def crashed(directory: Path) -> tuple[FakeKernel, Backend, Path]:
        fake = typical_host(directory / "kernel")
        backend = Backend(fake.root, default_catalog())
        m = TransactionManager(backend, directory / "journal", clock=FakeClock())
        takeover_run(m, FakeClock(), "none")
        m.close()
        return fake, backend, directory / "journal"

    labels: list[str] = []
    _, backend, journal = crashed(tmp_path / "complete")
    m = TransactionManager(backend, journal, probe=labels.append)
    m.recover()
    m.close()
    assert labels
    for n, label in enumerate(labels):
        fake, backend, journal = crashed(tmp_path / str(n))
        m = TransactionManager(backend, journal, probe=crash_at_call(n + 1))
        with pytest.raises(Crash):
            m.recover()
        m.close()
        report = recover(backend, journal)
        assert report.clean, (label, report)
        assert (fake.read(SWAPPINESS), fake.read(DIRTY_RATIO)) == ("60\n", "20\n"), label
        assert recover(backend, journal).transactions == (), label


def crash_at_call(n: int) -> Callable[[str], None]:
    calls = [0]

    def probe(label: str) -> None:
        calls[0] += 1
        if calls[0] == n:
            raise Crash(label)

    return probe


def test_recovery_keeps_a_newer_committed_value_equal_to_what_the_older_open_transaction_wrote(
    fake: FakeKernel, backend: Backend, manager: TransactionManager, journal_path: Path
) -> None:
    # original A = 60; the speculative move writes 30; a newer transaction takes it over and
    # commits B = 30: the older, still open transaction's original 60 must not clobber B
    old = manager.apply(manager.stage({"vm.swappiness": 30, "vm.dirty_ratio": 25}, speculative=True).id, 60)
    new = manager.apply(manager.stage({"vm.swappiness": 30}).id, confirm_within_s=60, take_over=lambda h: h.speculative)
    manager.commit(new.id)
    assert old.state is TxState.APPLIED
    manager.close()
    report = recover(backend, journal_path)
    assert report.transactions == (old.id,)
    assert (fake.read(SWAPPINESS), fake.read(DIRTY_RATIO)) == ("30\n", "20\n")


def test_recovery_keeps_a_committed_value_equal_to_what_a_superseded_open_transaction_wrote(
    fake: FakeKernel, backend: Backend, manager: TransactionManager, journal_path: Path
) -> None:
    old = manager.apply(manager.stage({"vm.swappiness": 10, "vm.dirty_ratio": 30}).id, confirm_within_s=60)
    manager.supersede(old.id, {"vm.swappiness"})
    manager.commit(manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60).id)
    manager.close()
    recover(backend, journal_path)
    assert (fake.read(SWAPPINESS), fake.read(DIRTY_RATIO)) == ("10\n", "20\n")


# ---------------------------------------------------------------------------- forged records
def forge(journal_path: Path, knob: dict[str, Any], txid: str = "tx-forged") -> None:
    journal = Journal(journal_path)
    journal.append({"t": "begin", "tx": txid, "digest": "0" * 64, "speculative": False, "knobs": [knob]})
    journal.append({"t": "write", "tx": txid, "knob": knob.get("knob")})
    journal.close()


def swappiness_record(**override: Any) -> dict[str, Any]:
    return {"knob": "vm.swappiness", "files": [SWAPPINESS], "codec": "plain", "raw": ["60\n"], "after": 10} | override


def test_a_forged_journal_record_naming_a_file_outside_the_knob_tree_leaves_it_untouched_and_is_reported(
    fake: FakeKernel, backend: Backend, journal_path: Path
) -> None:
    fake.file("etc/shadow", "root:secret")
    secret = fake.base / "etc" / "shadow"
    os.chmod(secret, 0o600)
    fake.file(SWAPPINESS, "10")
    forge(journal_path, swappiness_record(files=["etc/shadow"], raw=["pwned"]))
    report = recover(backend, journal_path)
    assert secret.read_text() == "root:secret\n"
    assert fake.read(SWAPPINESS) == "10\n"  # not restored from a record that lies about it either
    assert [(r.knob, r.action) for r in report.knobs] == [("vm.swappiness", "refused")]
    assert not report.clean
    assert any("etc/shadow" in p for p in report.journal_problems)


@pytest.mark.parametrize(
    "forged",
    [
        pytest.param({"raw": ["sixty\n"]}, id="raw-not-an-integer"),
        pytest.param({"raw": ["60\n", "61\n"]}, id="raw-for-two-files"),
        pytest.param({"raw": ["60\nvm.overcommit_memory=1"]}, id="raw-with-a-second-line"),
        pytest.param({"codec": "weight_as_shares"}, id="another-codec"),
        pytest.param({"files": ["proc/sys/vm/dirty_ratio"]}, id="another-knobs-file"),
        pytest.param({"after": "lots"}, id="target-not-a-value-of-the-knob"),
        pytest.param({"found": ["x"]}, id="found-not-a-value-of-the-knob"),
        pytest.param({"files": "proc/sys/vm/swappiness"}, id="files-not-a-list"),
        pytest.param({"knob": "vm.nope"}, id="unknown-knob"),
    ],
)
def test_a_forged_journal_record_that_the_catalog_does_not_confirm_is_refused(
    fake: FakeKernel, backend: Backend, journal_path: Path, forged: dict[str, Any]
) -> None:
    fake.file(SWAPPINESS, "10")
    forge(journal_path, swappiness_record(**forged))
    report = recover(backend, journal_path)
    assert (fake.read(SWAPPINESS), fake.read(DIRTY_RATIO)) == ("10\n", "20\n")
    assert [r.action for r in report.knobs] == ["refused"]
    assert report.journal_problems
    assert recover(backend, journal_path).transactions == ()  # reported once, in the audit too


def test_a_malformed_journal_record_is_reported_and_does_not_stop_recovery_of_the_others(
    fake: FakeKernel, backend: Backend, manager: TransactionManager, journal_path: Path
) -> None:
    tx = manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60)
    manager.close()
    journal = Journal(journal_path)
    journal.append({"t": "begin", "tx": "tx-bad", "knobs": "everything"})
    journal.append({"t": "write", "tx": tx.id})
    journal.append({"t": "supersede", "tx": tx.id, "knobs": 7})
    journal.append({"t": "begin", "tx": "tx-worse", "knobs": [], "takes_over": {"tx-x": "vm.swappiness"}})
    journal.close()
    report = recover(backend, journal_path)
    assert tx.id in report.transactions
    assert fake.read(SWAPPINESS) == "60\n"
    assert len(report.journal_problems) >= 3


def test_recovery_refusals_are_written_to_the_audit_log(
    fake: FakeKernel, make_service: Callable[..., Service], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    fake.file("etc/shadow", "root:secret")
    forge(state / "journal-live.jsonl", swappiness_record(files=["etc/shadow"]))
    service = make_service(state_dir=state)
    assert fake.read("etc/shadow") == "root:secret\n"
    records = [r for r in audit.iter_records(service.audit.path) if r.get("event") == "recovery"]
    assert records[-1]["knobs"][0]["action"] == "refused"
    assert any("etc/shadow" in p for p in records[-1]["journal_problems"])


def test_a_knob_committed_after_an_earlier_failed_restore_is_not_clobbered_by_the_next_start(
    fake: FakeKernel, backend: Backend, manager: TransactionManager, journal_path: Path
) -> None:
    # original A = 60; tx1 writes 10 and its revert fails (the journal keeps it open for the
    # next start); later transactions commit 30, then B = 10 (tx1's own target): B stays
    tx1 = manager.apply(manager.stage({"vm.swappiness": 10}).id, confirm_within_s=60)
    fake.rule(SWAPPINESS, reject=["60"])
    manager.revert(tx1.id)
    fake.rule(SWAPPINESS, reject=[])
    for value in (30, 10):
        manager.commit(manager.apply(manager.stage({"vm.swappiness": value}).id, confirm_within_s=60).id)
    manager.close()
    recover(backend, journal_path)
    assert fake.read(SWAPPINESS) == "10\n"


def test_recovery_restores_the_rest_and_keeps_a_knob_whose_cgroup_is_gone_for_the_next_start(
    fake: FakeKernel, backend: Backend, manager: TransactionManager, journal_path: Path
) -> None:
    tx = manager.apply(manager.stage({"vm.swappiness": 10, "cgroup.batch.cpu_idle": True}).id, confirm_within_s=60)
    manager.close()
    shutil.rmtree(fake.base / "sys/fs/cgroup/cpu/batch")  # the batch job ended with the server down
    report = recover(backend, journal_path)
    assert {r.knob: r.action for r in report.knobs} == {"cgroup.batch.cpu_idle": "error", "vm.swappiness": "restored"}
    assert fake.read(SWAPPINESS) == "60\n"
    assert recover(backend, journal_path).transactions == (tx.id,)  # not forgotten, not refused
