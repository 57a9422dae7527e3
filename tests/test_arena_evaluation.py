"""The arena's evaluation of kept configurations: interleaved rounds against the default, bootstrap
intervals over pairs, verdicts that say "no evidence" inside the noise, and the report's tables."""

from __future__ import annotations

import math
import random
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lumos_mcp.arena import report
from lumos_mcp.arena.evaluation import (
    Window,
    bootstrap_median,
    config_key,
    evaluate_kept,
    interleaved,
    paired_differences,
    prob_beats,
    prob_paired_beats,
)
from lumos_mcp.arena.problems import PROBLEMS, Config

ROOT = Path(__file__).resolve().parent.parent
PROBLEM = PROBLEMS["shares-1d"]
KNOB = PROBLEM.knob_ids[0]


def window(objective: float, eps: float = 1000.0) -> Window:
    return Window(objective, objective, objective * 1e4, eps, 0.0)


def host(effects: dict[int, float], noise: float, seed: int = 0, eps: dict[int, float] | None = None) -> tuple:
    """A fake host: each configuration's true objective is 0.10 minus its effect, plus noise; the
    batch job's throughput per configuration from ``eps``. Records the order it was measured in."""
    rng = random.Random(seed)
    seen: list[int] = []

    def measure(config: Config) -> Window:
        value = int(config[KNOB])
        seen.append(value)
        return window(0.10 - effects.get(value, 0.0) + rng.gauss(0, noise), (eps or {}).get(value, 1000.0))

    return measure, seen


@settings(deadline=None, max_examples=50)
@given(st.lists(st.floats(-1, 1), min_size=1, max_size=30))
def test_the_bootstrap_interval_of_a_median_holds_the_median_and_lies_within_the_data(values: list[float]) -> None:
    i = bootstrap_median(values, resamples=500)
    assert min(values) <= i.low <= i.median <= i.high <= max(values)
    assert i.n == len(values)


def test_a_verdict_needs_the_whole_interval_on_one_side_of_zero() -> None:
    assert bootstrap_median([0.02, 0.03, 0.025, 0.04, 0.03, 0.035]).verdict() == "better"
    assert bootstrap_median([-0.02, -0.03, -0.025, -0.04, -0.03, -0.035]).verdict() == "worse"
    assert bootstrap_median([0.02, -0.03, 0.01, -0.01, 0.03, -0.02]).verdict() == "no evidence"
    assert bootstrap_median([math.nan]).verdict() == "no evidence"


def test_the_probability_of_beating_is_near_one_when_apart_and_a_half_against_itself() -> None:
    a = [0.05, 0.06, 0.055, 0.07, 0.065]
    b = [-0.01, 0.0, 0.01, -0.005, 0.005]
    assert prob_beats(a, b) > 0.99 and prob_beats(b, a) < 0.01
    assert prob_beats(a, a) == pytest.approx(0.5, abs=0.05)
    assert math.isnan(prob_beats([], a))


def test_interleaved_rounds_measure_the_default_and_each_configuration_once_per_round_in_alternating_order() -> None:
    measure, seen = host({}, noise=0.0)
    configs = {config_key({KNOB: v}): {KNOB: v} for v in (64, 256)}
    pairs = interleaved(configs, {KNOB: 1024}, measure, pairs=4, seed=3)
    assert [len(p) for p in pairs.values()] == [4, 4]
    rounds = [seen[i : i + 3] for i in range(0, 12, 3)]
    assert all(sorted(r) == [64, 256, 1024] for r in rounds)
    assert [r[0] == 1024 for r in rounds] == [True, False, True, False]  # the default first, then last
    assert [r[-1] == 1024 for r in rounds] == [False, True, False, True]


