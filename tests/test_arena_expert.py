"""The arena's expert over a fake arena (scripted measurements: fast and deterministic): its
statistical keep rule, its steps from the floor's headroom, never two floor breaks in a row,
neighbours told apart from batch jobs, and its reaction to a rate shift."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lumos_mcp.arena.problems import PROBLEMS, Config, Problem
from lumos_mcp.arena.runner import Measurement, TrialRecord, feasible, sub_windows
from lumos_mcp.arena.strategies import ExpertAgentStrategy

SHARES_1D = PROBLEMS["shares-1d"]
PGBENCH = PROBLEMS["pgbench-1d"]
SHARES_2D = PROBLEMS["shares-2d"]
BATCH = SHARES_1D.knob_ids[0]
NEIGHBOUR = SHARES_2D.knob_ids[1]


@dataclass(frozen=True)
class Point:
    """What the fake arena measures for one configuration in one phase."""

    frac: float
    eps: float
    rate: float = 1000.0


Landscape = Callable[[Config, int], Point]


class FakeTools:
    """``list_tunables`` (the problem's knobs at their current values, the arena policy's bounds) and
    ``read_telemetry`` (CPU pressure, so the contention rule fires)."""

    def __init__(self, current: Config) -> None:
        self.current = current

    async def call(self, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        if name == "list_tunables":
            policy = {"allowed": True, "min": 2, "max": 262144, "max_step_ratio": 4.0}
            return {
                "tunables": [
                    {"id": k, "value": v, "state": "available", "policy": policy} for k, v in self.current.items()
                ]
            }
        assert name == "read_telemetry"
        return {"signature": {"psi": {"cpu": {"some": {"avg10_pct": 40.0}}}}}


def measurement(point: Point, seed: int, spread: float = 0.1) -> Measurement:
    """One 3 s window: 12 sub-window fractions around ``point.frac`` (deterministic for ``seed``)."""
    rng = np.random.default_rng(seed)
    subs = tuple(float(max(0.0, point.frac * (1 + spread * rng.standard_normal()))) for _ in range(12))
    frac = float(np.mean(subs))
    return Measurement(frac, 1000.0, 500.0, point.eps, (0.0,), 0, (), sub_frac_over_slo=subs, victim_rate=point.rate)


def run_expert(
    problem: Problem, landscape: Landscape, trials: int, phase_at: int | None = None, spread: float = 0.1
) -> tuple[list[TrialRecord], ExpertAgentStrategy]:
    """The runner's trial loop (`lumos_mcp.arena.run`, `lumos_mcp.arena.runner.trial`) over the fake:
    propose, clip, measure, judge when something was written, commit or revert, observe."""

    expert = ExpertAgentStrategy()
    expert.reset(problem, 0)

    async def main() -> list[TrialRecord]:
        current = problem.defaults()
        records: list[TrialRecord] = []
        for t in range(trials):
            phase = 1 if phase_at is not None and t >= phase_at else 0
            tools = FakeTools(dict(current))
            proposed = await expert.propose(records, tools)  # type: ignore[arg-type]
            config = {k.knob_id: k.clip(proposed.get(k.knob_id, k.default)) for k in problem.knobs}
            m = measurement(landscape(config, phase), seed=t, spread=spread)
            ok = feasible(problem, m, landscape(problem.defaults(), phase).eps)
            written = config != current
            record = TrialRecord(t, config, phase, m, m.frac_over_slo, ok, "pending" if written else "unchanged",
                                 None, float(t))  # fmt: skip
            if written:
                keep = await expert.judge(record, tools)  # type: ignore[arg-type]
                record.action = "commit" if keep else "revert"
                if keep:
                    current = dict(config)
            expert.observe(config, record)
            records.append(record)
        return records

    return anyio.run(main), expert


def batch(config: Config) -> int:
    return int(config[BATCH])


def loglinear(high: float, low: float) -> Callable[[int], float]:
    """``high`` at 1024 shares falling linearly in log2 to ``low`` at 4 shares."""
    return lambda s: low + (high - low) * (math.log2(max(s, 1)) - 2) / 8


def test_the_expert_keeps_a_move_only_when_compare_says_better() -> None:
    tail = {1024: 0.03, 256: 0.01, 64: 0.0098, 16: 0.0097, 4: 0.0097}
    records, expert = run_expert(SHARES_1D, lambda c, p: Point(tail.get(batch(c), 0.0097), 5000.0), trials=5)
    assert [r.action for r in records] == ["unchanged", "commit", "revert", "revert", "unchanged"]
    assert batch(records[1].config) == 256
    assert batch(records[2].config) == batch(records[3].config) == 64  # 0.0098 vs 0.0100: looked better, so again
    assert BATCH in expert.done  # set aside: twice no evidence that lowering it further helps


def test_a_move_that_looked_better_without_evidence_is_measured_again_and_kept_on_the_pooled_samples() -> None:
    tail = {1024: 0.03, 256: 0.010, 64: 0.0088}

    def noisy(c: Config, p: int) -> Point:
        return Point(tail.get(batch(c), 0.0088), 5000.0)

    records, _ = run_expert(SHARES_1D, noisy, trials=4, spread=0.3)
    assert [batch(r.config) for r in records] == [1024, 256, 64, 64]
    assert [r.action for r in records] == ["unchanged", "commit", "revert", "commit"]


def test_the_expert_steps_by_the_floors_headroom_instead_of_overshooting_it() -> None:
    # pgbench-like: fourfold from 256 would land at 64, under the 75% floor
    eps = loglinear(3850.0, 1500.0)
    records, _ = run_expert(PGBENCH, lambda c, p: Point(0.1 * batch(c) / 1024, eps(batch(c))), trials=5)
    assert all(r.feasible for r in records)
    moves = [batch(r.config) for r in records if r.action == "commit"]
    assert moves[0] == 256 and 64 < moves[1] < 256  # the second step is what the headroom allows


def test_after_a_floor_break_the_expert_measures_the_defaults_then_backs_off_at_most_halfway() -> None:
    def cliff(c: Config, p: int) -> Point:  # free down to 100, then a cliff the slope cannot predict
        s = batch(c)
        return Point(0.1 * s / 1024, 5000.0 if s >= 100 else 1000.0)

    records, expert = run_expert(SHARES_1D, cliff, trials=5)
    assert [batch(r.config) for r in records[:4]] == [1024, 256, 64, 1024]
    assert [r.feasible for r in records] == [True, True, False, True, True]
    assert records[3].config == SHARES_1D.defaults() and records[3].action == "revert"
    assert 128 <= batch(records[4].config) < 256  # halfway (in log) from 256 toward 64, no further
    assert expert.broken[BATCH][0] == 64


def test_a_group_whose_lowering_raises_the_batch_throughput_is_a_neighbour_without_a_floor_limit() -> None:
    def two(c: Config, p: int) -> Point:
        b, n = int(c[SHARES_2D.knob_ids[0]]), int(c[NEIGHBOUR])
        # the batch job's weight does nothing for the victim; the neighbour's does, and lowering it
        # gives the batch job more CPU
        return Point(0.02 * (n / 1024) ** 0.5 + 0.001, 5000.0 * (b / 1024) ** 0.05 * (1024 / n) ** 0.05)

    records, expert = run_expert(SHARES_2D, two, trials=5)
    assert SHARES_2D.knob_ids[0] in expert.done  # its lowering showed no gain for the victim
    assert NEIGHBOUR in expert.neighbours
    neighbour_moves = [
        int(r.config[NEIGHBOUR]) for r in records if r.action == "commit" and int(r.config[NEIGHBOUR]) < 1024
    ]
    assert neighbour_moves[:2] == [256, 64]  # fourfold: no floor cost was measured for it
    assert all(r.feasible for r in records)


def test_a_group_whose_lowering_hurt_the_victim_is_left_alone_once_the_incumbent_is_unchanged() -> None:
    records, expert = run_expert(SHARES_1D, lambda c, p: Point(0.01 + 0.02 * (batch(c) < 1024), 5000.0), trials=4)
    assert [r.action for r in records] == ["unchanged", "revert", "unchanged", "unchanged"]
    assert BATCH in expert.done
    assert records[2].config == records[3].config == SHARES_1D.defaults()


def test_a_rate_shift_makes_the_expert_measure_the_incumbent_again_and_resume_the_search() -> None:
    def shifted(c: Config, p: int) -> Point:
        s = batch(c)
        return Point((0.05 if p else 0.01) * (s / 1024) ** 0.5, 5000.0, rate=1100.0 if p else 300.0)

    records, expert = run_expert(SHARES_1D, shifted, trials=6, phase_at=2)
    assert [r.action for r in records[:4]] == ["unchanged", "commit", "revert", "unchanged"]
    assert records[3].config == records[1].config  # the incumbent, measured in the new regime
    assert any(rule.startswith("shift") for rule in expert.rules)
    assert records[4].action == "commit" and batch(records[4].config) < batch(records[1].config)  # resumed


def test_an_unannounced_shift_seen_only_in_the_tail_is_found_by_measuring_the_incumbent_again() -> None:
    def arrival(c: Config, p: int) -> Point:  # the neighbour arrives: every tail is worse, the rate is not
        return Point((0.06 if p else 0.02) * (batch(c) / 1024) ** 0.5, 5000.0)

    records, expert = run_expert(SHARES_1D, arrival, trials=6, phase_at=2)
    assert records[2].action == "revert" and records[3].config == records[1].config
    assert any(rule.startswith("shift") for rule in expert.rules)
    assert records[4].action == "commit"


@dataclass(frozen=True)
class _Drawn:
    eps: tuple[float, ...]
    frac: tuple[float, ...]


@settings(max_examples=60, deadline=None)
@given(
    floor=st.floats(0.5, 0.95),
    trials=st.integers(3, 10),
    phase_at=st.one_of(st.none(), st.integers(1, 9)),
    phases=st.lists(
        st.tuples(
            st.lists(st.floats(0.2, 1.5), min_size=12, max_size=12),
            st.lists(st.floats(0.0, 0.3), min_size=12, max_size=12),
            st.sampled_from([300.0, 1000.0, 1100.0]),
        ),
        min_size=2,
        max_size=2,
    ),
)
def test_the_expert_never_breaks_the_floor_twice_in_a_row_on_any_landscape(
    floor: float, trials: int, phase_at: int | None, phases: list[tuple[list[float], list[float], float]]
) -> None:
    """Any throughput and tail per weight (log2 bucket) and phase, the floor anywhere from 50% to 95%:
    a trial after a floor break keeps the floor (only the defaults are sure to, and they do by definition)."""
    problem = Problem("fake", "fake", SHARES_1D.knobs, floor_fraction=floor)

    def land(c: Config, p: int) -> Point:
        eps, frac, rate = phases[p]
        bucket = min(11, max(0, round(math.log2(batch(c)))))
        scale = eps[bucket] / eps[10]  # 1024 shares is bucket 10: the defaults' own throughput is the reference
        return Point(frac[bucket], 5000.0 * scale, rate)

    records, _ = run_expert(problem, land, trials=trials, phase_at=phase_at)
    for before, after in itertools.pairwise(records):
        assert before.feasible or after.feasible, [(batch(r.config), r.feasible) for r in records]


def test_sub_windows_cut_a_window_into_equal_runs_and_spread_the_timed_out_requests() -> None:
    latencies = np.array([100.0] * 90 + [2000.0] * 10)
    parts = sub_windows(latencies, 4, 1000.0, 4)
    assert [p.count for p in parts] == [25, 25, 25, 25]
    assert [p.timed_out for p in parts] == [1, 1, 1, 1]
    assert [p.frac_over_slo for p in parts] == [1 / 26, 1 / 26, 1 / 26, 11 / 26]
    assert sub_windows(np.empty(0), 0, 1000.0, 4) == []
    assert len(sub_windows(np.array([5.0, 6.0]), 0, 1000.0, 12)) == 2
