"""The committed state as one truth (issue 14 item 1): from the journal, kept by its compaction and
by recovery, and from the audit log for commits an old compaction dropped."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from lumos_mcp.kernelfs.backend import Backend
from lumos_mcp.kernelfs.fake import FakeKernel, typical_host
from lumos_mcp.knobs import default_catalog
from lumos_mcp.persist.state import committed_state
from lumos_mcp.service import Service
from lumos_mcp.txn import Transaction, TransactionManager
from lumos_mcp.txn.committed import fold, has_state
from lumos_mcp.txn.journal import Journal, scan

POLICY = str(Path(__file__).parent / "data" / "persist-policy.toml")


def values(state_dir: Path, mode: str, backend: Backend) -> dict[str, object]:
    return {k.knob: k.value for k in committed_state(state_dir, mode, backend)}


def commit(manager: TransactionManager, change: dict[str, object]) -> Transaction:
    return manager.commit(manager.apply(manager.stage(change).id, confirm_within_s=60).id)


def test_the_committed_state_names_each_knob_its_value_transaction_time_and_first_original(
    backend: Backend, tmp_path: Path
) -> None:
    now = [1000.0]
    manager = TransactionManager(backend, tmp_path / "journal-live.jsonl", clock=lambda: now[0])
    first = commit(manager, {"vm.swappiness": 10})
    now[0] = 2000.0
    second = commit(manager, {"vm.swappiness": 20, "vm.dirty_ratio": 30})
    manager.close()
    knobs = {k.knob: k for k in committed_state(tmp_path, "live", backend)}
    assert set(knobs) == {"vm.swappiness", "vm.dirty_ratio"}
    swap = knobs["vm.swappiness"]
    assert (swap.value, swap.tx, swap.committed_at) == (20, second.id, 2000.0)
    assert (swap.original, swap.first_tx, swap.first_at, swap.original_texts) == (60, first.id, 1000.0, ("60",))
    assert (knobs["vm.dirty_ratio"].value, knobs["vm.dirty_ratio"].original) == (30, 20)


def test_reverted_failed_and_still_armed_changes_are_not_committed(backend: Backend, tmp_path: Path) -> None:
    manager = TransactionManager(backend, tmp_path / "journal-live.jsonl")
    manager.revert(manager.apply(manager.stage({"vm.swappiness": 10}).id, 60).id)
    manager.apply(manager.stage({"vm.dirty_ratio": 30}).id, 60)  # armed, never committed
    manager.close()
    assert committed_state(tmp_path, "live", backend) == []


def test_a_knob_taken_over_from_a_speculative_move_is_committed_by_the_taker_with_the_true_original(
    backend: Backend, tmp_path: Path
) -> None:
    manager = TransactionManager(backend, tmp_path / "journal-live.jsonl")
    spec = manager.apply(manager.stage({"vm.swappiness": 30}, speculative=True).id, 60)
    taker = manager.apply(manager.stage({"vm.swappiness": 25}).id, 60, take_over=lambda h: h.speculative)
    manager.commit(taker.id)
    assert spec.knobs() == ["vm.swappiness"]
    manager.close()
    [swap] = committed_state(tmp_path, "live", backend)
    assert (swap.value, swap.tx, swap.original) == (25, taker.id, 60)


def test_compaction_keeps_the_committed_state_while_the_journal_stays_bounded(backend: Backend, tmp_path: Path) -> None:
    path = tmp_path / "journal-live.jsonl"
    manager = TransactionManager(backend, path, compact_after_bytes=4096)
    commit(manager, {"vm.dirty_ratio": 30})
    largest = 0
    for i in range(200):
        commit(manager, {"vm.swappiness": 10 + i % 2})
        largest = max(largest, path.stat().st_size)
    manager.close()
    assert largest < 2 * 4096  # 200 commits uncompacted are about 100 KB
    records = scan(path).records
    assert records[0]["t"] == "state"
    assert values(tmp_path, "live", backend) == {"vm.dirty_ratio": 30, "vm.swappiness": 11}
    assert {k.knob: k.original for k in committed_state(tmp_path, "live", backend)} == {
        "vm.dirty_ratio": 20,
        "vm.swappiness": 60,
    }


def test_recovery_keeps_the_committed_state_when_it_rewrites_the_journal(backend: Backend, tmp_path: Path) -> None:
    path = tmp_path / "journal-live.jsonl"
    manager = TransactionManager(backend, path)
    committed = commit(manager, {"vm.dirty_ratio": 30})
    manager.apply(manager.stage({"vm.swappiness": 10}).id, 60)
    manager.close()
    fresh = TransactionManager(backend, path)
    fresh.recover()
    fresh.close()
    assert [r["t"] for r in scan(path).records] == ["state"]
    [ratio] = committed_state(tmp_path, "live", backend)
    assert (ratio.knob, ratio.value, ratio.tx) == ("vm.dirty_ratio", 30, committed.id)


def forget_commits(journal: Path) -> None:
    """What a compaction before this change did: the journal keeps nothing of committed transactions."""
    j = Journal(journal)
    j.rewrite([])
    j.close()


def test_the_audit_log_fills_in_commits_an_old_compaction_dropped_and_the_next_start_journals_them(
    make_service: Callable[..., Service], tmp_path: Path
) -> None:
    service = make_service(policy=POLICY)
    tx = service.commit(service.apply(service.stage({"vm.swappiness": 10}).tx.id).id)
    service.close()
    journal = tmp_path / "state" / "journal-live.jsonl"
    forget_commits(journal)
    backend = service.backend
    [swap] = committed_state(tmp_path / "state", "live", backend)
    assert (swap.value, swap.tx, swap.original, swap.files) == (10, tx.id, 60, ("proc/sys/vm/swappiness",))
    restarted = make_service(policy=POLICY)
    restarted.close()
    assert has_state(scan(journal).records)
    (tmp_path / "state" / "audit.jsonl").unlink()  # the journal alone tells it now
    assert values(tmp_path / "state", "live", backend) == {"vm.swappiness": 10}


def test_commits_of_another_mode_in_the_audit_log_do_not_count(
    make_service: Callable[..., Service], tmp_path: Path
) -> None:
    service = make_service(mode="sandbox", policy=POLICY)
    service.commit(service.apply(service.stage({"vm.swappiness": 10}).tx.id).id)
    service.close()
    forget_commits(tmp_path / "state" / "journal-sandbox.jsonl")
    assert committed_state(tmp_path / "state", "live", service.backend) == []
    assert values(tmp_path / "state", "sandbox", service.backend) == {"vm.swappiness": 10}


OPS = st.lists(
    st.tuples(
        st.sampled_from(["commit", "revert", "armed"]),
        st.dictionaries(
            st.sampled_from(["vm.swappiness", "vm.dirty_ratio", "kernel.sched_rr_timeslice_ms"]),
            st.integers(min_value=5, max_value=90),
            min_size=1,
        ),
    ),
    max_size=12,
)


@settings(max_examples=25, deadline=None)
@given(ops=OPS)
def test_compaction_and_recovery_never_change_what_the_journal_says_is_committed(
    ops: list[tuple[str, dict[str, int]]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fake: FakeKernel = typical_host(Path(tmp) / "kernel")
        backend = Backend(fake.root, default_catalog())
        path = Path(tmp) / "journal-live.jsonl"
        manager = TransactionManager(backend, path)
        for op, change in ops:
            held = [k for k in change if manager.holder_of(k) is not None]
            if held:
                continue
            tx = manager.apply(manager.stage(change).id, 60)
            if op == "commit":
                manager.commit(tx.id)
            elif op == "revert":
                manager.revert(tx.id)
        before = fold(scan(path).records)
        assert manager.compact()
        assert fold(scan(path).records) == before
        manager.close()
        fresh = TransactionManager(backend, path)
        fresh.recover()
        fresh.close()
        assert fold(scan(path).records) == before
