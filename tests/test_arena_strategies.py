"""Arena problems, strategies and the report on synthetic data; a live --quick smoke of two
strategies through the MCP tools on cgroups the test creates (root only)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from lumos_mcp.arena import report
from lumos_mcp.arena.landscape import analyse
from lumos_mcp.arena.problems import PROBLEMS, Problem, shares
from lumos_mcp.arena.runner import Measurement, TrialRecord
from lumos_mcp.arena.strategies import (
    Default,
    ExpertAgentStrategy,
    LLMAgentStrategy,
    OptunaGP,
    OptunaTPE,
    RandomSearch,
    RankerArenaStrategy,
    StrategyUnavailable,
    all_strategies,
    available,
    ranker_space,
)

LIVE_OK = os.geteuid() == 0 and Path("/sys/fs/cgroup/cpu/cpu.shares").exists()


def _record(i: int, config: dict[str, Any], objective: float, feasible: bool = True) -> TrialRecord:
    m = Measurement(objective, 1000.0, 500.0, 5000.0, (0.01,), 0, ())
    return TrialRecord(i, config, 0, m, objective, feasible, "revert", None, float(i))


def test_every_problem_has_a_grid_inside_its_ranges_and_defaults_on_the_grid_axes() -> None:
    for p in PROBLEMS.values():
        assert p.trials > 0 and p.knobs
        for k in p.knobs:
            assert all(k.clip(v) == v for v in k.grid)
        assert len(p.grid()) == math.prod(len(k.grid) for k in p.knobs)


def test_random_and_tpe_propose_values_inside_the_box_and_are_seeded() -> None:
    p = PROBLEMS["shares-distract"]

    async def proposals(strategy: Any, seed: int) -> list[dict[str, Any]]:
        strategy.reset(p, seed)
        out = []
        for i in range(5):
            c = await strategy.propose([], None)
            strategy.observe(c, _record(i, c, 0.1 * i))
            out.append(c)
        return out

    for cls in (RandomSearch, OptunaTPE, OptunaGP):
        a = anyio.run(proposals, cls(), 1)
        b = anyio.run(proposals, cls(), 1)
        assert a == b
        for c in a:
            for k in p.knobs:
                assert k.clip(c[k.knob_id]) == c[k.knob_id]


def test_default_always_proposes_the_defaults() -> None:
    p = PROBLEMS["shares-2d"]
    d = Default()
    d.reset(p, 0)
    assert anyio.run(d.propose, [], None) == p.defaults()


def test_llm_strategy_is_skipped_with_a_reason_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(StrategyUnavailable, match="ANTHROPIC_API_KEY"):
        LLMAgentStrategy().reset(PROBLEMS["shares-1d"], 0)


def test_expert_measures_the_defaults_after_a_move_that_breaks_the_floor() -> None:
    p = PROBLEMS["shares-1d"]
    knob = p.knob_ids[0]

    async def after_a_break() -> dict[str, Any]:
        e, tools = ExpertAgentStrategy(), _ExpertTools(knob, 40.0)
        e.reset(p, 0)
        first = await e.propose([], tools)  # type: ignore[arg-type]
        e.observe(first, _record(0, first, 0.05))
        move = await e.propose([_record(0, first, 0.05)], tools)  # type: ignore[arg-type]
        e.observe(move, _record(1, move, 0.01, feasible=False))
        return await e.propose([_record(0, first, 0.05)] * 2, tools)  # type: ignore[arg-type]

    assert anyio.run(after_a_break) == p.defaults()


class _ExpertTools:
    """The two tools the expert reads: the batch knob at 1024 and a signature with ``cpu_psi``."""

    def __init__(self, knob: str, cpu_psi: float) -> None:
        self.knob, self.cpu_psi = knob, cpu_psi
        self.calls: list[str] = []

    async def call(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(name)
        if name == "list_tunables":
            policy = {"allowed": True, "min": 2, "max": 8192, "max_step_ratio": 4.0}
            return {"tunables": [{"id": self.knob, "value": 1024, "state": "available", "policy": policy}]}
        assert name == "read_telemetry" and set(args["sections"]) >= {"psi"}
        return {"signature": {"psi": {"cpu": {"some": {"avg10_pct": self.cpu_psi}}}}}


def test_expert_lowers_the_batch_weight_on_cpu_pressure_read_over_mcp_and_holds_without_it() -> None:
    p = PROBLEMS["shares-1d"]
    knob = p.knob_ids[0]

    async def second_proposal(cpu_psi: float) -> tuple[dict[str, Any], list[str]]:
        e, tools = ExpertAgentStrategy(), _ExpertTools(knob, cpu_psi)
        e.reset(p, 0)
        first = await e.propose([], tools)  # type: ignore[arg-type]
        e.observe(first, _record(0, first, 0.05))
        return await e.propose([_record(0, first, 0.05)], tools), tools.calls  # type: ignore[arg-type]

    pressed, calls = anyio.run(second_proposal, 40.0)
    assert pressed == {knob: 256} and "read_telemetry" in calls
    calm, _ = anyio.run(second_proposal, 0.0)
    assert calm == {knob: 1024}


def _point(batch: int, objective: float, feasible: bool) -> dict[str, Any]:
    return {
        "config": {shares("batch", [2]).knob_id: batch},
        "objective": objective,
        "p99_us": 1.0,
        "batch_eps": 1.0,
        "feasible": feasible,
    }


def test_landscape_analysis_says_when_the_optimum_sits_on_the_floor_boundary() -> None:
    p = Problem("t", "t", (shares("batch", (2, 16, 128, 1024)),))
    pts = [_point(2, 0.0, False), _point(16, 0.01, True), _point(128, 0.05, True), _point(1024, 0.2, True)]
    best, verdict = analyse(p, pts)
    assert best is not None and best["config"][p.knob_ids[0]] == 16
    assert "interior" in verdict[0] and "floor" in verdict[0] and "monotone increasing" in verdict[0]


def test_landscape_analysis_reports_an_infeasible_problem() -> None:
    p = Problem("t", "t", (shares("batch", (2, 16)),))
    best, verdict = analyse(p, [_point(2, 0.0, False), _point(16, 0.1, False)])
    assert best is None and "infeasible" in verdict[0]


def test_report_counts_failures_regret_and_trials_to_reach_the_best() -> None:
    knob = shares("batch", [2]).knob_id
    trials = [
        _record(i, {knob: 2}, o, f).as_dict() for i, (o, f) in enumerate([(0.3, True), (0.0, False), (0.1, True)])
    ]
    data = {
        "baselines": [{"batch_eps": 10000.0}],
        "landscape_best": {"objective": 0.1, "config": {knob: 64}},
        "runs": [
            {
                "strategy": "x",
                "seed": 0,
                "trials": trials,
                "final": {"objective": 0.2, "p99_us": 1.0, "batch_eps": 5000.0},
            }
        ],
    }
    s = report.summarise_run(data["runs"][0], data)  # type: ignore[index]
    assert s["failed"] == 1 and s["trials_to_5pct"] == 3
    assert s["regret"] == pytest.approx(0.0) and s["final_regret"] == pytest.approx(0.1)
    assert s["batch_kept"] == pytest.approx(0.5)
    other = {**s, "strategy": "y", "regret": 0.3, "failed": 0}
    table = report.overview({"p1": [s, other], "p2": [other]}, "regret", {"p2": {"x": "no key"}})
    assert table.splitlines()[2:] == ["| x | +0.0000 (1 failed) | skipped |", "| y | +0.3000 | +0.3000 |"]


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.skipif(not LIVE_OK, reason="needs root and the cgroup v1 cpu controller")
def test_live_quick_smoke_of_two_strategies_restores_every_knob(tmp_path: Path) -> None:
    from lumos_mcp.arena.evaluation import config_key
    from lumos_mcp.arena.problems import SLICE
    from lumos_mcp.arena.run import run_problem
    from lumos_mcp.kernelfs import KernelRoot
    from lumos_mcp.kernelfs.cgroups import CgroupManager

    parent = f"lumos-test-arena-{os.getpid()}"
    problem = Problem(
        "smoke",
        "smoke",
        (shares("batch", (2, 1024), parent=parent), SLICE),
        window_s=2.5,  # at least one whole 1 s report interval of the batch job per window
        trials=2,
        neighbour_cpus=0.3,
        parent=parent,
        eval_pairs=2,
        eval_window_s=2.5,
    )
    slice_before = Path("/proc/sys/kernel/sched_cfs_bandwidth_slice_us").read_text()
    result = run_problem(problem, [Default(), RandomSearch()], 1, tmp_path / "state", None, lambda s: None)
    assert [r["strategy"] for r in result["runs"]] == ["default", "random"]
    assert all(len(r["trials"]) == 2 for r in result["runs"])
    assert result["tool_calls"].get("apply", 0) >= 1
    evaluation = result["evaluation"]  # every kept configuration, against the default, in interleaved pairs
    kept = {config_key({k: r["final"]["config"][k] for k in problem.knob_ids}) for r in result["runs"]}
    assert kept <= set(evaluation["configs"]) and evaluation["default_key"] in evaluation["configs"]
    assert all(len(c["pairs"]) == 2 for c in evaluation["configs"].values())
    assert Path("/proc/sys/kernel/sched_cfs_bandwidth_slice_us").read_text() == slice_before
    assert not CgroupManager(KernelRoot("/")).exists(parent)
    assert not (tmp_path / "state" / "originals.json").exists()


_CTRL_C_SCRIPT = """
import signal
import sys
from pathlib import Path
from lumos_mcp.arena.problems import SLICE, Problem, shares
from lumos_mcp.arena.run import run_problem
from lumos_mcp.arena.strategies import RandomSearch

