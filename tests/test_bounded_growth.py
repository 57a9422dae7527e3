"""Issue 19 item 7: nothing a server keeps grows without bound (the journal aside: see test_txn).

Staged changes expire; closed approvals are pruned; the audit log rotates, and its hash chain
stays verifiable across the rotated files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from lumos_mcp import cli
from lumos_mcp import service as service_mod
from lumos_mcp.approvals import ApprovalStore
from lumos_mcp.audit import AuditLog, iter_records, log_files, rotated_files, tail, verify
from lumos_mcp.errors import StagedExpiredError
from lumos_mcp.service import Service

DIGEST = "sha256:" + "ab" * 32


class FakeClock:
    def __init__(self, now: float = 1_714_557_600.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------------------ staged changes
def test_a_staged_change_unused_for_longer_than_the_approval_lifetime_expires_with_a_typed_error(
    make_service: Callable[..., Service],
) -> None:
    clock = FakeClock()
    service = make_service(policy="default", clock=clock)
    staged = service.stage({"vm.swappiness": 50})
    clock.now += service.policy.global_.approval_lifetime_s + 1
    with pytest.raises(StagedExpiredError) as info:
        service.apply(staged.tx.id)
    assert info.value.code == "staged_expired"
    assert info.value.fields["txid"] == staged.tx.id
    assert service.backend.read("vm.swappiness").value == 60  # nothing was written


def test_a_staged_change_within_the_approval_lifetime_still_applies(make_service: Callable[..., Service]) -> None:
    clock = FakeClock()
    service = make_service(policy="default", clock=clock)
    staged = service.stage({"vm.swappiness": 50})
    clock.now += service.policy.global_.approval_lifetime_s - 1
    assert service.apply(staged.tx.id).state.value == "applied"


def test_requesting_an_approval_keeps_a_staged_change_alive_for_another_lifetime(
    make_service: Callable[..., Service],
) -> None:
    clock = FakeClock()
    service = make_service(policy="default", clock=clock)
    lifetime = service.policy.global_.approval_lifetime_s
    staged = service.stage({"vm.swappiness": 40})  # above the approval step
    clock.now += lifetime - 1
    approval = service.request_approval(staged.tx.id)
    service.decide_approval(approval.id, grant=True, by="alice")
    clock.now += lifetime - 1  # older than one lifetime since staging, not since the request
    assert service.apply(staged.tx.id, approval.id).state.value == "applied"


def test_the_staged_change_map_stays_bounded_and_the_oldest_expire_first(
    make_service: Callable[..., Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_mod, "MAX_STAGED", 5)
    service = make_service(policy="default")
    txids = [service.stage({"vm.swappiness": 50}).tx.id for _ in range(12)]
    assert len(service._staged) == 5
    with pytest.raises(StagedExpiredError):
        service.staged(txids[0])
    assert service.staged(txids[-1]).tx.id == txids[-1]


def test_closed_transactions_leave_the_staged_change_map(make_service: Callable[..., Service]) -> None:
    clock = FakeClock()
    service = make_service(policy="default", clock=clock)
    for _ in range(3):
        staged = service.stage({"vm.swappiness": 50})
        service.apply(staged.tx.id)
        service.revert(staged.tx.id)
        clock.now += 400  # past the cooldown
    service.stage({"vm.swappiness": 50})
    assert len(service._staged) == 1


# ------------------------------------------------------------------------------ approvals
def test_closed_approvals_older_than_the_retention_window_are_pruned_at_the_next_write(tmp_path: Path) -> None:
    clock = FakeClock()
    store = ApprovalStore(tmp_path / "state", clock=clock, retention_s=3600)
    used = store.grant(store.request("tx-1", DIGEST, "s", lifetime_s=60).id, by="alice")
    store.consume(used.id, "tx-1", DIGEST)
    denied = store.deny(store.request("tx-2", DIGEST, "s", lifetime_s=60).id, by="alice")
    expired = store.request("tx-3", DIGEST, "s", lifetime_s=60)
    clock.now += 3600 + 61
    live = store.request("tx-4", DIGEST, "s", lifetime_s=60)
    kept = {a.id for a in store.list()}
    assert kept == {live.id}
    assert not {used.id, denied.id, expired.id} & kept


def test_closed_approvals_within_the_retention_window_are_kept_up_to_keep_closed_newest_first(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    store = ApprovalStore(tmp_path / "state", clock=clock, keep_closed=3)
    denied = []
    for i in range(6):
        clock.now += 1
        denied.append(store.deny(store.request(f"tx-{i}", DIGEST, "s", lifetime_s=600).id, by="bob").id)
    assert [a.id for a in store.list()] == denied[-3:]


def test_pending_and_granted_approvals_are_never_pruned(tmp_path: Path) -> None:
    clock = FakeClock()
    store = ApprovalStore(tmp_path / "state", clock=clock, keep_closed=0, retention_s=0)
    pending = store.request("tx-1", DIGEST, "s", lifetime_s=600)
    granted = store.grant(store.request("tx-2", DIGEST, "s", lifetime_s=600).id, by="alice")
    store.deny(store.request("tx-3", DIGEST, "s", lifetime_s=600).id, by="alice")
    assert {a.id: a.status for a in store.list()} == {pending.id: "pending", granted.id: "granted"}


def test_a_store_of_3000_approvals_shrinks_to_the_live_ones_and_the_newest_closed_at_the_next_write(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    old = [
        {
            "id": f"ap-{i:08x}",
            "txid": f"tx-{i}",
            "digest": DIGEST,
            "summary": "s",
            "requested_by": "agent",
            "created_at": clock.now - 7200,
            "expires_at": clock.now - 6600,
            "status": "denied" if i % 2 else "used",
            "decided_at": clock.now - 7100,
            "used_at": None if i % 2 else clock.now - 7000 + i * 0.1,
        }
        for i in range(3000)
    ]
    (state / "approvals.json").write_bytes(orjson.dumps({"version": 1, "approvals": old}))
    os.chmod(state / "approvals.json", 0o600)
    store = ApprovalStore(state, clock=clock)
    store.request("tx-new", DIGEST, "s", lifetime_s=60)
    assert len(store.list()) == 1 + 200  # the 200 newest closed ones, within the day's retention
    assert (state / "approvals.json").stat().st_size < 200 * 1024


# ------------------------------------------------------------------------------ audit rotation
def filled_log(path: Path, records: int, max_bytes: int = 1024) -> AuditLog:
    log = AuditLog(path, max_bytes=max_bytes)
    for i in range(records):
        log.append("probe", i=i, pad="x" * 100)
    return log


def test_a_full_audit_log_rotates_and_the_chain_continues_across_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    filled_log(path, 60)
    rotated = rotated_files(path)
    assert len(rotated) >= 3
    assert [p.name for p in rotated] == [f"audit.jsonl.{n}" for n in range(1, len(rotated) + 1)]
    assert all(p.stat().st_size < 1024 + 400 for p in rotated)
    first_of_live = orjson.loads(path.read_bytes().split(b"\n")[0])
    last_of_previous = orjson.loads(rotated[-1].read_bytes().rstrip(b"\n").rsplit(b"\n", 1)[-1])
    assert first_of_live["prev"] == last_of_previous["hash"]
    assert first_of_live["seq"] == last_of_previous["seq"] + 1
    report = verify(path)
    assert report.ok and report.records == 60 and report.files == len(rotated) + 1
    assert [r["seq"] for r in iter_records(path)] == list(range(1, 61))


def test_verify_detects_a_missing_rotated_file_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    filled_log(path, 60)
    gone = rotated_files(path)[1]
    gone.unlink()
    report = verify(path)
    assert not report.ok and report.problem == "deleted" and report.file == str(gone)


def test_verify_detects_a_missing_oldest_rotated_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    filled_log(path, 60)
    rotated = rotated_files(path)
    rotated[0].unlink()
    for n, p in enumerate(rotated[1:], 1):  # renumbered to hide the gap
        p.rename(path.with_name(f"audit.jsonl.{n}"))
    report = verify(path)
    assert not report.ok and report.problem == "deleted" and report.records == 0


def test_verify_detects_two_rotated_files_swapped(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    filled_log(path, 60)
    a, b = rotated_files(path)[:2]
    a.rename(tmp_path / "swap")
    b.rename(a)
    (tmp_path / "swap").rename(b)
    report = verify(path)
    assert not report.ok and report.problem in ("reordered", "deleted") and report.file == str(a)


def test_verify_detects_an_edit_inside_a_rotated_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    filled_log(path, 60)
    victim = rotated_files(path)[1]
    victim.write_bytes(victim.read_bytes().replace(b'"i":', b'"j":', 1))
    report = verify(path)
    assert not report.ok and report.problem == "edited" and report.file == str(victim)


def test_tail_reads_across_rotated_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    filled_log(path, 60)
    live = sum(1 for _ in path.read_bytes().splitlines())
    got = tail(path, live + 5)
    assert [r["i"] for r in got] == list(range(60 - live - 5, 60))


def test_a_crash_between_the_renames_of_a_rotation_keeps_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    filled_log(path, 5, max_bytes=1 << 20)
    path.rename(path.with_name("audit.jsonl.1"))  # the full file renamed; its successor never placed
    log = AuditLog(path, max_bytes=1 << 20)
    log.append("after_crash")
    report = verify(path)
    assert report.ok and report.records == 6 and log_files(path) == [path.with_name("audit.jsonl.1"), path]


def test_two_writers_rotating_one_log_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first, second = AuditLog(path, max_bytes=2048), AuditLog(path, max_bytes=2048)
    for i in range(40):
        (first if i % 2 else second).append("probe", i=i, pad="y" * 80)
    report = verify(path)
    assert report.ok and report.records == 40 and report.files > 2


def test_the_cli_verifies_and_tails_across_rotated_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    filled_log(state / "audit.jsonl", 60)
    assert cli.main(["audit", "--state-dir", str(state), "verify"]) == 0
    assert cli.main(["audit", "--state-dir", str(state), "tail", "-n", "30"]) == 0
    out = capsys.readouterr().out
    assert out.count("probe") == 30
    rotated_files(state / "audit.jsonl")[0].unlink()
    assert cli.main(["audit", "--state-dir", str(state), "verify"]) == 1


def test_beyond_keep_files_the_oldest_rotated_files_are_deleted_and_the_chain_still_verifies(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, max_bytes=1024, keep_files=3)
    for i in range(120):
        log.append("probe", i=i, pad="x" * 100)
    rotated = rotated_files(path)
    assert len(rotated) == 3 and rotated[0].name != "audit.jsonl.1"
    pruned = [r for r in iter_records(path) if r["event"] == "audit_pruned"]
    assert pruned and pruned[-1]["through_seq"] + 1 == next(iter_records(path))["seq"]
    report = verify(path)
    assert report.ok and report.files == 4


def test_verify_detects_a_kept_rotated_file_deleted_after_pruning(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, max_bytes=1024, keep_files=3)
    for i in range(120):
        log.append("probe", i=i, pad="x" * 100)
    oldest = rotated_files(path)[0]
    oldest.unlink()  # no audit_pruned record vouches for it
    report = verify(path)
    assert not report.ok and report.problem == "deleted"


def test_verify_detects_the_oldest_rotated_file_deleted_without_pruning(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    filled_log(path, 60)
    rotated_files(path)[0].unlink()
    report = verify(path)
    assert not report.ok and report.problem == "deleted"
