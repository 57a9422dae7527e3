"""Map a problem's landscape before any strategy runs: a grid sweep with repeats, each point
written through the MCP tools (stage, apply, measure, revert), and a plot. Repeats are
interleaved (round after round over the whole grid, in a rotating order) and each point is
compared with the default point of the same rounds (a paired bootstrap interval)."""

from __future__ import annotations

import itertools
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from lumos_mcp.arena.evaluation import Interval, bootstrap_median
from lumos_mcp.arena.problems import Config, Problem
from lumos_mcp.arena.runner import (
    Arena,
    TrialContext,
    TrialRecord,
    arena_service,
    guarded_originals,
    mcp_tools,
    measure_baseline,
    trial,
)
from lumos_mcp.arena.stats import throughput_floor_ok
from lumos_mcp.kernelfs import KernelRoot
from lumos_mcp.kernelfs.cgroups import CgroupManager


@dataclass(frozen=True)
class Landscape:
    problem: str
    knobs: list[str]
    baseline_eps: float
    floor_eps: float
    points: list[dict[str, Any]]
    """Per grid point: config, objective/p99/eps medians over repeats, feasible, every repeat."""
    best: dict[str, Any] | None
    verdict: list[str]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def analyse(problem: Problem, points: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[str]]:
    """The best feasible point and plain sentences: is it interior, on the floor, is a knob monotone."""
    ok = [p for p in points if p["feasible"]]
    if not ok:
        return None, ["no grid point keeps the throughput floor: the problem is infeasible as posed"]
    best = min(ok, key=lambda p: p["objective"])
    defaults = problem.defaults()
    verdict: list[str] = []
    for k in problem.knobs:
        grid = sorted({p["config"][k.knob_id] for p in points})  # the swept values (--quick's grid differs)
        v = best["config"][k.knob_id]
        pos = grid.index(v)
        others = {kk: vv for kk, vv in best["config"].items() if kk != k.knob_id}
        line = [p for p in points if all(p["config"][kk] == vv for kk, vv in others.items())]
        line.sort(key=lambda p: grid.index(p["config"][k.knob_id]))
        objs = [p["objective"] for p in line]
        diffs = [b - a for a, b in itertools.pairwise(objs)]
        spread = max(objs) - min(objs) if objs else 0.0
        if spread <= max(0.002, 0.1 * max(objs, default=0.0)):
            verdict.append(f"{k.short}: flat (no effect beyond noise along this knob at the optimum)")
            continue
        paired = [p["vs_default"]["objective_ci95"] for p in line if "vs_default" in p and p["config"] != defaults]
        if paired and all(math.isfinite(lo) and lo <= 0 <= hi for lo, hi in paired):
            verdict.append(
                f"{k.short}: no effect beyond noise (every point's paired 95% interval against the default "
                f"contains 0; the best median, {v}, is noise)"
            )
            continue
        mono = (
            ""
            if not diffs
            else ("increasing" if all(d >= 0 for d in diffs) else "decreasing" if all(d <= 0 for d in diffs) else "")
        )
        where = "at the low edge" if pos == 0 else "at the high edge" if pos == len(grid) - 1 else "interior"
        on_floor = ""
        for nb in (pos - 1, pos + 1):
            if 0 <= nb < len(line) and not line[nb]["feasible"]:
                on_floor = " and on the throughput-floor boundary (the next grid point breaks the floor)"
        verdict.append(
            f"{k.short}: optimum {v} is {where} of the grid{on_floor}"
            + (f"; tail is monotone {mono} in this knob" if mono else "")
        )
    return best, verdict


def summarise(problem: Problem, config: Config, reps: list[TrialRecord], baseline_eps: float) -> dict[str, Any]:
    """One grid point over its repeats: medians, the range of the objective, feasibility."""
    objs = [r.objective for r in reps]
    eps = [r.measurement.batch_eps for r in reps]
    med_eps = statistics.median(eps)
    return {
        "config": config,
        "objective": statistics.median(objs),
        "objective_range": [min(objs), max(objs)],
        "p99_us": statistics.median([r.measurement.p99_us for r in reps]),
        "batch_eps": med_eps,
        "noise_cpus_max": max(r.measurement.noise_max for r in reps),
        "repeats": [
            {"objective": r.objective, "p99_us": r.measurement.p99_us, "batch_eps": r.measurement.batch_eps}
            for r in reps
        ],
        "feasible": math.isfinite(med_eps) and throughput_floor_ok(med_eps, baseline_eps, problem.floor_fraction),
    }