# Python leaves SIGINT ignored when its parent ignored it (a background job of a script): set
# the terminal's Ctrl-C behaviour explicitly so the test does not depend on how CI started it.
signal.signal(signal.SIGINT, signal.default_int_handler)
parent, state = sys.argv[1], Path(sys.argv[2])
problem = Problem("ctrl-c", "ctrl-c", (shares("batch", (2, 1024), parent=parent), SLICE),
                  window_s=2.5, trials=50, neighbour_cpus=0.3, parent=parent)
run_problem(problem, [RandomSearch()], 1, state, None, lambda s: None)
"""


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.skipif(not LIVE_OK, reason="needs root and the cgroup v1 cpu controller")
def test_live_ctrl_c_mid_trial_restores_every_knob_through_the_journal(tmp_path: Path) -> None:
    """SIGINT while a random-search trial is applied: the trial is reverted through the server,
    the run's knobs are put back, its cgroups and processes are gone, and the audit chain verifies."""
    import signal
    import subprocess
    import sys
    import time

    from lumos_mcp.audit import verify
    from lumos_mcp.kernelfs import KernelRoot
    from lumos_mcp.kernelfs.cgroups import CgroupManager

    slice_path = Path("/proc/sys/kernel/sched_cfs_bandwidth_slice_us")
    before = slice_path.read_text()
    parent = f"lumos-test-arena-int-{os.getpid()}"
    state = tmp_path / "state"
    proc = subprocess.Popen([sys.executable, "-c", _CTRL_C_SCRIPT, parent, str(state)])
    try:
        deadline = time.monotonic() + 90
        while slice_path.read_text() == before:  # RandomSearch's first trial moves the slice
            assert proc.poll() is None, "the run ended before any trial was applied"
            assert time.monotonic() < deadline, "no trial was applied within 90 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=90)
        after = slice_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if slice_path.read_text() != before:  # never leave the host changed, even if the test fails
            slice_path.write_text(before)
    assert rc != 0  # interrupted, not finished
    assert after == before
    assert not CgroupManager(KernelRoot("/")).exists(parent)
    assert not (state / "originals.json").exists()
    events = [json.loads(line)["event"] for line in (state / "audit.jsonl").read_text().splitlines()]
    assert "apply" in events and "revert" in events
    assert verify(state / "audit.jsonl").ok


