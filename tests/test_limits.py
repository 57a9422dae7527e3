"""Limits that survive a restart and cannot be sidestepped (issue 19 item 5): cooldowns and
commits_per_hour are rebuilt from the audit log, commits_per_hour holds at apply and at
commit, and rules follow the kernel file, not the knob id that names it."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from lumos_mcp.audit import AuditLog, rotated_files
from lumos_mcp.errors import LumosError, PolicyDeniedError
from lumos_mcp.history import audit_records_since, rebuild
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.policy import Change, Policy, evaluate, evaluate_commit, parse_policy
from lumos_mcp.service import Service

SHARES = "sys/fs/cgroup/cpu/batch/cpu.shares"

RATE_POLICY = """
name = "rate"
[global]
commits_per_hour = 2
max_confirm_within_s = 7200
[knobs."vm.swappiness"]
min = 0
max = 200
max_step_ratio = 10.0
approval = "never"
[knobs."vm.vfs_cache_pressure"]
min = 1
max = 1000
max_step_ratio = 10.0
approval = "never"
[knobs."vm.dirty_expire_centisecs"]
min = 100
max = 60000
max_step_ratio = 10.0
approval = "never"
"""


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _rules(verdict_or_error: object) -> list[str]:
    if isinstance(verdict_or_error, LumosError):
        return [d["rule"] for d in verdict_or_error.fields["denials"]]
    return [d.rule for d in verdict_or_error.denials]  # type: ignore[attr-defined]


def _policy(text: str) -> Policy:
    return parse_policy(tomllib.loads(text))


def _rate_policy(tmp_path: Path) -> str:
    path = tmp_path / "rate.toml"
    path.write_text(RATE_POLICY)
    return str(path)


def _restart(old: Service, make_service: Callable[..., Service], **kw: object) -> Service:
    old.close()
    return make_service(**kw)


def _apply_commit(service: Service, change: dict[str, object], approve: bool = False) -> str:
    staged = service.stage(change)
    assert staged.verdict.allowed, staged.verdict.denials
    approval = None
    if approve:
        approval = service.request_approval(staged.tx.id).id
        service.decide_approval(approval, True, by="test")
    service.apply(staged.tx.id, approval_id=approval)
    service.commit(staged.tx.id)
    return staged.tx.id


# ------------------------------------------------------------------ restart
def test_a_restarted_server_still_enforces_the_cooldown(make_service: Callable[..., Service]) -> None:
    clock = Clock()
    first = make_service(clock=clock)
    _apply_commit(first, {"cgroup.batch.cpu_shares": 1536})
    clock.now += 2
    second = _restart(first, make_service, clock=clock)

    denied = second.stage({"cgroup.batch.cpu_shares": 2048}).verdict
    assert _rules(denied) == ["cooldown"]
    assert denied.denials[0].limit == 10.0

    clock.now += 10
    assert second.stage({"cgroup.batch.cpu_shares": 2048}).verdict.allowed


def test_a_restarted_server_still_counts_commits_per_hour(make_service: Callable[..., Service], tmp_path: Path) -> None:
    clock = Clock()
    policy = _rate_policy(tmp_path)
    first = make_service(clock=clock, policy=policy)
    _apply_commit(first, {"vm.swappiness": 30})
    _apply_commit(first, {"vm.vfs_cache_pressure": 50})
    second = _restart(first, make_service, clock=clock, policy=policy)

    verdict = second.stage({"vm.dirty_expire_centisecs": 2000}).verdict
    assert [(d.rule, d.value, d.limit) for d in verdict.denials] == [("commits_per_hour", 3, 2)]

    clock.now += 3601
    third = _restart(second, make_service, clock=clock, policy=policy)
    assert third.stage({"vm.dirty_expire_centisecs": 2000}).verdict.allowed


def test_a_sandbox_change_does_not_cool_the_same_knob_in_live_mode(make_service: Callable[..., Service]) -> None:
    clock = Clock()
    sandbox = make_service(mode="sandbox", clock=clock)
    _apply_commit(sandbox, {"cgroup.batch.cpu_shares": 1536})
    live = _restart(sandbox, make_service, clock=clock)
    assert live.stage({"cgroup.batch.cpu_shares": 1536}).verdict.allowed


def test_the_history_is_read_from_the_end_of_a_long_audit_log(
    make_service: Callable[..., Service], tmp_path: Path
) -> None:
    clock = Clock()
    service = make_service(clock=clock)
    for n in range(300):
        service.audit.append("note", n=n, padding="x" * 400)  # about 150 KB: several read blocks
    clock.now += 7200
    service.audit.append("note", n="recent")
    records = audit_records_since(service.audit.path, clock.now - 60)
    assert [r.get("n") for r in records] == ["recent"]
    assert audit_records_since(tmp_path / "missing.jsonl", 0.0) == []


def test_the_history_reads_on_into_rotated_audit_files_while_they_are_recent(tmp_path: Path) -> None:
    clock = Clock()
    log = AuditLog(tmp_path / "audit.jsonl", clock=clock, max_bytes=2000)
    log.append("note", n="old")
    clock.now += 7200
    for n in range(20):  # about 300 bytes each: several rotations inside the last minute
        log.append("note", n=n, padding="x" * 200)
    assert rotated_files(log.path)
    records = audit_records_since(log.path, clock.now - 60)
    assert [r.get("n") for r in records] == list(range(20))


# ------------------------------------------------------------------ commits_per_hour
def test_commits_per_hour_refuses_the_third_change_with_a_limit_of_two(
    make_service: Callable[..., Service], tmp_path: Path
) -> None:
    service = make_service(clock=Clock(), policy=_rate_policy(tmp_path))
    _apply_commit(service, {"vm.swappiness": 30})
    _apply_commit(service, {"vm.vfs_cache_pressure": 50})
    verdict = service.stage({"vm.dirty_expire_centisecs": 2000}).verdict
    assert [(d.rule, d.value, d.limit) for d in verdict.denials] == [("commits_per_hour", 3, 2)]


def test_changes_staged_together_cannot_apply_past_commits_per_hour(
    make_service: Callable[..., Service], fake: FakeKernel, tmp_path: Path
) -> None:
    service = make_service(clock=Clock(), policy=_rate_policy(tmp_path))
    staged = [
        service.stage({"vm.swappiness": 30}),
        service.stage({"vm.vfs_cache_pressure": 50}),
        service.stage({"vm.dirty_expire_centisecs": 2000}),
    ]
    assert all(s.verdict.allowed for s in staged)
    service.apply(staged[0].tx.id)
    service.apply(staged[1].tx.id)
    with pytest.raises(PolicyDeniedError) as refused:
        service.apply(staged[2].tx.id)
    assert refused.value.code == "policy_denied"
    assert [(d["rule"], d["value"], d["limit"]) for d in refused.value.fields["denials"]] == [
        ("commits_per_hour", 3, 2)
    ]
    assert fake.read("proc/sys/vm/dirty_expire_centisecs").strip() == "3000"


def test_commits_per_hour_holds_at_commit_for_changes_applied_over_more_than_an_hour(
    make_service: Callable[..., Service], tmp_path: Path
) -> None:
    clock = Clock()
    service = make_service(clock=clock, policy=_rate_policy(tmp_path))
    first = service.stage({"vm.swappiness": 30}, confirm_within_s=7000)
    second = service.stage({"vm.vfs_cache_pressure": 50}, confirm_within_s=7000)
    service.apply(first.tx.id)
    service.apply(second.tx.id)
    clock.now += 3601
    third = service.stage({"vm.dirty_expire_centisecs": 2000})
    service.apply(third.tx.id)
    service.commit(first.tx.id)
    service.commit(second.tx.id)
    with pytest.raises(PolicyDeniedError) as refused:
        service.commit(third.tx.id)
    assert [(d["rule"], d["value"], d["limit"]) for d in refused.value.fields["denials"]] == [
        ("commits_per_hour", 3, 2)
    ]
    assert service.txns.get(third.tx.id).state.value == "applied"  # still armed: its deadline decides


def test_evaluate_commit_allows_up_to_the_limit_and_names_the_count_beyond_it() -> None:
    policy = _policy(RATE_POLICY)

    class Commits:
        def __init__(self, times: list[float]) -> None:
            self.times = times

        def committed_since(self, ts: float) -> int:
            return sum(1 for t in self.times if t >= ts)

    assert evaluate_commit(policy, history=Commits([100.0]), now=200.0).allowed
    verdict = evaluate_commit(policy, history=Commits([100.0, 150.0]), now=200.0)
    assert [(d.rule, d.value, d.limit) for d in verdict.denials] == [("commits_per_hour", 3, 2)]
    assert evaluate_commit(policy, history=Commits([100.0, 150.0]), now=3700.5).allowed


# ------------------------------------------------------------------ aliases of one file
def test_an_alias_of_a_file_changed_within_the_cooldown_is_denied(make_service: Callable[..., Service]) -> None:
    clock = Clock()
    service = make_service(clock=clock)
    _apply_commit(service, {"cgroup.batch.cpu_weight": 150})  # cpu.shares 1024 -> 1536
    clock.now += 0.03
    verdict = service.stage({"cgroup.batch.cpu_shares": 2304}).verdict
    assert _rules(verdict) == ["cooldown"]
    assert verdict.denials[0].knob == "cgroup.batch.cpu_shares"


def test_the_cooldown_of_an_alias_survives_a_restart(make_service: Callable[..., Service]) -> None:
    clock = Clock()
    first = make_service(clock=clock)
    _apply_commit(first, {"cgroup.batch.cpu_shares": 1536})
    second = _restart(first, make_service, clock=clock)
    assert _rules(second.stage({"cgroup.batch.cpu_weight": 200}).verdict) == ["cooldown"]


def test_the_step_of_an_alias_is_measured_from_the_file_another_alias_wrote(
    make_service: Callable[..., Service], fake: FakeKernel
) -> None:
    clock = Clock()
    service = make_service(clock=clock)
    _apply_commit(service, {"cgroup.batch.cpu_shares": 1536})
    clock.now += 11
    # cpu_weight reads the file: 1536 shares is weight 150, so 225 is a step of 0.5 (no approval) ...
    small = service.stage({"cgroup.batch.cpu_weight": 225})
    assert small.tx.changes[0].before == 150
    assert small.verdict.allowed and not small.verdict.approval_required
    # ... and 300 a step of 1.0, above the approval threshold of 0.5.
    assert service.stage({"cgroup.batch.cpu_weight": 300}).verdict.approval_required
    assert fake.read(SHARES).strip() == "1536"


def test_one_change_naming_both_aliases_of_a_file_is_refused(
    make_service: Callable[..., Service], fake: FakeKernel
) -> None:
    service = make_service()
    with pytest.raises(LumosError):
        service.stage({"cgroup.batch.cpu_weight": 110, "cgroup.batch.cpu_shares": 1200})
    assert fake.read(SHARES).strip() == "1024"


def test_the_engine_refuses_two_knob_ids_that_write_one_file() -> None:
    policy = _policy(
        """
