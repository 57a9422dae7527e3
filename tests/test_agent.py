"""The built-in expert agent runs the whole loop over MCP and leaves a verifiable audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from lumos_mcp.agents.expert import LATENCY_BASELINE, propose, run_tune
from lumos_mcp.audit import iter_records, verify
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.service import ServiceConfig

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
