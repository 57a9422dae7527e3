"""The arena's 'ranker (zero-mod)' strategy: it keeps or reverts from signatures through rank_configs
(a tiny model trained on the shipped data), never from the true metric; trial() on a fake kernel tree."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

import lumos_mcp.server.ranker as server_ranker
from lumos_mcp.agents.tools import ToolClient
from lumos_mcp.arena import runner
from lumos_mcp.arena.problems import KnobRange, Problem
from lumos_mcp.arena.runner import Measurement, TrialContext, TrialRecord, trial
from lumos_mcp.arena.strategies import RankerArenaStrategy
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.ranker.dataset import WindowRecord
from lumos_mcp.ranker.model import RankerModel
from lumos_mcp.server import build_server
from lumos_mcp.service import Service

pytestmark = pytest.mark.anyio
Trained = tuple[RankerModel, list[WindowRecord]]
KNOB = "cgroup.t/batch.cpu_shares"
PROBLEM = Problem("t", "t", (KnobRange(KNOB, "int_log", 2, 8192, 1024, (64, 1024, 4096)),), parent="t")
TRUE_METRIC = ("measurement", "objective", "feasible")


class BlindRecord(TrialRecord):
    """A trial record whose true metric fails the test when read."""

    def __getattribute__(self, name: str) -> Any:
        if name in TRUE_METRIC:
            raise AssertionError(f"the zero-mod ranker read the true metric ({name})")
        return super().__getattribute__(name)


def blind(index: int, config: dict[str, Any], signature: dict[str, Any], objective: float, **kw: Any) -> TrialRecord:
    m = Measurement(objective, 900.0, 500.0, 1.0, (0.0,), 0, ())
    return BlindRecord(index, config, 0, m, objective, True, "pending", "tx", 0.0, signature=signature, **kw)


def as_arena(features: dict[str, float]) -> dict[str, float]:
    """A training window's signature as the arena names its cgroups (app -> t/victim, other -> t/batch)."""
    renamed = {"cgroups.lumos-arena/app.": "cgroups.t/victim.", "cgroups.lumos-arena/other.": "cgroups.t/batch."}
    out = {}
    for k, v in features.items():
        for old, new in renamed.items():
            k = k.replace(old, new)
        out[k] = v
    return out


@pytest.fixture
def clear_pair(trained: Trained) -> tuple[dict[str, float], dict[str, float], float]:
    """Two training windows the model orders clearly: (better, worse, margin of better over worse)."""
    model, records = trained
    pairs = list(itertools.permutations(range(24), 2))
    x = model.vectors([r.features for r in records[:24]])
    prob, _ = model.prob_pairs(x[[a for a, _ in pairs]], x[[b for _, b in pairs]])  # one batch, not 552 calls
    i = int(prob.argmax())
    better, worse = records[pairs[i][0]].features, records[pairs[i][1]].features
    margin = model.compare(better, worse)[0]
    assert margin >= 0.5
    return better, worse, margin


