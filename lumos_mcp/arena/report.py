"""Results: ``results.json``, ``results.md`` (per problem, per strategy) and PNG plots."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from lumos_mcp.arena.evaluation import bootstrap_median, config_key, paired_differences, prob_paired_beats
from lumos_mcp.arena.landscape import objective_interval, rescore, tied_with_best
from lumos_mcp.arena.problems import PROBLEMS

WITHIN = 0.05
WITHIN_ABS = 0.0005
"""'Within 5% of the best' also accepts 0.05 percentage points, since the best fraction can be ~0."""


def _legend(ax: Any) -> None:
    """A small legend, only when something in the axes has a label (matplotlib warns otherwise)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)


def _median(xs: list[float]) -> float:
    xs = [x for x in xs if isinstance(x, int | float) and math.isfinite(x)]
    return float(statistics.median(xs)) if xs else math.nan


def _spread(xs: list[float], fmt: str) -> str:
    xs = [x for x in xs if isinstance(x, int | float) and math.isfinite(x)]
    if not xs:
        return "-"
    return f"{format(statistics.median(xs), fmt)} [{format(min(xs), fmt)}, {format(max(xs), fmt)}]"


def summarise_run(run: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """Per run: best and final tail, batch kept, trials to within 5% of the sweep's best, failures, regret."""
    trials = run["trials"]
    phases = {t["phase"] for t in trials}
    last_phase = max(phases)
    scored = [t for t in trials if t["phase"] == last_phase]  # in a scenario, score the post-change phase
    base = data["baselines"][last_phase]["batch_eps"]
    ok = [t for t in scored if t["feasible"]]
    best = min(ok, key=lambda t: t["objective"]) if ok else None
    ref = (data.get("landscape_best") or {}).get("objective")
    reach = None
    if ref is not None:
        so_far = math.inf
        for i, t in enumerate(scored, 1):
            if t["feasible"]:
                so_far = min(so_far, t["objective"])
            if so_far <= ref * (1 + WITHIN) + WITHIN_ABS:
                reach = i
                break
    final = run["final"]
    evaluated = _evaluated(run, data)
    in_a_row = max_consecutive([not t["feasible"] for t in trials])
    return {
        "strategy": run.get("label", run["strategy"]),
        "seed": run["seed"],
        "best_objective": best["objective"] if best else math.nan,
        "best_p99_us": best["measurement"]["p99_us"] if best else math.nan,
        "best_config": best["config"] if best else None,
        "batch_kept": best["measurement"]["batch_eps"] / base if best else math.nan,
        "final_objective": final["objective"],
        "final_p99_us": final["p99_us"],
        "final_batch_kept": final["batch_eps"] / base,
        "trials_to_5pct": reach,
        "failed": sum(1 for t in trials if not t["feasible"]),
        "regret": (best["objective"] - ref) if best and ref is not None else math.nan,
        "final_regret": (final["objective"] - ref) if ref is not None else math.nan,
        "noise_max_cpus": max([max(t["measurement"]["noise_cpus"] or [0.0]) for t in trials] or [0.0]),
        "noisy_repeated": sum(t["measurement"]["noisy_repeated"] for t in trials),
        "floor_breaks_in_a_row": in_a_row,
        "improvement": evaluated["improvement"] if evaluated else None,
        "relative_improvement": evaluated["relative_improvement"] if evaluated else None,
        "verdict": evaluated["verdict"] if evaluated else None,
        "eval_floor_ok": evaluated["floor_ok"] if evaluated else None,
        "improvements": [p["default"]["objective"] - p["kept"]["objective"] for p in evaluated["pairs"]]
        if evaluated
        else [],
    }


def max_consecutive(flags: list[bool]) -> int:
    """The longest run of True in ``flags`` (trials that broke the floor, one after another)."""
    best = run = 0
    for flag in flags:
        run = run + 1 if flag else 0
        best = max(best, run)
    return best


def _evaluated(run: dict[str, Any], data: dict[str, Any]) -> dict[str, Any] | None:
    """The evaluation of the configuration ``run`` kept (None for results made before evaluation)."""
    evaluation = data.get("evaluation") or {}
    if not evaluation:
        return None
    kept = {k: run["final"]["config"][k] for k in data["knobs"]}
    found: dict[str, Any] | None = (evaluation.get("configs") or {}).get(config_key(kept))
    return found


_VICTIM_UNITS = {"probe": "probe requests", "pgbench": "pgbench transactions"}


def table(data: dict[str, Any]) -> str:
    rows = [summarise_run(r, data) for r in data["runs"]]
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["strategy"], []).append(r)
    ref = data.get("landscape_best") or {}
    lines = [
        f"### {data['problem']}: {data['title']}",
        "",
        f"Objective: fraction of {_VICTIM_UNITS.get(data.get('victim', 'probe'), 'requests')} over "
        f"{data['slo_us']:.0f} us (p99 beside it); batch floor "
        f"{data['floor_fraction']:.0%} of default throughput; {data['trials']} trials x {data['window_s']:.0f} s "
        f"window x {data['repeats']} repeat(s); {data['seeds']} seeds; scenario `{data['scenario']}`. Sweep best "
        f"({data['landscape']}): {ref.get('objective', math.nan):.4f} at {ref.get('config')}. Cells: median "
        "[min, max] over seeds.",
        "",
        *[f"- landscape at this floor: {v}" for v in data.get("landscape_verdict", [])],
        "",
        "| strategy | best frac>SLO | best p99 ms | final frac>SLO | final p99 ms | batch kept | trials to 5% "
        "| failed trials | regret | max noise CPUs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rs in by.items():
        reach = [r["trials_to_5pct"] for r in rs]
        reach_s = ", ".join("-" if x is None else str(x) for x in reach)
        lines.append(
            f"| {name} | {_spread([r['best_objective'] for r in rs], '.4f')} "
            f"| {_spread([r['best_p99_us'] / 1000 for r in rs], '.2f')} "
            f"| {_spread([r['final_objective'] for r in rs], '.4f')} "
            f"| {_spread([r['final_p99_us'] / 1000 for r in rs], '.2f')} "
            f"| {_spread([r['batch_kept'] for r in rs], '.2f')} | {reach_s} "
            f"| {_spread([float(r['failed']) for r in rs], '.0f')} "
            f"| {_spread([r['regret'] for r in rs], '.4f')} | {max(r['noise_max_cpus'] for r in rs):.2f} |"
        )
    for name, why in data.get("skipped", {}).items():
        lines.append(f"| {name} | skipped: {why} | | | | | | | | |")
    lines.append("")
    return "\n".join(lines)


def _ci(interval: dict[str, Any] | None, fmt: str = "+.4f") -> str:
    if not interval or not isinstance(interval.get("median"), int | float) or not math.isfinite(interval["median"]):
        return "-"
    return f"{interval['median']:{fmt}} [{interval['low']:{fmt}}, {interval['high']:{fmt}}]"


def pooled(rows: list[dict[str, Any]]) -> list[float]:
    """A strategy's improvement per evaluation round: the mean over its runs' kept configurations of
    that round's improvement. The rounds are the independent units (every configuration of a round
    shares its default window, and seeds that kept the same configuration share its windows), so
    the seeds are pooled within a round, not counted as more pairs."""
    series = [r["improvements"] for r in rows if r["improvements"]]
    if not series:
        return []
    return [statistics.fmean(values) for values in zip(*series, strict=False)]


def evaluation_table(data: dict[str, Any]) -> str:
    """Improvement over the default of each run's kept configuration, from the interleaved evaluation:
    median over pairs with its 95% bootstrap interval, per strategy (seeds pooled) and per seed; then
    P(row's kept configurations beat column's)."""
    evaluation = data.get("evaluation")
    if not evaluation:
        return ""
    rows = [summarise_run(r, data) for r in data["runs"]]
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["strategy"], []).append(r)
    noise = (evaluation["configs"].get(evaluation["default_key"]) or {}).get("improvement")
    lines = [
        f"Evaluation ({data['problem']}): each kept configuration against the default in "
        f"{evaluation['pairs']} interleaved rounds of {evaluation.get('window_s', math.nan):.0f} s windows. "
        f"Improvement = default objective minus the kept one's (higher is better), median over rounds "
        f"[95% bootstrap interval over rounds]; a strategy's seeds are averaged within each round. "
        f"Default against itself (the noise floor): {_ci(noise)}.",
        "",
        "| strategy | improvement, seeds averaged per round | relative | per seed (verdict) | batch kept (eval) "
        "| floor breaks (search) | most in a row |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rs in by.items():
        pool = bootstrap_median(pooled(rs))
        base = _median([p["default"]["objective"] for r in data["runs"] for p in _pairs(r, data)])
        rel = f"{pool.median / base:+.1%}" if base and math.isfinite(base) and pool.n else "-"
        seeds = "; ".join(f"{_ci(r['improvement'])} ({r['verdict']})" for r in rs if r["improvement"])
        kept = ", ".join("ok" if r["eval_floor_ok"] else "BROKEN" for r in rs if r["eval_floor_ok"] is not None)
        lines.append(
            f"| {name} | {pool.text('+.4f') if pool.n else '-'} | {rel} | {seeds or '-'} | {kept or '-'} "
            f"| {sum(r['failed'] for r in rs)} | {max(r['floor_breaks_in_a_row'] for r in rs)} |"
        )
    names = list(by)
    if len(names) > 1:
        lines += [
            "",
            "P(row's kept configurations beat column's): the median of their round-by-round difference "
            "above zero, over bootstrap resamples of the rounds (0.50: the same configuration, or no difference):",
            "",
        ]
        lines.append("| | " + " | ".join(names) + " |")
        lines.append("|---" * (len(names) + 1) + "|")
        for a in names:
            cells = [
                "-" if a == b else f"{prob_paired_beats(paired_differences(pooled(by[a]), pooled(by[b]))):.2f}"
                for b in names
            ]
            lines.append(f"| {a} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def _pairs(run: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]]:
    found = _evaluated(run, data)
    return list(found["pairs"]) if found else []


def improvement_overview(summaries: dict[str, list[dict[str, Any]]], skipped: dict[str, dict[str, str]]) -> str:
    """One row per strategy, one column per problem: the kept configurations' improvement over the
    default (seeds pooled) with its 95% interval, and ``*`` when the interval excludes zero."""
    problems = list(summaries)
    strategies = list(dict.fromkeys(s["strategy"] for rows in summaries.values() for s in rows))
    lines = ["| strategy | " + " | ".join(problems) + " |", "|---" * (len(problems) + 1) + "|"]
    for name in strategies:
        cells = []
        for p in problems:
            rows = [r for r in summaries[p] if r["strategy"] == name]
            pool = bootstrap_median(pooled(rows)) if rows else None
            if pool is None or pool.n == 0:
                cells.append("skipped" if name in skipped.get(p, {}) else "-")
                continue
            mark = " *" if pool.verdict() != "no evidence" else ""
            broken = sum(1 for r in rows if r["eval_floor_ok"] is False)
            floor = f" (floor broken by {broken} of {len(rows)})" if broken else ""
            cells.append(pool.text("+.4f") + mark + floor)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def head_to_head(
    summaries: dict[str, list[dict[str, Any]]],
    focus: str = "expert",
    rivals: tuple[str, ...] = ("optuna-tpe", "optuna-gp"),
) -> str:
    """One row per rival, one column per problem: ``focus``'s improvement minus the rival's, round by
    round (both measured in the same evaluation rounds, so the default window cancels), median with
    its 95% bootstrap interval over rounds; ``better``/``worse`` only when the interval excludes zero,
    and a note when either side's kept configuration broke the floor in the evaluation."""
    problems = [p for p, rows in summaries.items() if any(r["strategy"] == focus and r["improvements"] for r in rows)]
    if not problems:
        return ""
    lines = [f"| {focus} minus | " + " | ".join(problems) + " |", "|---" * (len(problems) + 1) + "|"]
    for rival in rivals:
        cells = []
        for p in problems:
            mine = [r for r in summaries[p] if r["strategy"] == focus]
            theirs = [r for r in summaries[p] if r["strategy"] == rival]
            diff = bootstrap_median(paired_differences(pooled(mine), pooled(theirs))) if theirs else None
            if diff is None or diff.n == 0:
                cells.append("-")
                continue
            broken = [
                name
                for name, rows in ((focus, mine), (rival, theirs))
                if any(r["eval_floor_ok"] is False for r in rows)
            ]
            note = f"; floor broken: {', '.join(broken)}" if broken else ""
            cells.append(f"{diff.text('+.4f')} ({diff.verdict()}{note})")
        lines.append(f"| {rival} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def overview(summaries: dict[str, list[dict[str, Any]]], key: str, skipped: dict[str, dict[str, str]]) -> str:
    """One row per strategy, one column per problem: the median over seeds of ``key`` (a regret),
    with the trials that broke the floor summed over seeds when there were any."""
    problems = list(summaries)
    strategies = list(dict.fromkeys(s["strategy"] for rows in summaries.values() for s in rows))
    lines = ["| strategy | " + " | ".join(problems) + " |", "|---" * (len(problems) + 1) + "|"]
    for name in strategies:
        cells = []
        for p in problems:
            rows = [r for r in summaries[p] if r["strategy"] == name]
            if not rows:
                cells.append("skipped" if name in skipped.get(p, {}) else "-")
                continue
            failed = sum(r["failed"] for r in rows)
            cells.append(f"{_median([r[key] for r in rows]):+.4f}" + (f" ({failed} failed)" if failed else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def landscape_md(land: dict[str, Any]) -> str:
    best = land.get("best") or {}
    ci = objective_interval(best) if best else None
    ties = tied_with_best(land)
    named = ", ".join(f"`{p['config']}`" for p in ties[:4]) + (", ..." if len(ties) > 4 else "")
    tie_line = (
        f" {len(ties)} other feasible point(s) have intervals overlapping the best's: the sweep cannot tell "
        f"them apart from it ({named})."
        if ties
        else ""
    )
    out = [
        f"### Landscape {land['problem']}",
        "",
        f"Default batch throughput {land['baseline_eps']:.0f} ev/s, floor {land['floor_eps']:.0f}; "
        f"{len(land['points'])} grid points, sweep took {land['seconds']:.0f} s. Best feasible: "
        f"`{best.get('config')}` frac {best.get('objective', math.nan):.4f}"
        + (f" [{ci.low:.4f}, {ci.high:.4f}] over {ci.n} repeats" if ci and ci.n else "")
        + f", p99 {best.get('p99_us', math.nan) / 1000:.2f} ms.{tie_line}",
        "",
        *[f"- {v}" for v in land["verdict"]],
        "",
        landscape_points_md(land),
        f"![landscape {land['problem']}](landscape-{land['problem']}.png)",
        "",
    ]
    return "\n".join(out)


def _bracket(low: float, high: float, fmt: str) -> str:
    """`` [low, high]``, or a note that one round gives no interval (the bootstrap needs two)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return " (1 round: no interval)"
    return f" [{low:{fmt}}, {high:{fmt}}]"


def landscape_points_md(land: dict[str, Any]) -> str:
    """One row per grid point: its objective (median [range] over repeats), p99, batch throughput,
    and, for sweeps that paired every point with the default in the same rounds, the paired
    difference against the default with its 95% bootstrap interval."""
    knobs = land["knobs"]
    short = [k.rsplit("/", 1)[-1].removeprefix("task.") for k in knobs]
    paired = any("vs_default" in p for p in land["points"])
    head = [*short, "objective, median [range]", "p99 ms", "batch ev/s", "outside CPU (max)"]
    if paired:
        head += ["vs default: objective, 95% CI", "vs default: batch, 95% CI"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for p in land["points"]:
        objs = [float(r["objective"]) for r in p.get("repeats", [])] or [p["objective"]]
        cells = [str(p["config"][k]) for k in knobs]
        cells += [
            f"{p['objective']:.4f} [{min(objs):.4f}, {max(objs):.4f}]",
            f"{p['p99_us'] / 1000:.2f}",
            f"{p['batch_eps']:.0f}" + ("" if p["feasible"] else " (below floor)"),
            f"{p.get('noise_cpus_max', math.nan):.2f}",
        ]
        if paired:
            vs = p.get("vs_default") or {}
            lo, hi = vs.get("objective_ci95", [math.nan, math.nan])
            blo, bhi = vs.get("batch_rel_ci95", [math.nan, math.nan])
            cells += [
                f"{vs.get('objective', math.nan):+.4f}" + _bracket(lo, hi, "+.4f"),
                f"{vs.get('batch_rel', math.nan):+.0%}" + _bracket(blo, bhi, "+.0%"),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_landscape(land: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    knobs = land["knobs"]
    pts = land["points"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    main = knobs[0]
    others = knobs[1:]
    groups: dict[str, list[dict[str, Any]]] = {}
    for p in pts:
        key = ", ".join(
            f"{k.split('.')[-2].split('/')[-1] if k.startswith('cgroup') else k.split('.')[-1]}={p['config'][k]}"
            for k in others
        )
        groups.setdefault(key or "all", []).append(p)
    for key, ps in groups.items():
        ps = sorted(ps, key=lambda p: p["config"][main])
        xs = [p["config"][main] for p in ps]
        axes[0].plot(xs, [p["objective"] for p in ps], marker="o", label=key)
        for p in ps:
            for r in p["repeats"]:
                axes[0].scatter([p["config"][main]], [r["objective"]], s=8, color="grey", alpha=0.5)
            if not p["feasible"]:
                axes[0].scatter([p["config"][main]], [p["objective"]], s=80, facecolors="none", edgecolors="red")
        axes[1].plot(xs, [p["batch_eps"] for p in ps], marker="o", label=key)
    axes[1].axhline(land["floor_eps"], color="red", linestyle="--", label="floor")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel(main.replace("cgroup.", ""))
    axes[0].set_ylabel("fraction over SLO (red ring: floor broken)")
    axes[1].set_ylabel("batch events/s")
    _legend(axes[0])
    _legend(axes[1])
    fig.suptitle(f"landscape {land['problem']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_trials(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["strategy"] for r in data["runs"]))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, name in enumerate(names):
        c = colours[i % len(colours)]
        for j, run in enumerate(r for r in data["runs"] if r["strategy"] == name):
            ys = [t["objective"] for t in run["trials"]]
            xs = list(range(1, len(ys) + 1))
            axes[0].plot(xs, ys, color=c, alpha=0.5, marker=".", label=name if j == 0 else None)
            best, so_far = math.inf, []
            for t in run["trials"]:
                if t["feasible"]:
                    best = min(best, t["objective"])
                so_far.append(best if math.isfinite(best) else math.nan)
            axes[1].plot(xs, so_far, color=c, alpha=0.7, label=name if j == 0 else None)
    ref = (data.get("landscape_best") or {}).get("objective")
    if ref is not None:
        axes[1].axhline(ref, color="black", linestyle=":", label="sweep best")
    if data["scenario"] != "steady":
        for ax in axes:
            ax.axvline(data["trials"] // 2 + 0.5, color="red", linestyle="--")
    axes[0].set_ylabel("fraction over SLO per trial")
    axes[1].set_ylabel("best feasible so far")
    for ax in axes:
        ax.set_xlabel("trial")
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.set_ylim(bottom=0)
        _legend(ax)
    fig.suptitle(f"{data['problem']}: tail per trial and best so far (all seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_timeline(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.2))
    for run in data["runs"]:
        if run["seed"] != 0:
            continue
        ts = [t["t_s"] for t in run["trials"]]
        ax.plot(ts, [t["measurement"]["p99_us"] / 1000 for t in run["trials"]], marker=".", label=run["strategy"])
        change = [t["t_s"] for t in run["trials"] if t["phase"] == 1]
        if change:
            ax.axvline(change[0], color="red", linestyle="--", alpha=0.3)
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the run started (seed 0; red: the change)")
    ax.set_ylabel(f"{data.get('victim', 'probe')} p99 per window (ms)")
    _legend(ax)
    ax.set_title(f"{data['problem']}: latency over time", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(out: Path, *, quick: bool = False) -> Path:
    """Combine every ``landscape-*.json`` and ``runs-*.json`` under ``out`` into the report."""
    lands = {p.stem.removeprefix("landscape-"): json.loads(p.read_text()) for p in sorted(out.glob("landscape-*.json"))}
    runs = {p.stem.removeprefix("runs-"): json.loads(p.read_text()) for p in sorted(out.glob("runs-*.json"))}
    md = ["# Arena results" + (" (--quick)" if quick else ""), ""]
    for name, land in lands.items():
        plot_landscape(land, out / f"landscape-{name}.png")
        md.append(landscape_md(land))
    summary: dict[str, Any] = {}
    for name, data in runs.items():
        land = lands.get(data.get("landscape", ""))
        if land is not None and name in PROBLEMS:
            judged = rescore(land, PROBLEMS[name])  # the sweep at this problem's floor
            data["landscape_best"], data["landscape_verdict"] = judged["best"], judged["verdict"]
        md.append(evaluation_table(data))
        md.append(table(data))
        plot_trials(data, out / f"trials-{name}.png")
        md.append(f"![trials {name}](trials-{name}.png)\n")
        if data["scenario"] != "steady":
            plot_timeline(data, out / f"timeline-{name}.png")
            md.append(f"![timeline {name}](timeline-{name}.png)\n")
        noise = [n for r in data["runs"] for t in r["trials"] for n in t["measurement"]["noise_cpus"]]
        rep = sum(t["measurement"]["noisy_repeated"] for r in data["runs"] for t in r["trials"])
        if noise:
            md.append(
                f"Noise ({name}): CPU used outside the arena per window, median {statistics.median(noise):.3f} CPUs, "
                f"max {max(noise):.3f}; {rep} window(s) over 0.1 CPU were measured again. "
                f"Run took {data['seconds']:.0f} s.\n"
            )
        summary[name] = {"summary": [summarise_run(r, data) for r in data["runs"]], "skipped": data.get("skipped", {})}
    if summary:
        rows = {name: v["summary"] for name, v in summary.items()}
        skipped = {name: v["skipped"] for name, v in summary.items()}
        lead = []
        if any(r["improvements"] for rs in rows.values() for r in rs):
            lead = [
                "Improvement over the default of the configuration each run kept, measured apart from the "
                "search in interleaved rounds against the default (median over rounds of the seeds' mean, "
                "[95% bootstrap interval over rounds]; higher is better; `*`: the interval excludes zero; "
                '"floor broken": kept configurations whose batch throughput in the evaluation fell under the '
                "problem's floor, so their improvement was bought with a broken constraint):",
                "",
                improvement_overview(rows, skipped),
                "The expert against Bayesian optimisation at equal budget: the expert's improvement minus the "
                "rival's, round by round in the same evaluation (median [95% bootstrap interval over rounds]; "
                "`better`/`worse` only when the interval excludes zero):",
                "",
                head_to_head(rows),
                "Secondary: regret against the sweep's best, from the search's own windows.",
                "",
            ]
        md[2:2] = [
            "## Overview",
            "",
            *lead,
            "Regret = the run's best feasible fraction over SLO minus the sweep's best feasible grid point "
            "(lower is better; negative: matched it within noise). Median over seeds; in parentheses, trials "
            "that broke the throughput floor, summed over seeds.",
            "",
            "Best found:",
            "",
            overview(rows, "regret", skipped),
            "Final (the configuration the run kept, measured once more):",
            "",
            overview(rows, "final_regret", skipped),
        ]
    (out / "results.md").write_text("\n".join(md))
    (out / "results.json").write_text(
        # the trials themselves (with their signatures) stay in runs-*.json: only name them here
        json.dumps(
            {"landscapes": lands, "runs": {name: f"runs-{name}.json" for name in runs}, "summary": summary},
            indent=1,
            default=str,
        )
    )
    return out / "results.md"


__all__ = [
    "evaluation_table",
    "head_to_head",
    "improvement_overview",
    "max_consecutive",
    "summarise_run",
    "table",
    "write",
]
