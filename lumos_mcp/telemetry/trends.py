"""Trend statistics per metric and the change-point rule.

The rule (``ShiftRule``), applied to each metric's per-interval values: the *current* window
is the last ``window_s`` seconds, the *baseline* the ``baseline_s`` seconds before it. A shift
is declared when, with at least ``min_points`` values on each side,

    |mean_current - mean_baseline| > k_sd * pooled_sd            (larger than the noise)
    |mean_current - mean_baseline| > max(rel_floor * |mean_baseline|, abs_floor)   (and material)

``pooled_sd`` is the two-sample pooled standard deviation. Comparing with ``k_sd`` standard
deviations of single values (not of the means) is deliberately conservative: a 1 Hz series
is autocorrelated, so a t-test on means would fire on ordinary wander.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ShiftRule:
    k_sd: float = 3.0
    rel_floor: float = 0.10
    abs_floor: float = 1e-6
    min_points: int = 3
    ewma_alpha: float = 0.3

    def describe(self) -> str:
        return (
            f"shift when |mean_current - mean_baseline| > {self.k_sd} x pooled sd and > "
            f"max({self.rel_floor:.0%} of |mean_baseline|, {self.abs_floor}), "
            f"with >= {self.min_points} values on each side; ewma alpha {self.ewma_alpha}"
        )


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def variance(values: Sequence[float]) -> float:
    """Sample variance (n - 1); 0 for fewer than two values."""
    if len(values) < 2:
        return 0.0
    m = mean(values)
    return sum((v - m) ** 2 for v in values) / (len(values) - 1)


def pooled_sd(a: Sequence[float], b: Sequence[float]) -> float:
    dof = len(a) + len(b) - 2
    if dof <= 0:
        return 0.0
    return math.sqrt(((len(a) - 1) * variance(a) + (len(b) - 1) * variance(b)) / dof)


def slope_per_s(ts: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ``ys`` against ``ts`` (unit per second); ``None`` below two distinct times."""
    if len(ts) < 2:
        return None
    mt, my = mean(ts), mean(ys)
    sxx = sum((t - mt) ** 2 for t in ts)
    if sxx == 0:
        return None
    return sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / sxx


def ewma(values: Sequence[float], alpha: float) -> float:
    """Exponentially weighted moving average, oldest first (the newest weighs ``alpha``)."""
    acc = values[0]
    for v in values[1:]:
        acc = alpha * v + (1 - alpha) * acc
    return acc


def metric_trend(
    current: Sequence[tuple[float, float]], baseline: Sequence[tuple[float, float]], rule: ShiftRule
) -> dict[str, Any] | None:
    """Trend of one metric from ``(t, value)`` points; ``None`` when the current window is empty."""
    if not current:
        return None
    cur = [v for _, v in current]
    base = [v for _, v in baseline]
    cur_mean = mean(cur)
    base_mean = mean(base) if base else None
    delta = None if base_mean is None else cur_mean - base_mean
    delta_pct = None
    if delta is not None and base_mean:
        delta_pct = 100.0 * delta / abs(base_mean)
        if not math.isfinite(delta_pct):  # a baseline too close to zero for a ratio
            delta_pct = None
    sd = pooled_sd(cur, base)
    shift = False
    if delta is not None and base_mean is not None and len(cur) >= rule.min_points and len(base) >= rule.min_points:
        floor = max(rule.rel_floor * abs(base_mean), rule.abs_floor)
        shift = abs(delta) > rule.k_sd * sd and abs(delta) > floor
    return {
        "current_mean": cur_mean,
        "baseline_mean": base_mean,
        "delta": delta,
        "delta_pct": delta_pct,
        "slope_per_s": slope_per_s([t for t, _ in current], cur),
        "ewma": ewma(base + cur, rule.ewma_alpha),
        "pooled_sd": sd,
        "current_samples": len(cur),
        "baseline_samples": len(base),
        "shift": shift,
    }


def compute_trends(
    series: dict[str, list[tuple[float, float]]], split_t: float, rule: ShiftRule
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Per-metric trends and the list of shifts; points with ``t > split_t`` are current.

    Shifts are sorted by effect size (|delta| / pooled sd), largest first.
    """
    metrics: dict[str, dict[str, Any]] = {}
    shifts: list[dict[str, Any]] = []
    for name, points in sorted(series.items()):
        current = [p for p in points if p[0] > split_t]
        baseline = [p for p in points if p[0] <= split_t]
        trend = metric_trend(current, baseline, rule)
        if trend is None:
            continue
        metrics[name] = trend
        if trend["shift"]:
            delta = trend["delta"]
            sd = trend["pooled_sd"]
            shifts.append(
                {
                    "metric": name,
                    "direction": "up" if delta > 0 else "down",
                    "magnitude": abs(delta),
                    "delta_pct": trend["delta_pct"],
                    "effect_sd": abs(delta) / sd if sd > 0 else None,
                }
            )
    shifts.sort(key=lambda s: -(s["effect_sd"] if s["effect_sd"] is not None else math.inf))
    return metrics, shifts
