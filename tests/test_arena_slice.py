"""The slice problems of the arena and the sweep's paired comparison with the default point."""

from __future__ import annotations

from lumos_mcp.arena.landscape import paired_difference, summarise
from lumos_mcp.arena.problems import PROBLEMS
from lumos_mcp.arena.runner import Measurement, TrialRecord


def _record(objective: float, eps: float) -> TrialRecord:
    m = Measurement(objective, 1000.0, 900.0, eps, (0.0,), 0, ())
    return TrialRecord(0, {}, 0, m, objective, True, "revert", None, 0.0)


def test_the_slice_problems_tune_the_victims_task_slice_with_the_default_on_the_grid() -> None:
    for name in ("slice-1d", "slice-2d"):
        p = PROBLEMS[name]
        assert p.knobs[0].knob_id == "task.cgroup:lumos-arenax/victim.slice_us"
        assert p.knobs[0].short == "victim.slice_us"
        assert p.defaults() in p.grid()  # the paired comparison needs the default point
    assert PROBLEMS["slice-2d"].knobs[1].knob_id.endswith("/batch.cpu_shares")


def test_a_point_that_is_better_in_every_round_has_an_interval_below_zero() -> None:
    default = [_record(0.10 + 0.05 * r, 1000.0) for r in range(6)]  # drift between rounds
    better = [_record(0.07 + 0.05 * r, 900.0) for r in range(6)]
    d = paired_difference(better, default)
    assert d["objective_ci95"][1] < 0
    assert abs(d["objective"] + 0.03) < 1e-9
    assert abs(d["batch_rel"] + 0.1) < 1e-9


def test_a_point_no_different_from_the_default_has_an_interval_around_zero() -> None:
    default = [_record(o, 1000.0) for o in (0.1, 0.3, 0.2, 0.4, 0.1, 0.2)]
    same = [_record(o, 1000.0) for o in (0.2, 0.1, 0.3, 0.1, 0.4, 0.2)]
    low, high = paired_difference(same, default)["objective_ci95"]
    assert low <= 0 <= high


def test_a_point_summary_keeps_the_range_of_its_repeats() -> None:
    p = PROBLEMS["slice-1d"]
    point = summarise(p, p.defaults(), [_record(0.3, 1000.0), _record(0.1, 1000.0), _record(0.2, 1000.0)], 1000.0)
    assert point["objective"] == 0.2 and point["objective_range"] == [0.1, 0.3] and point["feasible"]


def test_a_landscape_whose_paired_intervals_all_contain_zero_reads_as_noise() -> None:
    from lumos_mcp.arena.landscape import analyse

    p = PROBLEMS["slice-1d"]
    points = []
    for value, obj in zip((100, 300, 1400, 5000, 20000), (0.5, 0.2, 0.4, 0.3, 0.6), strict=True):
        ci = [0.0, 0.0] if value == 1400 else [-0.3, 0.4]
        points.append(
            {
                "config": {p.knobs[0].knob_id: value},
                "objective": obj,
                "feasible": True,
                "vs_default": {"objective_ci95": ci},
            }
        )
    best, verdict = analyse(p, points)
    assert best is not None and verdict[0].startswith("victim.slice_us: no effect beyond noise")
