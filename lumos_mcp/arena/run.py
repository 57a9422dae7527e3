"""Run every strategy on one problem, seeds interleaved, each trial through the MCP tools."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

from lumos_mcp.arena.evaluation import Window, config_key, evaluate_kept
from lumos_mcp.arena.problems import Config, Problem
from lumos_mcp.arena.runner import (
    Arena,
    TrialContext,
    arena_service,
    guarded_originals,
    mcp_tools,
    measure_baseline,
    read_values,
    restore,
    trial,
)
from lumos_mcp.arena.strategies import Strategy, StrategyUnavailable
from lumos_mcp.errors import WorkloadError
from lumos_mcp.kernelfs import KernelRoot
from lumos_mcp.kernelfs.cgroups import CgroupManager
from lumos_mcp.service import Service


async def _run(
    problem: Problem,
    strategies: Sequence[Strategy],
    seeds: int,
    state_dir: Path,
    landscape: dict[str, Any] | None,
    say: Callable[[str], None],
) -> dict[str, Any]:
    started = time.monotonic()
    cg = CgroupManager(KernelRoot("/"))
    runs: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    baselines: list[dict[str, Any]] = []
    with Arena(problem, cg) as arena:
        service = arena_service(state_dir, problem)
        try:
            with guarded_originals(service, problem, state_dir) as originals:
                async with mcp_tools(service) as tools:
                    ctx0 = TrialContext(problem, arena, tools, baseline_eps=[], current=dict(originals))
                    for phase in range(problem.scenario.phases):
                        await anyio.to_thread.run_sync(arena.set_phase, phase)
                        base = await measure_baseline(ctx0, 3)
                        ctx0.baseline_eps.append(base.batch_eps)
                        baselines.append(
                            {"phase": phase, "batch_eps": base.batch_eps, "frac_over_slo": base.frac_over_slo,
                             "p99_us": base.p99_us, "noise_cpus": list(base.noise_cpus)}
                        )  # fmt: skip
                        say(f"{problem.name} phase {phase}: default batch {base.batch_eps:.0f} ev/s, "
                            f"frac {base.frac_over_slo:.4f}, p99 {base.p99_us:.0f} us")  # fmt: skip
                    for seed in range(seeds):
                        for strategy in strategies:
                            if strategy.name in skipped:
                                continue
                            try:
                                strategy.reset(problem, seed)
                            except StrategyUnavailable as e:
                                skipped[strategy.name] = str(e)
                                say(f"  {strategy.name}: skipped ({e})")
                                continue
                            restore(service, originals, actor=f"arena-reset-{strategy.name}")
                            await anyio.to_thread.run_sync(arena.set_phase, 0)
                            ctx = TrialContext(
                                problem, arena, tools, baseline_eps=ctx0.baseline_eps,
                                current=read_values(service, problem.knob_ids), telemetry=service.telemetry,
                            )  # fmt: skip
                            for t in range(problem.trials):
                                if problem.scenario.phases == 2 and t == problem.trials // 2:
                                    await anyio.to_thread.run_sync(arena.set_phase, 1)
                                    ctx.incumbent_objective = math.inf  # the metric rule re-bases...
                                    rebase = getattr(strategy, "phase_changed", None)
                                    if rebase is not None:  # ...and so may a strategy that judges itself
                                        rebase()
                                config = await strategy.propose(ctx.records, tools)
                                rec = await trial(ctx, config, strategy=strategy)
                                strategy.observe(config, rec)
                            final = await measure_baseline(ctx, 1)
                            runs.append(
                                {
                                    "strategy": strategy.name,
                                    "label": getattr(strategy, "label", strategy.name),
                                    "seed": seed,
                                    "trials": [r.as_dict() for r in ctx.records],
                                    "final": {"config": ctx.current, "phase": arena.phase,
                                              "objective": problem.score(final.frac_over_slo, final.p99_us),
                                              "frac_over_slo": final.frac_over_slo, "p99_us": final.p99_us,
                                              "batch_eps": final.batch_eps, "noise_cpus": list(final.noise_cpus)},
                                    "notes": list(getattr(strategy, "rules", [])),
                                }
                            )  # fmt: skip
                            best = min((r.objective for r in ctx.records if r.feasible), default=math.nan)
                            fails = sum(1 for r in ctx.records if not r.feasible)
                            say(f"  seed {seed} {strategy.name}: best {best:.4f}, final {final.frac_over_slo:.4f}, "
                                f"{fails} failed, {time.monotonic() - started:.0f} s")  # fmt: skip
                    tool_calls = dict(tools.calls)
                    evaluation = await _evaluate(problem, arena, service, originals, runs, say)
        finally:
            service.close()
    return {
        "problem": problem.name,
        "title": problem.title,
        "knobs": list(problem.knob_ids),
        "scenario": problem.scenario.name,
        "victim": problem.victim,
        "objective": problem.objective,
        "floor_fraction": problem.floor_fraction,
        "slo_us": problem.slo_us,
        "window_s": problem.window_s,
        "repeats": problem.repeats,
        "trials": problem.trials,
        "seeds": seeds,
        "baselines": baselines,
        "landscape": problem.landscape_name,
        "landscape_best": landscape["best"] if landscape else None,
        "landscape_verdict": landscape["verdict"] if landscape else [],
        "runs": runs,
        "evaluation": evaluation,
        "skipped": skipped,
        "tool_calls": tool_calls,
        "seconds": round(time.monotonic() - started, 1),
    }


async def _evaluate(
    problem: Problem,
    arena: Arena,
    service: Service,
    originals: Config,
    runs: list[dict[str, Any]],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Each run's kept configuration against the default, in interleaved rounds (``evaluation``),
    in the scenario's last phase (where every run ended)."""
    await anyio.to_thread.run_sync(arena.set_phase, problem.scenario.phases - 1)
    kept = [(f"{r['strategy']}#{r['seed']}", {k: r["final"]["config"][k] for k in problem.knob_ids}) for r in runs]
    default = {k: originals[k] for k in problem.knob_ids}

    def measure(config: Config) -> Window:
        failed = [d for d in restore(service, config, actor="arena-eval") if "failed" in d]
        if failed:
            raise WorkloadError(f"evaluation could not set {config}: {failed}")
        m = arena.measure(1, window_s=problem.eval_window_s)
        return Window(problem.score(m.frac_over_slo, m.p99_us), m.frac_over_slo, m.p99_us, m.batch_eps, m.noise_max)

    say(f"{problem.name}: evaluating {len({config_key(c) for _, c in kept})} kept configuration(s) against the "
        f"default: {problem.eval_pairs} interleaved rounds of {problem.eval_window_s:.0f} s windows")  # fmt: skip
    try:
        return await anyio.to_thread.run_sync(lambda: evaluate_kept(problem, kept, default, measure, say=say))
    finally:
        restore(service, originals, actor="arena-eval")


def run_problem(
    problem: Problem,
    strategies: Sequence[Strategy],
    seeds: int,
    state_dir: Path,
    landscape: dict[str, Any] | None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every strategy x seed on ``problem`` (live host, root); knobs restored at the end, also on Ctrl-C."""
    return anyio.run(_run, problem, strategies, seeds, state_dir, landscape, say)


__all__ = ["run_problem"]