def test_the_ranker_is_unavailable_with_a_reason_when_its_model_is_missing(tmp_path: Path) -> None:
    with pytest.raises(StrategyUnavailable, match="no ranker model"):
        RankerArenaStrategy(model_path=tmp_path / "absent").reset(PROBLEMS["shares-1d"], 0)


def test_the_ranker_is_unavailable_without_scikit_learn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a))
    with pytest.raises(StrategyUnavailable, match="scikit-learn"):
        RankerArenaStrategy().reset(PROBLEMS["shares-1d"], 0)


def test_the_ranker_searches_each_knobs_grid_plus_its_default_and_is_registered() -> None:
    space = ranker_space(PROBLEMS["shares-distract"])
    assert list(space.values()) == [[2, 64, 1024], [1000, 5000, 20000], [False, True]]
    ranker = next(s for s in all_strategies() if s.name == "ranker")
    assert isinstance(ranker, RankerArenaStrategy) and ranker.label == "ranker (zero-mod)"
    assert [s.name for s in available(["ranker"])] == ["ranker"]


def test_an_unknown_or_empty_strategy_list_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lumos_mcp.arena.campaign import main

    for names in (["nope"], []):
        out = tmp_path / "out"
        rc = main("run", out=out, problems=["shares-1d"], quick=True, seeds=1, strategies=names, resweep=False)
        assert rc == 2 and not out.exists()  # no sweep, no state, no report
        assert "unknown strategy" in capsys.readouterr().err
