"""Re-apply (issue 14 item 4): the committed state goes back through the ordinary path (policy,
approval, journal, audit); what the policy no longer allows is reported, not written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from lumos_mcp.audit import iter_records
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.persist.reapply import reapply
from lumos_mcp.service import Service

POLICY = Path(__file__).parent / "data" / "persist-policy.toml"
SWAPPINESS = "proc/sys/vm/swappiness"
DIRTY_RATIO = "proc/sys/vm/dirty_ratio"


def commit(service: Service, change: dict[str, object]) -> str:
    return service.commit(service.apply(service.stage(change).tx.id).id).id


def policy_with(tmp_path: Path, old: str, new: str) -> str:
    text = POLICY.read_text()
    assert old in text
    path = tmp_path / "changed-policy.toml"
    path.write_text(text.replace(old, new))
    return str(path)


def test_reapply_puts_lost_knobs_back_as_one_journaled_audited_commit_and_leaves_the_rest(
    make_service: Callable[..., Service], fake: FakeKernel
) -> None:
    service = make_service(policy=str(POLICY))
    first = commit(service, {"vm.swappiness": 10, "vm.dirty_ratio": 30})
    fake.root.write_text(SWAPPINESS, "60")
    report = reapply(service)
    assert report.complete and report.tx is not None
    assert [(k.knob, k.outcome) for k in report.knobs] == [
        ("vm.dirty_ratio", "in_place"),
        ("vm.swappiness", "reapplied"),
    ]
    assert fake.read(SWAPPINESS) == "10\n"
    events = [(r["event"], r.get("actor")) for r in iter_records(service.audit.path) if r.get("tx") == report.tx]
    assert ("stage", "reapply") in events and ("apply", "reapply") in events and ("commit", "reapply") in events
    swap = next(k for k in service.committed() if k.knob == "vm.swappiness")
    assert (swap.tx, swap.first_tx, swap.original) == (report.tx, first, 60)
    assert reapply(service).tx is None  # nothing left to do: nothing staged


def test_a_knob_the_policy_no_longer_allows_is_reported_and_not_written(
    make_service: Callable[..., Service], fake: FakeKernel, tmp_path: Path
) -> None:
    service = make_service(policy=str(POLICY))
    commit(service, {"vm.swappiness": 10, "vm.dirty_ratio": 30})
    service.close()
    fake.root.write_text(SWAPPINESS, "60")
    fake.root.write_text(DIRTY_RATIO, "20")
    stricter = policy_with(tmp_path, "max = 90\n", "max = 25\n")  # vm.dirty_ratio's bound
    restarted = make_service(policy=stricter)
    report = reapply(restarted)
    outcomes = {k.knob: k for k in report.knobs}
    assert outcomes["vm.dirty_ratio"].outcome == "refused" and "25" in outcomes["vm.dirty_ratio"].detail
    assert outcomes["vm.swappiness"].outcome == "reapplied"
    assert not report.complete
    assert (fake.read(SWAPPINESS), fake.read(DIRTY_RATIO)) == ("10\n", "20\n")


def test_where_the_policy_asks_for_approval_reapply_waits_for_an_operator_and_writes_nothing_without(
    make_service: Callable[..., Service], fake: FakeKernel, tmp_path: Path
) -> None:
    service = make_service(policy=str(POLICY))
    commit(service, {"vm.swappiness": 10})
    service.close()
    fake.root.write_text(SWAPPINESS, "60")
    asking = policy_with(
        tmp_path, '[knobs."vm.swappiness"]\napproval = "never"', '[knobs."vm.swappiness"]\napproval = "always"'
    )
    restarted = make_service(policy=asking)
    unanswered = reapply(restarted)
    assert [(k.knob, k.outcome) for k in unanswered.knobs] == [("vm.swappiness", "needs_approval")]
    assert unanswered.approval is not None and fake.read(SWAPPINESS) == "60\n"

    def operator_grants(_: float) -> None:
        for approval in restarted.approvals.list(status="pending"):
            restarted.decide_approval(approval.id, grant=True, by="operator")

    answered = reapply(restarted, approval_wait_s=5, sleep=operator_grants)
    assert [(k.knob, k.outcome) for k in answered.knobs] == [("vm.swappiness", "reapplied")]
    assert fake.read(SWAPPINESS) == "10\n"


def test_reapply_on_the_command_line_exits_0_once_the_committed_state_is_back(
    make_service: Callable[..., Service], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lumos_mcp.cli import main

    service = make_service(mode="sandbox", policy=str(POLICY))
    commit(service, {"vm.swappiness": 10})
    service.close()
    state = tmp_path / "state"
    (state / "sandbox" / SWAPPINESS).write_text("60\n")
    args = ["reapply", "--mode", "sandbox", "--policy", str(POLICY), "--state-dir", str(state)]
    assert main(args) == 0
    assert "reapplied" in capsys.readouterr().out
    assert (state / "sandbox" / SWAPPINESS).read_text() == "10\n"
    assert main(["drift", "--mode", "sandbox", "--state-dir", str(state)]) == 0
