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
probability that one's median improvement beats the other's, from independent bootstrap resamples.
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
from typing import Any, Literal

import numpy as np

from lumos_mcp.arena.problems import Config, Problem

RESAMPLES = 10_000
Verdict = Literal["better", "worse", "no evidence"]


@dataclass(frozen=True)
class Interval:
    """A median and its two-sided bootstrap interval."""

    median: float
    low: float
    high: float
    n: int
    level: float = 0.95

    def verdict(self) -> Verdict:
        """For an improvement (higher is better): better when the whole interval is above zero."""
        if self.n == 0 or not math.isfinite(self.low):
            return "no evidence"
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "no evidence"

    def text(self, fmt: str = ".4f") -> str:
        return f"{self.median:{fmt}} [{self.low:{fmt}}, {self.high:{fmt}}]"


def _medians(values: Sequence[float], resamples: int, seed: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    data = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(data), size=(resamples, len(data)))
    return np.median(data[picks], axis=1)  # type: ignore[no-any-return]


def bootstrap_median(
    values: Sequence[float], *, level: float = 0.95, resamples: int = RESAMPLES, seed: int = 0
) -> Interval:
    """The median of ``values`` (non-finite ones dropped) with a percentile-bootstrap interval."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return Interval(math.nan, math.nan, math.nan, 0, level)
    meds = _medians(finite, resamples, seed)
    tail = (1 - level) / 2
    low, high = np.quantile(meds, [tail, 1 - tail])
    return Interval(float(statistics.median(finite)), float(low), float(high), len(finite), level)


def prob_beats(a: Sequence[float], b: Sequence[float], *, resamples: int = RESAMPLES, seed: int = 0) -> float:
    """P(median of ``a`` > median of ``b``) over independent bootstrap resamples of each (ties count
    half): for two configurations' improvements, the probability that the first one is better."""
    if not [v for v in a if math.isfinite(v)] or not [v for v in b if math.isfinite(v)]:
        return math.nan
    ma, mb = _medians(a, resamples, seed), _medians(b, resamples, seed + 1)
    return float(np.mean(ma > mb) + 0.5 * np.mean(ma == mb))


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
        a: {b: prob_beats(evaluated[a].improvements(), evaluated[b].improvements()) for b in evaluated if b != a}
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
    "prob_beats",
]