def paired_difference(reps: list[TrialRecord], default: list[TrialRecord], resamples: int = 2000) -> dict[str, Any]:
    """This point minus the default point, round by round (same round, minutes apart at most):
    the median difference of the objective and of the batch throughput (relative), each with a
    95% bootstrap interval over rounds. An interval that contains 0 is no effect beyond noise."""
    pairs = list(zip(reps, default, strict=False))
    d_obj = [a.objective - b.objective for a, b in pairs]
    d_eps = [
        a.measurement.batch_eps / b.measurement.batch_eps - 1.0
        for a, b in pairs
        if b.measurement.batch_eps > 0 and math.isfinite(a.measurement.batch_eps)
    ]

    def interval(values: list[float]) -> list[float]:
        if len(values) < 2:
            return [math.nan, math.nan]
        found = bootstrap_median(values, resamples=resamples)
        return [found.low, found.high]

    return {
        "objective": statistics.median(d_obj) if d_obj else math.nan,
        "objective_ci95": interval(d_obj),
        "batch_rel": statistics.median(d_eps) if d_eps else math.nan,
        "batch_rel_ci95": interval(d_eps),
        "rounds": len(pairs),
    }


async def _sweep(problem: Problem, state_dir: Path, on_event: Callable[[str], None]) -> Landscape:
    started = time.monotonic()
    cg = CgroupManager(KernelRoot("/"))
    with Arena(problem, cg) as arena:
        service = arena_service(state_dir, problem)
        try:
            with guarded_originals(service, problem, state_dir) as originals:
                async with mcp_tools(service) as tools:
                    ctx = TrialContext(problem, arena, tools, baseline_eps=[math.nan], current=dict(originals))
                    base = await measure_baseline(ctx, 3)
                    ctx.baseline_eps = [base.batch_eps]
                    on_event(f"{problem.name}: baseline batch {base.batch_eps:.0f} ev/s, frac {base.frac_over_slo:.4f}")
                    grid = problem.grid()
                    runs: list[list[TrialRecord]] = [[] for _ in grid]
                    # interleaved: every round measures every point once, in a rotating order, so
                    # drift of the host (other load, thermal) spreads over all points alike
                    for round_no in range(problem.sweep_repeats):
                        shift = round_no % len(grid)
                        for index in [*range(shift, len(grid)), *range(shift)]:
                            runs[index].append(await trial(ctx, grid[index], keep_best=False))
                        on_event(f"  round {round_no + 1}/{problem.sweep_repeats} done")
                    default_index = next((i for i, c in enumerate(grid) if c == problem.defaults()), None)
                    points = []
                    for config, reps in zip(grid, runs, strict=True):
                        point = summarise(problem, config, reps, base.batch_eps)
                        if default_index is not None:
                            point["vs_default"] = paired_difference(reps, runs[default_index])
                        points.append(point)
                        on_event(
                            f"  {config}: obj {point['objective']:.4f} [{point['objective_range'][0]:.4f}, "
                            f"{point['objective_range'][1]:.4f}] p99 {point['p99_us']:.0f} us "
                            f"eps {point['batch_eps']:.0f} {'ok' if point['feasible'] else 'FAIL'}"
                        )
        finally:
            service.close()
    best, verdict = analyse(problem, points)
    return Landscape(
        problem=problem.name,
        knobs=list(problem.knob_ids),
        baseline_eps=base.batch_eps,
        floor_eps=base.batch_eps * problem.floor_fraction,
        points=points,
        best=best,
        verdict=verdict,
        seconds=round(time.monotonic() - started, 1),
    )


def sweep(problem: Problem, state_dir: Path, on_event: Callable[[str], None] = print) -> Landscape:
    """Sweep ``problem``'s grid on the live host (root). Every knob is restored at the end."""
    return anyio.run(_sweep, problem, state_dir, on_event)


def save(land: Landscape, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"landscape-{land.problem}.json"
    path.write_text(json.dumps(land.as_dict(), indent=1, default=str))
    return path


def rescore(land: dict[str, Any], problem: Problem) -> dict[str, Any]:
    """``land`` judged with ``problem``'s floor (a problem may reuse another's sweep with another floor)."""
    points = []
    for p in land["points"]:
        eps = p["batch_eps"]
        ok = math.isfinite(eps) and throughput_floor_ok(eps, land["baseline_eps"], problem.floor_fraction)
        points.append({**p, "feasible": ok})
    best, verdict = analyse(problem, points)
    return {
        **land,
        "points": points,
        "best": best,
        "verdict": verdict,
        "floor_eps": land["baseline_eps"] * problem.floor_fraction,
    }


def objective_interval(point: dict[str, Any]) -> Interval:
    """A grid point's objective: the median over its repeats with a 95% bootstrap interval (with 2
    repeats the interval is their range)."""
    return bootstrap_median([float(r["objective"]) for r in point.get("repeats", [])])


def tied_with_best(land: dict[str, Any]) -> list[dict[str, Any]]:
    """The feasible points whose objective interval overlaps the best's: the sweep cannot tell them
    apart from the best at its repeats."""
    best = land.get("best")
    if not best:
        return []
    b = objective_interval(best)
    out = []
    for p in land["points"]:
        if p is best or not p["feasible"] or p["config"] == best["config"]:
            continue
        i = objective_interval(p)
        if i.n and b.n and i.low <= b.high and b.low <= i.high:
            out.append(p)
    return out


def load(out: Path, name: str) -> dict[str, Any] | None:
    path = out / f"landscape-{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


__all__ = ["Landscape", "analyse", "load", "objective_interval", "rescore", "save", "sweep", "tied_with_best"]