name = "aliases"
[knobs."cgroup.*.cpu_weight"]
min = 1
max = 1000
approval = "never"
[knobs."cgroup.*.cpu_shares"]
min = 2
max = 10240
approval = "never"
"""
    )

    class Empty:
        def last_change_at(self, key: str) -> float | None:
            return None

        def commits_since(self, ts: float) -> int:
            return 0

    changes = [
        Change("cgroup.g.cpu_weight", "int", 100, 110, files=(SHARES,)),
        Change("cgroup.g.cpu_shares", "int", 1024, 1200, files=(SHARES,)),
    ]
    verdict = evaluate(policy, changes, current={}, history=Empty(), now=0.0)
    assert [(d.rule, d.knob, d.value, d.limit) for d in verdict.denials] == [
        ("duplicate_knob", "cgroup.g.cpu_shares", 2, 1)
    ]
    one = evaluate(policy, changes[:1], current={}, history=Empty(), now=0.0)
    assert one.allowed


def test_the_engine_judges_the_cooldown_by_the_file_whichever_alias_wrote_it() -> None:
    policy = _policy(
        """
name = "aliases"
[knobs."cgroup.*.cpu_shares"]
min = 2
max = 10240
approval = "never"
cooldown_s = 10
"""
    )

    class ByFile:
        def last_change_at(self, key: str) -> float | None:
            return {SHARES: 95.0}.get(key)

        def commits_since(self, ts: float) -> int:
            return 0

    change = Change("cgroup.g.cpu_shares", "int", 1536, 2304, files=(SHARES,))
    verdict = evaluate(policy, [change], current={}, history=ByFile(), now=100.0)
    assert [(d.rule, d.value, d.limit) for d in verdict.denials] == [("cooldown", 5.0, 10.0)]
    assert evaluate(policy, [change], current={}, history=ByFile(), now=105.0).allowed


def test_an_alias_cannot_take_over_a_speculative_move_on_the_same_file(
    make_service: Callable[..., Service], fake: FakeKernel
) -> None:
    clock = Clock()
    service = make_service(clock=clock)
    move = service.stage({"cgroup.batch.cpu_weight": 110}, speculative=True)
    service.apply(move.tx.id)
    clock.now += 20
    staged = service.stage({"cgroup.batch.cpu_shares": 1300})
    assert staged.verdict.allowed
    with pytest.raises(LumosError) as refused:
        service.apply(staged.tx.id)
    assert refused.value.code == "conflict"
    assert fake.read(SHARES).strip() == "1126"  # the speculative move's value, still its to revert


def test_rebuild_counts_records_without_a_mode_and_skips_other_modes_and_speculative_slots() -> None:
    records = [
        {"ts": 100.0, "event": "apply", "tx": "tx-a", "values": {"vm.swappiness": 30}},  # before modes were named
        {"ts": 110.0, "event": "apply", "tx": "tx-b", "mode": "sandbox", "files": {"vm.swappiness": ["f/b"]}},
        {"ts": 120.0, "event": "apply", "tx": "tx-c", "mode": "live", "speculative": True, "files": {"k": ["f/c"]}},
        {"ts": 130.0, "event": "commit", "tx": "tx-a", "mode": "live"},
        {"ts": 10.0, "event": "apply", "tx": "tx-old", "mode": "live", "files": {"k": ["f/old"]}},
    ]
    histories = rebuild(records, mode="live", since=50.0, files_of=lambda knob: (f"resolved/{knob}",))
    assert histories.agent.last_change_at("resolved/vm.swappiness") == 100.0
    assert histories.agent.last_change_at("f/b") is None
    assert histories.agent.last_change_at("f/c") is None and histories.every.last_change_at("f/c") == 120.0
    assert histories.agent.last_change_at("f/old") is None
    assert histories.agent.commits_since(50.0) == 1  # tx-a, applied and committed, counts once
    assert histories.agent.committed_since(50.0) == 1
