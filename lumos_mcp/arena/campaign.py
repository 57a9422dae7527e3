"""``lumos-mcp arena run|sweep|report``: sweeps, strategy runs and the report, per problem.

Each problem's results land in ``OUT/`` as JSON as soon as they exist (``landscape-P.json``,
``runs-P.json``), so a long campaign can be split into several invocations and ``arena report``
combines whatever is there.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from lumos_mcp.arena import landscape
from lumos_mcp.arena.problems import FULL_RUN, PROBLEMS, Problem


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def select(names: list[str] | None, quick: bool) -> list[Problem]:
    if quick and not names:
        names = ["shares-1d"]
    chosen = [PROBLEMS[n] for n in (names or FULL_RUN)]
    return [p.quick() for p in chosen] if quick else chosen


def main(
    action: str,
    *,
    out: Path,
    problems: list[str] | None,
    quick: bool,
    seeds: int,
    strategies: list[str] | None,
    resweep: bool,
) -> int:
    unknown = [n for n in problems or [] if n not in PROBLEMS]
    if unknown:
        print(f"lumos-mcp arena: unknown problem(s) {unknown}; known: {sorted(PROBLEMS)}", file=sys.stderr)
        return 2
    from lumos_mcp.arena import strategies as strat_mod

    known = [s.name for s in strat_mod.all_strategies()]
    if strategies is not None and (not strategies or any(n not in known for n in strategies)):
        bad = [n for n in strategies if n not in known] or "none given"
        print(f"lumos-mcp arena: unknown strategy(ies) {bad}; known: {known}", file=sys.stderr)
        return 2
    if action != "report" and os.geteuid() != 0:
        print("lumos-mcp arena: live runs need root (they write cgroup knobs on this host)", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    state = out / "state"
    chosen = select(problems, quick)
    from lumos_mcp.arena import report
    from lumos_mcp.arena.run import run_problem

    if action in ("sweep", "run"):
        for p in chosen:
            name = p.landscape_name
            if action == "sweep" or resweep or landscape.load(out, name) is None:
                target = PROBLEMS[name].quick() if quick else PROBLEMS[name]
                _say(f"sweeping {name}: {len(target.grid())} points x {target.sweep_repeats} repeats")
                swept = landscape.sweep(target, state, _say)
                landscape.save(swept, out)
                _say(f"{name}: best {swept.best and swept.best['config']} ; " + " | ".join(swept.verdict))
    if action == "run":
        for p in chosen:
            land = landscape.load(out, p.landscape_name)
            if land is not None:
                land = landscape.rescore(land, p)
            chosen_strats = strat_mod.available(strategies)
            result = run_problem(p, chosen_strats, seeds if not quick else min(seeds, 1), state, land, _say)
            (out / f"runs-{p.name}.json").write_text(json.dumps(result, indent=1, default=str))
    report.write(out, quick=quick)
    _say(f"report written to {out}")
    return 0


__all__ = ["main", "select"]