def test_identical_kept_configurations_are_measured_once_and_shared_with_the_noise_floor_beside_them() -> None:
    measure, seen = host({64: 0.05, 256: -0.05}, noise=0.005, seed=1)
    kept = [("expert#0", {KNOB: 64}), ("tpe#0", {KNOB: 64}), ("random#0", {KNOB: 256})]
    result = evaluate_kept(PROBLEM, kept, {KNOB: 1024}, measure)
    configs = result["configs"]
    assert len(seen) == PROBLEM.eval_pairs * 4  # default + 64 + 256 + default-as-kept per round
    assert configs[config_key({KNOB: 64})]["kept_by"] == ["expert#0", "tpe#0"]
    assert configs[config_key({KNOB: 64})]["verdict"] == "better"
    assert configs[config_key({KNOB: 256})]["verdict"] == "worse"
    floor = configs[result["default_key"]]
    assert floor["kept_by"] == [] and floor["verdict"] == "no evidence"
    assert result["prob_beats"][config_key({KNOB: 64})][config_key({KNOB: 256})] > 0.99


def test_a_difference_inside_the_noise_is_reported_as_no_evidence() -> None:
    measure, _ = host({64: 0.002}, noise=0.02, seed=2)
    result = evaluate_kept(PROBLEM, [("tpe#0", {KNOB: 64})], {KNOB: 1024}, measure)
    assert result["configs"][config_key({KNOB: 64})]["verdict"] == "no evidence"


def test_a_kept_configuration_that_starves_the_batch_job_fails_the_floor_in_evaluation() -> None:
    measure, _ = host({64: 0.05}, noise=0.001, eps={64: 500.0})
    result = evaluate_kept(PROBLEM, [("expert#0", {KNOB: 64})], {KNOB: 1024}, measure)
    summary = result["configs"][config_key({KNOB: 64})]
    assert summary["eps_ratio"]["median"] == pytest.approx(0.5) and summary["floor_ok"] is False


def test_floor_breaks_in_a_row_count_the_longest_run() -> None:
    assert report.max_consecutive([False, True, True, False, True]) == 2
    assert report.max_consecutive([]) == 0


def _runs_with_evaluation() -> dict:
    measure, _ = host({64: 0.04, 16: 0.01}, noise=0.004, seed=5)
    runs = []
    kept = [("expert", 0, 64), ("expert", 1, 64), ("random", 0, 16)]
    for name, seed, value in kept:
        trial = {
            "phase": 0,
            "feasible": True,
            "objective": 0.1,
            "config": {KNOB: value},
            "measurement": {"p99_us": 900.0, "batch_eps": 1000.0, "noise_cpus": [0.0], "noisy_repeated": 0},
        }
        final = {"config": {KNOB: value}, "objective": 0.06, "p99_us": 800.0, "batch_eps": 950.0}
        runs.append({"strategy": name, "seed": seed, "trials": [trial], "final": final})
    evaluation = evaluate_kept(PROBLEM, [(f"{n}#{s}", {KNOB: v}) for n, s, v in kept], {KNOB: 1024}, measure)
    return {
        "problem": "shares-1d",
        "title": "t",
        "knobs": [KNOB],
        "scenario": "steady",
        "victim": "probe",
        "objective": "frac_over_slo",
        "floor_fraction": 0.7,
        "slo_us": 1000.0,
        "window_s": 3.0,
        "repeats": 1,
        "trials": 1,
        "seeds": 2,
        "baselines": [{"batch_eps": 1000.0}],
        "landscape": "shares-1d",
        "landscape_best": None,
        "runs": runs,
        "evaluation": evaluation,
        "skipped": {},
        "seconds": 1.0,
    }


def test_seeds_are_averaged_within_a_round_so_two_seeds_that_kept_one_configuration_are_not_counted_twice() -> None:
    same = [{"improvements": [0.01, 0.03, -0.02]}, {"improvements": [0.01, 0.03, -0.02]}]
    assert report.pooled(same) == pytest.approx([0.01, 0.03, -0.02])
    assert report.pooled([{"improvements": [0.0, 0.2]}, {"improvements": [0.2, 0.0]}, {"improvements": []}]) == [
        pytest.approx(0.1),
        pytest.approx(0.1),
    ]


def test_winning_every_round_by_a_little_beats_a_noisy_rival_that_shares_the_rounds() -> None:
    rival = [0.05, -0.04, 0.06, -0.05, 0.05]  # large swings: the rounds' default windows
    steady = [x + 0.01 for x in rival]  # the same rounds, 0.01 better in each
    assert prob_paired_beats(paired_differences(steady, rival)) == 1.0
    assert prob_beats(steady, rival) < 0.9  # treated as independent, the shared noise hides it
    assert prob_paired_beats(paired_differences(rival, rival)) == 0.5


