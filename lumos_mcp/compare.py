"""Better, worse or no evidence: one metric's samples before and after a change, compared with a
bootstrap interval on the difference.

The product's keep rule (the built-in agent, the ``compare_windows`` tool) and the arena's
evaluation share these statistics, so the arena measures the product's own judgement.

:func:`compare` takes the raw samples of each window (per-request latencies, per-second p99s, a
histogram expanded by :func:`expand_histogram`), not one scalar per window: a verdict needs the
spread inside each window. The effect is ``statistic(after) - statistic(before)`` in the metric's
unit; its interval is a percentile bootstrap that resamples each window independently (the windows
are not paired). The verdict is "better" only when the whole interval lies on the good side of
``min_effect`` (a practical threshold, 0 by default), "worse" when it lies wholly on the bad side,
and "no evidence" otherwise, including when either window has fewer than ``MIN_SAMPLES`` samples.

Caveat, stated where it is used: samples inside one window are treated as independent. Per-request
latencies are autocorrelated (a stall delays a burst of requests together), so on such data the
interval is narrower than the truth; prefer per-second values over many seconds, or several
windows, when the stakes are high.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

Verdict = Literal["better", "worse", "no evidence"]
Statistic = Literal["median", "mean", "p90", "p95", "p99"]
STATISTICS: tuple[Statistic, ...] = ("median", "mean", "p90", "p95", "p99")

RESAMPLES = 10_000
MIN_SAMPLES = 3
"""Fewer samples than this on either side cannot carry a verdict."""
_CHUNK_VALUES = 2_000_000
"""Bootstrap draws held in memory at once (16 MB of float64): large windows are resampled in chunks."""

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


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


def _finite(values: Sequence[float]) -> FloatArray:
    data: FloatArray = np.asarray(values, dtype=float)
    finite: FloatArray = data[np.isfinite(data)]
    return finite


def _stat(data: FloatArray, statistic: Statistic, axis: int | None = None) -> Any:
    if statistic == "mean":
        return np.mean(data, axis=axis)
    q = {"median": 0.5, "p90": 0.90, "p95": 0.95, "p99": 0.99}[statistic]
    return np.quantile(data, q, axis=axis)


def _boot(data: FloatArray, statistic: Statistic, resamples: int, rng: np.random.Generator) -> FloatArray:
    """The statistic of ``resamples`` bootstrap resamples of ``data``, in bounded memory."""
    out = np.empty(resamples)
    chunk = max(1, _CHUNK_VALUES // max(1, len(data)))
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        picks = rng.integers(0, len(data), size=(stop - start, len(data)))
        out[start:stop] = _stat(data[picks], statistic, axis=1)
    return out


def bootstrap_median(
    values: Sequence[float], *, level: float = 0.95, resamples: int = RESAMPLES, seed: int = 0
) -> Interval:
    """The median of ``values`` (non-finite ones dropped) with a percentile-bootstrap interval."""
    data = _finite(values)
    if len(data) == 0:
        return Interval(math.nan, math.nan, math.nan, 0, level)
    meds = _boot(data, "median", resamples, np.random.default_rng(seed))
    tail = (1 - level) / 2
    low, high = np.quantile(meds, [tail, 1 - tail])
    return Interval(float(statistics.median(data.tolist())), float(low), float(high), len(data), level)


def prob_beats(a: Sequence[float], b: Sequence[float], *, resamples: int = RESAMPLES, seed: int = 0) -> float:
    """P(median of ``a`` > median of ``b``) over independent bootstrap resamples of each (ties count
    half): for two configurations' improvements, the probability that the first one is better."""
    da, db = _finite(a), _finite(b)
    if len(da) == 0 or len(db) == 0:
        return math.nan
    ma = _boot(da, "median", resamples, np.random.default_rng(seed))
    mb = _boot(db, "median", resamples, np.random.default_rng(seed + 1))
    return float(np.mean(ma > mb) + 0.5 * np.mean(ma == mb))


def prob_paired_beats(differences: Sequence[float], *, resamples: int = RESAMPLES, seed: int = 0) -> float:
    """P(median of the paired ``differences`` > 0) over bootstrap resamples of the pairs (ties count
    half). For two configurations measured in the same rounds, each round's difference (first minus
    second) cancels what the round shares (its default window, the host's drift), so this is sharper
    than :func:`prob_beats` and does not treat shared windows as independent."""
    data = _finite(differences)
    if len(data) == 0:
        return math.nan
    meds = _boot(data, "median", resamples, np.random.default_rng(seed))
    return float(np.mean(meds > 0) + 0.5 * np.mean(meds == 0))


