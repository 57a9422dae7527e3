"""The built-in expert agent runs the whole loop over MCP and leaves a verifiable audit log."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest
from mcp import Client

from lumos_mcp.agents.expert import (
    LATENCY_BASELINE,
    Evidence,
    ExpertAgent,
    RoundLog,
    approval_callback,
    propose,
    run_tune,
)
from lumos_mcp.agents.tools import ToolCallError
from lumos_mcp.audit import iter_records, verify
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.server import build_server
from lumos_mcp.service import Service, ServiceConfig
from lumos_mcp.txn import TxState

pytestmark = pytest.mark.anyio


def tunable(knob: str, value: int, **policy: Any) -> dict[str, Any]:
    return {"id": knob, "state": "available", "value": value, "policy": {"allowed": True, **policy}}


async def test_tune_runs_a_full_loop_in_sandbox_and_the_audit_log_verifies(tmp_path: Path, fake: FakeKernel) -> None:
    config = ServiceConfig(
        mode="sandbox",
        state_dir=tmp_path / "state",
        host_root=fake.base,
        telemetry_root=Path("/"),
        telemetry_interval_s=0.2,
        perf=False,
        cgroups=("batch",),
    )
    with anyio.fail_after(60):
        code = await run_tune(config, rounds=2, window_s=0.6, live_view=False)
    assert code == 0
    events = [r["event"] for r in iter_records(tmp_path / "state" / "audit.jsonl")]
    assert "stage" in events and "apply" in events and ("commit" in events or "revert" in events)
    assert "approval_granted" in events  # the latency policy asks; the sandbox agent's client answers
    assert verify(tmp_path / "state" / "audit.jsonl").ok
    # the host (here: the fake host the sandbox was seeded from) is untouched
    assert fake.read("proc/sys/vm/dirty_background_ratio").strip() == "10"


async def test_tune_stopped_mid_round_reverts_the_change_it_left_armed(
    tmp_path: Path, fake: FakeKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def apply_then_stop(self: ExpertAgent, rounds: int) -> list[RoundLog]:
        staged = await self.tools.call("stage_sched_params", {"changes": {"kernel.sched_rr_timeslice_ms": 150}})
        await self.tools.call("apply", {"txid": staged["txid"]})
        raise RuntimeError("stopped while the change is armed")  # as Ctrl-C or any error would

    monkeypatch.setattr(ExpertAgent, "run", apply_then_stop)
    config = ServiceConfig(
        mode="sandbox",
        state_dir=tmp_path / "state",
        host_root=fake.base,
        telemetry_root=Path("/"),
        perf=False,
        cgroups=("batch",),
    )
    with anyio.fail_after(30), pytest.raises(BaseExceptionGroup) as stopped:
        await run_tune(config, rounds=1, window_s=0.6, live_view=False)
    assert stopped.group_contains(RuntimeError, match="armed", depth=None)
    sandbox = tmp_path / "state" / "sandbox" / "proc" / "sys" / "kernel" / "sched_rr_timeslice_ms"
    assert sandbox.read_text().strip() == "100"
    reverts = [r for r in iter_records(tmp_path / "state" / "audit.jsonl") if r["event"] == "auto_revert"]
    assert [r["reason"] for r in reverts] == ["server_exit"]


def test_cpu_contention_lowers_the_batch_weight_within_the_policy_step() -> None:
    sig = {"psi": {"cpu": {"some": {"avg10_pct": 40.0}}}}
    p = propose(sig, [tunable("cgroup.batch.cpu_weight", 100, min=1, max=1000, max_step_ratio=0.5)], set())
    assert p is not None and p.rule == "cpu-contention" and p.changes == {"cgroup.batch.cpu_weight": 50}


def test_a_quiet_host_gets_only_the_baseline_and_never_breaks_the_dirty_ratio_order() -> None:
    sig = {"psi": {"cpu": {"some": {"avg10_pct": 0.1}}}}
    knobs = [
        tunable("cgroup.batch.cpu_weight", 100, min=1, max=1000),
        tunable("vm.dirty_background_ratio", 10, min=1, max=40),
        tunable("vm.dirty_ratio", 20, min=5, max=50),
    ]
    first = propose(sig, knobs, set())
    assert first is not None and first.rule == "latency-baseline"
    assert first.changes == {"vm.dirty_background_ratio": LATENCY_BASELINE["vm.dirty_background_ratio"]}
    second = propose(sig, knobs, {"vm.dirty_background_ratio"})
    assert second is not None and second.changes["vm.dirty_ratio"] > 10  # stays above background (10)


def test_no_rule_fires_when_nothing_is_allowed() -> None:
    assert propose({}, [], set()) is None


class ScriptedAgent(ExpertAgent):
    """The expert agent over a real server, with scripted measurements (objective per window)."""

    def __init__(self, client: Client, windows: list[list[float]], signature: dict[str, Any]) -> None:
        super().__init__(client, 0.1, self.events.append, use_ranker=False)
        self.windows = windows
        self.signature = signature

    events: ClassVar[list[str]] = []

    async def measure(self, label: str) -> tuple[list[float], dict[str, Any] | None]:
        return self.windows.pop(0), self.signature


QUIET = {"psi": {"cpu": {"some": {"avg10_pct": 0.1}}}}
TEST_POLICY = str(Path(__file__).resolve().parent / "data" / "policy-test.toml")


async def run_scripted(service: Service, windows: list[list[float]], rounds: int = 1) -> list[RoundLog]:
    async with Client(build_server(service), elicitation_callback=approval_callback("sandbox")) as client:
        with anyio.fail_after(30):
            return await ScriptedAgent(client, windows, QUIET).run(rounds)


async def test_a_change_whose_objective_got_worse_is_reverted_and_the_summary_says_why(
    make_service: Callable[..., Service],
) -> None:
    service = make_service(policy=TEST_POLICY)
    [log] = await run_scripted(service, [[4.8, 4.87, 4.9], [5.9, 5.97, 6.0]])
    assert log.proposal is not None and log.proposal.changes == {"vm.swappiness": 10}
    assert log.outcome == "reverted"
    assert log.evidence is not None and log.evidence.verdict == "worse"
    assert "5.97" in log.why and "4.87" in log.why  # the medians, rounded for people
    assert service.txns.get(log.txid or "").state is TxState.REVERTED


async def test_a_change_that_looks_better_without_evidence_is_measured_again_then_reverted(
    make_service: Callable[..., Service],
) -> None:
    service = make_service(policy=TEST_POLICY)
    windows = [[4.0, 5.0, 6.0], [4.2, 4.5, 4.6], [4.3, 4.4, 4.6]]  # better by 0.5; the baseline spans 2.0
    [log] = await run_scripted(service, windows)
    assert windows == []  # before, after, and after once more
    assert log.evidence is not None and log.evidence.verdict == "no evidence"
    assert len(log.after_windows) == 6
    assert log.outcome == "reverted"
    assert service.txns.get(log.txid or "").state is TxState.REVERTED


async def test_a_change_that_looks_no_better_without_evidence_is_reverted_without_measuring_again(
    make_service: Callable[..., Service],
) -> None:
    service = make_service(policy=TEST_POLICY)
    windows = [[4.0, 5.0, 6.0], [4.5, 5.5, 6.5], [1.0, 1.0, 1.0]]
    [log] = await run_scripted(service, windows)
    assert windows == [[1.0, 1.0, 1.0]]  # the third set was never measured
    assert log.evidence is not None and log.evidence.verdict == "no evidence"
    assert log.outcome == "reverted"


async def test_more_windows_can_turn_no_evidence_into_a_committed_change(
    make_service: Callable[..., Service],
) -> None:
    service = make_service(policy=TEST_POLICY)
    [log] = await run_scripted(service, [[5.0, 5.1, 5.2], [4.5, 4.6, 5.3], [3.9, 4.0, 4.1]])
    assert log.evidence is not None and log.evidence.verdict == "better"
    assert log.outcome == "committed"
    assert service.txns.get(log.txid or "").state is TxState.COMMITTED
    assert len(log.after_windows) == 6


async def test_a_change_that_beats_the_baselines_noise_is_committed(make_service: Callable[..., Service]) -> None:
    service = make_service(policy=TEST_POLICY)
    [log] = await run_scripted(service, [[5.0, 5.1, 5.2], [3.0, 3.1, 3.2]])
    assert log.evidence is not None and log.evidence.verdict == "better"
    assert log.outcome == "committed"
    assert service.txns.get(log.txid or "").state is TxState.COMMITTED


async def test_round_two_picks_a_knob_that_is_not_cooling_down_instead_of_being_denied(
    make_service: Callable[..., Service],
) -> None:
    service = make_service(policy="latency")  # dirty ratios: cooldown 60 s
    better = [[5.0, 5.1, 5.2], [3.0, 3.1, 3.2]]
    first, second = await run_scripted(service, better + better, rounds=2)
    assert first.outcome == second.outcome == "committed"
    assert first.proposal is not None and second.proposal is not None
    assert set(first.proposal.changes).isdisjoint(second.proposal.changes)


class FailingAfterAgent(ScriptedAgent):
    """Measures before, then the server refuses the measurement after the change (a loaded host)."""

    async def measure(self, label: str) -> tuple[list[float], dict[str, Any] | None]:
        if label == "after":
            raise ToolCallError("read_telemetry", "telemetry_not_ready", "the sampler is behind")
        return await super().measure(label)


async def test_a_tool_error_after_apply_reverts_the_change_instead_of_leaving_it_armed(
    make_service: Callable[..., Service],
) -> None:
    service = make_service(policy=TEST_POLICY)
    async with Client(build_server(service), elicitation_callback=approval_callback("sandbox")) as client:
        with anyio.fail_after(30):
            [log] = await FailingAfterAgent(client, [[5.0, 5.1, 5.2]], QUIET).run(1)
    assert log.outcome == "refused: telemetry_not_ready"
    assert service.txns.get(log.txid or "").state is TxState.REVERTED


class SlowSampler(ExpertAgent):
    """``read_telemetry`` answers telemetry_not_ready ``lag`` times, then a signature."""

    def __init__(self, lag: int) -> None:
        super().__init__(None, 0.1, lambda _: None)  # type: ignore[arg-type]
        self.lag = lag
        self.asked = 0

    async def call(self, tool: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        self.asked += 1
        if self.asked <= self.lag:
            raise ToolCallError(tool, "telemetry_not_ready", "one sample so far")
        return {"signature": QUIET}


async def test_measuring_waits_for_a_sampler_that_is_behind_but_not_forever(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lumos_mcp.agents.expert.NOT_READY_WAIT_S", 0.0)
    behind = SlowSampler(lag=2)
    behind.repeats = 1
    values, _ = await behind.measure("before")
    assert values == [0.1] and behind.asked == 3
    stuck = SlowSampler(lag=10)
    stuck.repeats = 1
    with pytest.raises(ToolCallError) as raised:
        await stuck.measure("before")
    assert raised.value.code == "telemetry_not_ready" and stuck.asked == 4


@pytest.mark.parametrize(
    ("before", "after", "verdict"),
    [
        ([4.8, 4.87, 4.9], [5.9, 5.97, 6.0], "worse"),
        ([4.8, 4.87, 4.9], [4.5, 4.6, 4.7], "better"),
        ([4.0, 4.87, 6.0], [4.5, 4.6, 4.7], "no evidence"),
        ([2.0, 2.0, 2.0], [1.95, 1.96, 1.97], "no evidence"),  # identical windows still need a 2% move
        ([4.8, 4.87], [3.0, 3.1], "no evidence"),  # two windows a side cannot carry a verdict
    ],
)
def test_the_keep_rule_is_the_compare_verdict_on_the_windows_beyond_a_minimum_effect(
    before: list[float], after: list[float], verdict: str
) -> None:
    evidence = Evidence.judge(before, after)
    assert evidence.verdict == verdict
    assert evidence.comparison.statistic == "median" and evidence.comparison.lower_is_better


def test_the_agents_tool_client_reads_an_error_code_from_the_text_when_there_is_no_structured_content() -> None:
    from mcp.types import CallToolResult, TextContent

    from lumos_mcp.api import tool_error

    text = '{"error": {"code": "policy_denied", "message": "no", "fields": {"knob": "vm.swappiness"}}}'
    result = CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
    error = tool_error(result)
    assert error is not None
    assert (error.code, error.fields) == ("policy_denied", {"knob": "vm.swappiness"})