def test_the_evaluation_table_leads_with_improvement_and_intervals_and_compares_strategies() -> None:
    text = report.evaluation_table(_runs_with_evaluation())
    assert "| expert | +0.04" in text and "(better)" in text
    assert "noise floor" in text and "P(row's kept configurations beat column's)" in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| expert |")}
    assert rows  # the matrix row and the table row both start with the strategy


@pytest.mark.slow
def test_the_report_still_reads_results_made_before_evaluation_existed(tmp_path: Path) -> None:
    out = tmp_path / "arena"  # shares-1d of the full run of 2026-11-24 (signatures dropped), a slice sweep
    shutil.copytree(ROOT / "tests" / "data" / "arena-before-evaluation", out)
    path = report.write(out)
    text = path.read_text()
    assert "## Overview" in text and "Evaluation (" not in text
    assert "over 2 repeats" in text or "over 1 repeats" in text  # the sweep's best carries its interval
    # every grid point is listed; a sweep paired with the default (the slice sweeps) shows the pairing
    assert "| objective, median [range] |" in text and "vs default: objective, 95% CI" in text


def test_a_sweep_point_measured_in_one_round_says_it_has_no_interval_instead_of_printing_nan() -> None:
    def point(shares: int, rounds: int) -> dict[str, object]:
        ci = [0.01, 0.03] if rounds > 1 else [math.nan, math.nan]
        return {
            "config": {"cgroup.x/batch.cpu_shares": shares},
            "objective": 0.02,
            "p99_us": 900.0,
            "batch_eps": 100.0,
            "noise_cpus_max": 0.02,
            "feasible": True,
            "vs_default": {"objective": 0.02, "objective_ci95": ci, "batch_rel": -0.1, "batch_rel_ci95": ci},
        }

    text = report.landscape_points_md(
        {"knobs": ["cgroup.x/batch.cpu_shares"], "points": [point(2, rounds=1), point(64, rounds=3)]}
    )
    one, three = text.splitlines()[2:4]
    assert "nan" not in text
    assert "(1 round: no interval)" in one and "[+0.0100, +0.0300]" in three


def test_the_overview_says_when_a_kept_configuration_bought_its_improvement_by_breaking_the_floor() -> None:
    def row(name: str, floor_ok: bool) -> dict[str, object]:
        return {"strategy": name, "improvements": [0.03, 0.04, 0.05, 0.04, 0.03], "eval_floor_ok": floor_ok}

    text = report.improvement_overview(
        {"p": [row("bold", False), row("bold", True), row("careful", True), row("careful", True)]}, {}
    )
    lines = {line.split("|")[1].strip(): line for line in text.splitlines()[2:]}
    assert "(floor broken by 1 of 2)" in lines["bold"] and "*" in lines["bold"]
    assert "floor broken" not in lines["careful"]


def test_head_to_head_pairs_rounds_and_says_better_only_when_the_interval_excludes_zero() -> None:
    shared = [0.05, -0.04, 0.06, -0.05, 0.05]  # what every configuration's round shares (its default window)

    def row(name: str, gain: float, floor_ok: bool = True) -> dict[str, object]:
        return {"strategy": name, "improvements": [x + gain for x in shared], "eval_floor_ok": floor_ok}

    summaries = {
        "wins": [row("expert", 0.02), row("optuna-tpe", 0.0), row("optuna-gp", 0.0, floor_ok=False)],
        "ties": [row("expert", 0.0), row("optuna-tpe", 0.0), row("optuna-gp", 0.0)],
    }
    text = report.head_to_head(summaries)
    lines = {line.split("|")[1].strip(): line.split("|")[2:4] for line in text.splitlines()[2:]}
    assert "+0.0200 [+0.0200, +0.0200] (better)" in lines["optuna-tpe"][0]
    assert "floor broken: optuna-gp" in lines["optuna-gp"][0]
    assert "(no evidence)" in lines["optuna-tpe"][1]
    assert report.head_to_head({"p": [row("random", 0.0)]}) == ""  # no expert: no table