@dataclass(frozen=True)
class Comparison:
    """The answer of :func:`compare`. ``effect`` = statistic after - statistic before, in the metric's
    unit, with its interval [``low``, ``high``]; ``relative`` = effect / statistic before (None when
    that is 0)."""

    verdict: Verdict
    statistic: Statistic
    lower_is_better: bool
    before: float
    after: float
    effect: float
    low: float
    high: float
    relative: float | None
    n_before: int
    n_after: int
    level: float
    min_effect: float
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(
    before: Sequence[float],
    after: Sequence[float],
    *,
    lower_is_better: bool = True,
    statistic: Statistic = "median",
    level: float = 0.95,
    min_effect: float = 0.0,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Comparison:
    """Compare ``after`` with ``before`` (non-finite samples dropped). Deterministic for a seed.

    Raises: ValueError: an unknown statistic, a level outside (0, 1), a negative min_effect, or
    fewer than 100 resamples.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {', '.join(STATISTICS)}, not {statistic!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, not {level}")
    if min_effect < 0 or not math.isfinite(min_effect):
        raise ValueError(f"min_effect must be a finite number >= 0, not {min_effect}")
    if resamples < 100:
        raise ValueError(f"resamples must be at least 100, not {resamples}")
    b, a = _finite(before), _finite(after)
    if len(b) < MIN_SAMPLES or len(a) < MIN_SAMPLES:
        sb = float(_stat(b, statistic)) if len(b) else math.nan
        sa = float(_stat(a, statistic)) if len(a) else math.nan
        return Comparison(
            "no evidence", statistic, lower_is_better, sb, sa, sa - sb, math.nan, math.nan,
            (sa - sb) / sb if sb else None, len(b), len(a), level, min_effect,
            f"too few samples: {len(b)} before and {len(a)} after (at least {MIN_SAMPLES} each)",
        )  # fmt: skip
    sb, sa = float(_stat(b, statistic)), float(_stat(a, statistic))
    rng = np.random.default_rng(seed)
    diffs = _boot(a, statistic, resamples, rng) - _boot(b, statistic, resamples, rng)
    tail = (1 - level) / 2
    low, high = (float(x) for x in np.quantile(diffs, [tail, 1 - tail]))
    # in the good direction the effect is negative when lower is better
    good_low, good_high = (low, high) if lower_is_better else (-high, -low)
    pct = f"{level:.0%}"
    if good_high < -min_effect:
        verdict: Verdict = "better"
        reason = f"the whole {pct} interval of the change is on the better side" + _beyond(min_effect)
    elif good_low > min_effect:
        verdict = "worse"
        reason = f"the whole {pct} interval of the change is on the worse side" + _beyond(min_effect)
    else:
        verdict = "no evidence"
        reason = f"the {pct} interval of the change reaches " + (
            f"within {min_effect:g} of no change" if min_effect else "no change"
        )
    return Comparison(
        verdict, statistic, lower_is_better, sb, sa, sa - sb, low, high, (sa - sb) / sb if sb else None,
        len(b), len(a), level, min_effect, reason,
    )  # fmt: skip


def _beyond(min_effect: float) -> str:
    return f", beyond the minimum effect {min_effect:g}" if min_effect else ""


def expand_histogram(buckets: Sequence[tuple[float, float]], *, max_samples: int = 20_000) -> list[float]:
    """Samples standing for a cumulative histogram, Prometheus style: ``(upper_bound, count)`` pairs
    with counts cumulative and the last bound possibly ``+Inf``. Each bucket's observations become
    values spread evenly inside it (between the previous bound and its own; the ``+Inf`` bucket at
    the last finite bound), scaled down proportionally to at most ``max_samples`` values.

    Raises: ValueError: bounds not increasing, counts decreasing or negative, or no finite bound.
    """
    pairs = sorted((float(le), float(c)) for le, c in buckets)
    if not pairs:
        return []
    bounds = [le for le, _ in pairs]
    if len(set(bounds)) != len(bounds):
        raise ValueError("histogram bucket bounds must be distinct")
    counts = [c for _, c in pairs]
    if any(c < 0 for c in counts) or any(later < earlier for earlier, later in itertools.pairwise(counts)):
        raise ValueError("histogram counts must be cumulative: never negative, never decreasing")
    finite = [le for le in bounds if math.isfinite(le)]
    if not finite:
        raise ValueError("a histogram needs at least one finite bucket bound")
    total = counts[-1]
    if total <= 0:
        return []
    scale = min(1.0, max_samples / total)
    out: list[float] = []
    previous_bound, previous_count = min(0.0, finite[0]), 0.0
    for le, cum in pairs:
        n = round((cum - previous_count) * scale)
        if n > 0:
            if math.isfinite(le):
                lo, hi = previous_bound, le
                out.extend(lo + (hi - lo) * (i + 0.5) / n for i in range(n))
            else:
                out.extend([finite[-1]] * n)
        previous_count = cum
        if math.isfinite(le):
            previous_bound = le
    return out
