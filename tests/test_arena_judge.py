"""The arena's trial() with a strategy's judge hook and per-trial signatures, through the real MCP
tools over a service whose kernel is a fake tree (no host knob is written)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from mcp import Client

from lumos_mcp.agents.tools import ToolClient
from lumos_mcp.arena import runner
from lumos_mcp.arena.problems import KnobRange, Problem
from lumos_mcp.arena.runner import Judge, Measurement, TrialContext, TrialRecord, arena_service_config, trial
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.server import build_server
from lumos_mcp.service import Service
from lumos_mcp.telemetry import Telemetry
from tests.telemetry.telemetry_helpers import FakeClock

pytestmark = pytest.mark.anyio
KNOB = "cgroup.batch.cpu_shares"
PROBLEM = Problem("t", "t", (KnobRange(KNOB, "int_log", 2, 8192, 1024, (64, 1024, 4096)),))
STAT = (
    "cpu  {u} 0 0 {i} 0 0 0 0 0 0\ncpu0 {u} 0 0 {i} 0 0 0 0 0 0\n"
    "ctxt {c}\nprocesses 1\nprocs_running 1\nprocs_blocked 0\n"
)


def _measurement(objective: float, span: tuple[float, float] | None = (1001.5, 1004.5)) -> Measurement:
    return Measurement(objective, 900.0, 500.0, 10000.0, (0.0,), 0, (), span_unix_s=span)


class FakeArena:
    """Stands in for the live `Arena`: each measure() returns the next prepared measurement."""

    def __init__(self, measurements: list[Measurement]) -> None:
        self.phase = 0
        self.measurements = list(measurements)

    def measure(self, repeats: int | None = None) -> Measurement:
        return self.measurements.pop(0)


class FixedJudge:
    def __init__(self, *verdicts: bool) -> None:
        self.verdicts = list(verdicts)
        self.seen: list[TrialRecord] = []
        self.actions: list[str] = []

    async def judge(self, record: TrialRecord, tools: ToolClient) -> bool:
        self.seen.append(record)
        self.actions.append(record.action)
        return self.verdicts.pop(0)


class FailingJudge:
    async def judge(self, record: TrialRecord, tools: ToolClient) -> bool:
        raise RuntimeError("judge broke")


@asynccontextmanager
async def context(
    service: Service, measurements: list[Measurement], telemetry: Telemetry | None = None
) -> AsyncIterator[TrialContext]:
    async with Client(build_server(service)) as client:
        yield TrialContext(
            PROBLEM,
            FakeArena(measurements),  # type: ignore[arg-type]
            ToolClient(client),
            baseline_eps=[10000.0],
            current={KNOB: 1024},
            telemetry=telemetry,
        )


@pytest.fixture(autouse=True)
def _no_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "SETTLE_S", 0.0)


@pytest.fixture
def service(make_service: Callable[..., Service]) -> Service:
    return make_service(policy="arena", cgroups=("batch",))


def shares(service: Service) -> int:
    return int(str(service.backend.read(KNOB).value))


async def test_a_judge_that_says_revert_overrides_a_better_true_metric(service: Service) -> None:
    judge = FixedJudge(False)
    async with context(service, [_measurement(0.0)]) as ctx:
        with anyio.fail_after(10):
            rec = await trial(ctx, {KNOB: 64}, strategy=judge)
    assert judge.actions == ["pending"]
    assert rec.action == "revert" and rec.decided_by == "strategy"
    assert shares(service) == 1024 and ctx.current == {KNOB: 1024}
    assert ctx.incumbent_objective == math.inf


async def test_a_judge_that_says_keep_commits_a_worse_true_metric_and_moves_the_incumbent(service: Service) -> None:
    judge = FixedJudge(True, False)
    async with context(service, [_measurement(0.5), _measurement(0.0)]) as ctx:
        with anyio.fail_after(10):
            kept = await trial(ctx, {KNOB: 4096}, strategy=judge)
            assert kept.action == "commit" and kept.decided_by == "strategy"
            assert shares(service) == 4096 and ctx.current == {KNOB: 4096}
            assert ctx.incumbent_objective == 0.5  # what runs now, whatever the strategy was told
            dropped = await trial(ctx, {KNOB: 64}, strategy=judge)
    assert dropped.action == "revert" and shares(service) == 4096
    assert ctx.current == {KNOB: 4096} and ctx.incumbent_objective == 0.5


async def test_without_a_judge_the_true_metric_decides(service: Service) -> None:
    async with context(service, [_measurement(0.3), _measurement(0.4)]) as ctx:
        with anyio.fail_after(10):
            first = await trial(ctx, {KNOB: 64}, strategy=object())
            second = await trial(ctx, {KNOB: 4096})
    assert (first.action, first.decided_by) == ("commit", "metric")
    assert (second.action, second.decided_by) == ("revert", "metric")
    assert shares(service) == 64 and ctx.incumbent_objective == 0.3


async def test_a_trial_measured_in_place_is_not_judged(service: Service) -> None:
    judge = FixedJudge()
    async with context(service, [_measurement(0.2)]) as ctx:
        with anyio.fail_after(10):
            rec = await trial(ctx, {KNOB: 1024}, strategy=judge)
    assert rec.action == "unchanged" and rec.decided_by is None and not judge.seen
    assert ctx.incumbent_objective == 0.2


async def test_a_judge_that_fails_leaves_the_trial_reverted(service: Service) -> None:
    async with context(service, [_measurement(0.0)]) as ctx:
        with anyio.fail_after(10), pytest.raises(RuntimeError, match="judge broke"):
            await trial(ctx, {KNOB: 64}, strategy=FailingJudge())
    assert shares(service) == 1024 and ctx.current == {KNOB: 1024}
    assert not [t for t in service.txns.transactions() if t.state.value == "applied"]


def test_a_strategy_with_a_judge_method_is_a_judge_and_others_are_not() -> None:
    assert isinstance(FixedJudge(), Judge) and not isinstance(object(), Judge)


def _telemetry(tmp_path: Path) -> Telemetry:
    """Samples at wall 1000..1006, one a second, 1000 context switches a second."""
    fake = FakeKernel(tmp_path / "tele")
    clock = FakeClock()
    telemetry = Telemetry(fake.root, clock=clock, wall_clock=clock)
    for n in range(7):
        fake.file("proc/stat", STAT.format(u=100 * n, i=100 * n, c=1000 * n))
        telemetry.sampler.sample_once()
        clock.advance(1.0)
    return telemetry


async def test_every_trial_records_the_signature_of_its_measurement_span(service: Service, tmp_path: Path) -> None:
    telemetry = _telemetry(tmp_path)
    judge = FixedJudge(False)
    measurements = [_measurement(0.1, (1001.5, 1004.5)), _measurement(0.1, (1002.5, 1003.5)), _measurement(0.1, None)]
    async with context(service, measurements, telemetry) as ctx:
        with anyio.fail_after(10):
            judged = await trial(ctx, {KNOB: 64}, strategy=judge)
            short = await trial(ctx, {KNOB: 1024})
            unknown = await trial(ctx, {KNOB: 1024})
    sig = judge.seen[0].signature
    assert sig is not None and judged.signature == sig and judged.signature_error is None
    assert (sig["start_unix_s"], sig["end_unix_s"], sig["samples_used"]) == (1002.0, 1004.0, 3)
    assert sig["sched"]["ctx_switches_per_s"] == pytest.approx(1000.0)
    assert short.signature is None and str(short.signature_error).startswith("telemetry_not_ready")
    assert unknown.signature is None and unknown.signature_error
    assert judged.as_dict()["signature"]["samples_used"] == 3


async def test_without_telemetry_a_trial_says_why_it_has_no_signature(service: Service) -> None:
    async with context(service, [_measurement(0.1)]) as ctx:
        with anyio.fail_after(10):
            rec = await trial(ctx, {KNOB: 1024})
    assert rec.signature is None and rec.signature_error == "no telemetry in this trial context"


def test_the_arena_service_watches_the_victim_and_the_batch_job_with_perf_at_half_a_second(tmp_path: Path) -> None:
    problem = Problem(
        "t", "t", (KnobRange("cgroup.p/neighbour.cpu_shares", "int_log", 2, 8192, 1024, (2,)),), parent="p"
    )
    config = arena_service_config(tmp_path, problem)
    assert config.cgroups == ("p/neighbour",)
    assert set(config.telemetry_cgroups) == {"p/victim", "p/batch"}
    assert config.perf and config.telemetry_interval_s == 0.5


def test_telemetry_cgroups_are_sampled_but_their_knobs_are_not_listed(make_service: Callable[..., Service]) -> None:
    service = make_service(policy="arena", cgroups=("batch",), telemetry_cgroups=("victim",))
    assert service.telemetry.sampler.cgroups == ("batch", "victim")
    listed = {t.ref.id for t in service.tunables()}
    assert not any("victim" in k for k in listed) and any("batch" in k for k in listed)