@pytest.fixture
def model_dir(trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = trained[0].save(tmp_path / "model")
    monkeypatch.setattr(server_ranker, "DEFAULT_MODEL", path)
    return path


@pytest.fixture
def service(fake: FakeKernel, make_service: Callable[..., Service]) -> Service:
    fake.cgroup_v1("t/batch")
    return make_service(policy="arena", cgroups=("t/batch",))


@asynccontextmanager
async def tools(service: Service) -> AsyncIterator[ToolClient]:
    async with Client(build_server(service)) as client:
        yield ToolClient(client)


async def test_the_ranker_keeps_the_challenger_the_model_prefers_and_reverts_the_one_it_does_not(
    service: Service, model_dir: Path, clear_pair: tuple[dict[str, float], dict[str, float], float]
) -> None:
    better, worse, margin = clear_pair
    strategy = RankerArenaStrategy()
    strategy.reset(PROBLEM, 0)
    async with tools(service) as t:
        with anyio.fail_after(30):
            assert await strategy.propose([], t) == {KNOB: 1024}
            strategy.observe({KNOB: 1024}, blind(0, {KNOB: 1024}, as_arena(worse), 0.0))
            # the true metric says the challenger is far worse (objective 0.9 vs 0.0): never read
            assert await strategy.judge(blind(1, {KNOB: 4096}, as_arena(better), 0.9), t) is True
            assert strategy.search.incumbent == {KNOB: 4096}
            assert await strategy.judge(blind(2, {KNOB: 64}, as_arena(worse), 0.0), t) is False
            assert t.calls["rank_configs"] == 2
    assert strategy.search.incumbent == {KNOB: 4096}
    first = strategy.search.decisions[0]
    # the arena's cgroup names reach the model through the tool's roles: the same margin as in training names
    assert first.margin == pytest.approx(margin, abs=1e-3) and first.promoted
    assert "promoted" in strategy.rules[0] and "kept the incumbent" in strategy.rules[1]
    assert f"{margin:+.3f}"[:4] in strategy.rules[0]


async def test_a_trial_the_ranker_judges_is_reverted_when_its_signature_loses_though_its_true_metric_wins(
    service: Service,
    model_dir: Path,
    clear_pair: tuple[dict[str, float], dict[str, float], float],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    better, worse, _ = clear_pair
    monkeypatch.setattr(runner, "SETTLE_S", 0.0)

    class Dumped:
        def __init__(self, data: dict[str, float]) -> None:
            self.data = data

        def model_dump(self, mode: str) -> dict[str, float]:
            return self.data

    class Signatures:
        """The trial's telemetry: the incumbent's window looks better than the challenger's."""

        def __init__(self) -> None:
            self.queue = [as_arena(better), as_arena(worse)]

        def signature_between(self, start: float, end: float) -> Dumped:
            return Dumped(self.queue.pop(0))

    class Arena:
        phase = 0

        def __init__(self) -> None:
            self.objectives = [0.5, 0.0]  # the challenger is far better by the true metric

        def measure(self, repeats: int | None = None) -> Measurement:
            o = self.objectives.pop(0)
            return Measurement(o, 900.0, 500.0, 10000.0, (0.0,), 0, (), span_unix_s=(1.0, 4.0))

    strategy = RankerArenaStrategy()
    strategy.reset(PROBLEM, 0)
    async with tools(service) as t:
        ctx = TrialContext(PROBLEM, Arena(), t, [10000.0], {KNOB: 1024}, telemetry=Signatures())  # type: ignore[arg-type]
        with anyio.fail_after(30):
            for _ in range(2):
                config = await strategy.propose(ctx.records, t)
                rec = await trial(ctx, config, strategy=strategy)
                strategy.observe(config, rec)
    first, second = ctx.records
    assert first.action == "unchanged" and first.decided_by is None
    assert second.config != {KNOB: 1024} and second.objective < first.objective
    assert second.action == "revert" and second.decided_by == "strategy"
    assert ctx.current == {KNOB: 1024} and int(str(service.backend.read(KNOB).value)) == 1024


async def test_without_a_signature_the_ranker_keeps_the_incumbent_without_asking(
    service: Service, model_dir: Path, clear_pair: tuple[dict[str, float], dict[str, float], float]
) -> None:
    strategy = RankerArenaStrategy()
    strategy.reset(PROBLEM, 0)
    strategy.observe({KNOB: 1024}, blind(0, {KNOB: 1024}, as_arena(clear_pair[0]), 0.0))
    record = blind(1, {KNOB: 64}, {}, 0.0, signature_error="telemetry_not_ready: no samples")
    record.signature = None
    async with tools(service) as t:
        with anyio.fail_after(30):
            assert await strategy.judge(record, t) is False
            assert "rank_configs" not in t.calls
    assert "no signature" in strategy.rules[-1]


async def test_after_the_workload_changes_the_ranker_re_measures_its_incumbent_and_may_retry_a_loser(
    service: Service, model_dir: Path, clear_pair: tuple[dict[str, float], dict[str, float], float]
) -> None:
    better, worse, _ = clear_pair
    strategy = RankerArenaStrategy()
    strategy.reset(PROBLEM, 0)
    async with tools(service) as t:
        with anyio.fail_after(30):
            strategy.observe({KNOB: 1024}, blind(0, {KNOB: 1024}, as_arena(better), 0.0))
            assert await strategy.judge(blind(1, {KNOB: 4096}, as_arena(worse), 0.0), t) is False
            strategy.phase_changed()
            # the phase-0 signature is gone: the next proposal is the incumbent, measured in place
            assert await strategy.propose([], t) == {KNOB: 1024}
            strategy.observe({KNOB: 1024}, blind(2, {KNOB: 1024}, as_arena(worse), 0.0))
            # judged against the new window, 4096 (which lost in phase 0) can now win
            assert await strategy.judge(blind(3, {KNOB: 4096}, as_arena(better), 0.0), t) is True
    assert strategy.search.incumbent == {KNOB: 4096}
    assert "re-measuring the incumbent" in strategy.rules[1]
