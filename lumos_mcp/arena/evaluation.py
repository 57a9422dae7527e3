"""Search apart from evaluation: the configuration each run kept, measured against the default in
interleaved repeated windows, with bootstrap intervals.

A strategy's search picks its configuration from noisy 3-4 s windows, so "best of N" rewards lucky
draws. Here every kept configuration (identical ones once, shared) is measured again in rounds: each
round measures the default and every kept configuration once, in an order that alternates (default
first in even rounds, last in odd ones; the kept configurations shuffled), each window long enough
for the tail (10 s by default). Round i's default window and configuration X's window form pair i
for X, so slow drift of the host cancels within a pair.

Per configuration: the improvement over the default (default objective minus its objective: higher
is better) per pair, summarised by its median with a 95% percentile-bootstrap interval over pairs;
the relative improvement (that median over the median default objective); the batch job's throughput
ratio against the default with its interval (the floor); and, between two configurations, the
probability that one beats the other: the median of their round-by-round differences (the round's
default window cancels) above zero, over bootstrap resamples of the rounds.
With few pairs the bootstrap of a median is coarse (with 5 pairs its 95% interval is about the range of
the pairs): the interval is then wide, and the verdict says "no evidence" rather than guess.
"""

from __future__ import annotations

import json
import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from lumos_mcp.arena.problems import Config, Problem
from lumos_mcp.compare import Interval, bootstrap_median, prob_beats, prob_paired_beats


def config_key(config: Config) -> str:
    return json.dumps({k: config[k] for k in sorted(config)})


@dataclass(frozen=True)
class Window:
    objective: float
    frac_over_slo: float
    p99_us: float
    batch_eps: float
    noise_cpus: float


@dataclass
class Evaluated:
    """One kept configuration measured against the default in interleaved pairs."""

    config: Config
    kept_by: list[str]
    pairs: list[tuple[Window, Window]]
    """(default window, this configuration's window) per round."""

    def improvements(self) -> list[float]:
        return [d.objective - k.objective for d, k in self.pairs]

    def eps_ratios(self) -> list[float]:
        return [k.batch_eps / d.batch_eps if d.batch_eps > 0 else math.nan for d, k in self.pairs]

    def summary(self, problem: Problem) -> dict[str, Any]:
        imp = bootstrap_median(self.improvements())
        ratio = bootstrap_median(self.eps_ratios())
        base = statistics.median([d.objective for d, _ in self.pairs]) if self.pairs else math.nan
        rel = imp.median / base if base and math.isfinite(base) else math.nan
        rel_ci = (imp.low / base, imp.high / base) if base and math.isfinite(base) else (math.nan, math.nan)
        return {
            "config": self.config,
            "kept_by": self.kept_by,
            "improvement": asdict(imp),
            "relative_improvement": {"median": rel, "low": rel_ci[0], "high": rel_ci[1]},
            "verdict": imp.verdict(),
            "eps_ratio": asdict(ratio),
            "floor_ok": bool(math.isfinite(ratio.median) and ratio.median >= problem.floor_fraction),
            "pairs": [{"default": asdict(d), "kept": asdict(k)} for d, k in self.pairs],
        }


Measure = Callable[[Config], Window]


def paired_differences(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Round by round, ``a``'s improvement minus ``b``'s (both measured in the same rounds, so the
    round's default window cancels): what P(a beats b) is drawn from."""
    return [x - y for x, y in zip(a, b, strict=False)]


def interleaved(
    configs: dict[str, Config],
    default: Config,
    measure: Measure,
    *,
    pairs: int,
    seed: int = 0,
    say: Callable[[str], None] = lambda line: None,
) -> dict[str, list[tuple[Window, Window]]]:
    """Measure ``default`` and every configuration once per round, for ``pairs`` rounds, in
    alternating orders; returns each configuration's (default, its own) window pairs."""
    rng = random.Random(seed)
    out: dict[str, list[tuple[Window, Window]]] = {key: [] for key in configs}
    for r in range(pairs):
        keys = list(configs)
        rng.shuffle(keys)
        order: list[str | None] = [None, *keys] if r % 2 == 0 else [*keys, None]
        seen: dict[str, Window] = {}
        base: Window | None = None
        for key in order:
            window = measure(default if key is None else configs[key])
            if key is None:
                base = window
            else:
                seen[key] = window
        assert base is not None
        for key, window in seen.items():
            out[key].append((base, window))
        say(f"  evaluation round {r + 1}/{pairs}: default obj {base.objective:.4f}")
    return out


def evaluate_kept(
    problem: Problem,
    kept: Sequence[tuple[str, Config]],
    default: Config,
    measure: Measure,
    *,
    seed: int = 0,
    say: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Evaluate each run's kept configuration (``(run label, config)``) against ``default``; identical
    configurations are measured once and shared. A run that kept the default gets improvement 0 by
    construction (its pairs are default against default, which measures the noise floor)."""
    unique: dict[str, Config] = {}
    owners: dict[str, list[str]] = {}
    for label, config in kept:
        key = config_key(config)
        unique.setdefault(key, dict(config))
        owners.setdefault(key, []).append(label)
    key_default = config_key(default)
    unique.setdefault(key_default, dict(default))  # the noise floor: default against default
    owners.setdefault(key_default, [])
    measured = interleaved(unique, default, measure, pairs=problem.eval_pairs, seed=seed, say=say)
    evaluated = {key: Evaluated(unique[key], owners[key], measured[key]) for key in unique}
    summaries = {key: e.summary(problem) for key, e in evaluated.items()}
    beats = {
        a: {
            b: prob_paired_beats(paired_differences(evaluated[a].improvements(), evaluated[b].improvements()))
            for b in evaluated
            if b != a
        }
        for a in evaluated
    }
    return {
        "pairs": problem.eval_pairs,
        "window_s": problem.eval_window_s,
        "configs": summaries,
        "prob_beats": beats,
        "default_key": key_default,
    }


__all__ = [
    "Evaluated",
    "Interval",
    "Window",
    "bootstrap_median",
    "config_key",
    "evaluate_kept",
    "interleaved",
    "paired_differences",
    "prob_beats",
    "prob_paired_beats",
]
