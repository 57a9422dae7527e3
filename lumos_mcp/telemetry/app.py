"""Application metrics: values the agent reports (p99 latency, throughput) and loopback
Prometheus scrapes, kept with timestamps and summarised over a window.

A metric is fed one value at a time (one point per report: a per-second p99, say), as a batch
of samples (per-request latencies, each with its age), or as a histogram (Prometheus-style
cumulative buckets). Batches and histograms are kept as *samples* so that
:meth:`AppMetrics.window_samples` can hand a window's raw observations to
:func:`lumos_mcp.compare.compare`. Memory is bounded: at most ``MAX_SAMPLE_METRICS`` names hold
samples; each keeps its newest ``MAX_SAMPLES`` raw samples (16 bytes each, in at most
``capacity`` reports) and its newest ``capacity`` histogram intervals of at most ``MAX_BUCKETS``
buckets (8 bytes a bucket): with the defaults (100,000 samples, 3600 intervals, 32 buckets)
2.5 MB a name, 40 MB for the 16 names, plus the per-report overhead (about 0.5 KB a report).
"""

from __future__ import annotations

import ipaddress
import math
import re
import statistics
import threading
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from lumos_mcp.compare import Comparison, Statistic, compare, expand_histogram
from lumos_mcp.errors import (
    InvalidMetricError,
    InvalidWindowError,
    ScrapeError,
    ScrapeRefusedError,
    UnknownMetricError,
)

METRIC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$")
METRIC_UNIT = re.compile(r"^[A-Za-z0-9_%/.\u00b5-]{1,24}$")
MAX_SCRAPE_BYTES = 4 * 1024 * 1024
# The largest |value| an app metric may have: sums, squares and slopes over an hour of such
# values stay finite (two values of 1.7e308 made the mean overflow to inf, emitted as null).
MAX_APP_VALUE = 1e100
MAX_BATCH = 10_000
"""Values in one batch report."""
MAX_SAMPLE_AGE_S = 3600.0
"""A batch value's age (seconds before the report) is at most this: the telemetry's longest window."""
MAX_SAMPLES = 100_000
"""Raw samples kept per name (the oldest reports are dropped first)."""
MAX_BUCKETS = 32
"""Buckets in one histogram (Prometheus client libraries default to 11 or so)."""
MAX_SAMPLE_METRICS = 16
"""Names that hold batches or histograms."""
MAX_BUCKET_COUNT = 2**53
"""The largest cumulative bucket count: beyond it a float no longer counts by ones."""
HistogramCounts = Literal["since_start", "this_interval"]


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


FloatArray = np.ndarray[Any, np.dtype[np.float64]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]


@dataclass(frozen=True)
class _Interval:
    """One histogram interval: the observations between two reports (or in one, for
    ``this_interval``), as cumulative counts per upper bound, stamped at the report."""

    t: float
    bounds: tuple[float, ...]
    counts: IntArray

    def expanded(self, max_samples: int) -> list[float]:
        return expand_histogram(list(zip(self.bounds, self.counts.tolist(), strict=True)), max_samples=max_samples)


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)


class AppMetrics:
    """Timestamped values per metric name, bounded in names and in points per name; batches
    and histograms kept as samples (bounds in the module docstring)."""

    def __init__(self, clock: Callable[[], float], capacity: int = 3600, max_metrics: int = 256) -> None:
        self.clock = clock
        self.capacity = capacity
        self.max_metrics = max_metrics
        self._series: dict[str, deque[tuple[float, float]]] = {}
        self._units: dict[str, str] = {}
        self._chunks: dict[str, deque[tuple[FloatArray, FloatArray]]] = {}
        self._chunk_total: dict[str, int] = {}
        self._intervals: dict[str, deque[_Interval]] = {}
        self._histogram_seen: dict[str, tuple[tuple[float, ...], IntArray]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _check(name: str, unit: str, value: object) -> None:
        if not isinstance(name, str) or not METRIC_NAME.match(name):
            raise InvalidMetricError("name must match " + METRIC_NAME.pattern, name=name, value=value)
        if not isinstance(unit, str) or not METRIC_UNIT.match(unit):
            raise InvalidMetricError("unit must match " + METRIC_UNIT.pattern, name=name, value=value)

    def _register(self, name: str, unit: str, value: object, samples: bool) -> None:
        """Check ``unit`` against the name's and room for a new name; call under the lock."""
        known = self._units.get(name)
        if known is not None and known != unit:
            raise InvalidMetricError(f"{name} is reported in {known}, not {unit}", name=name, value=value)
        if known is None and len(self._units) >= self.max_metrics:
            raise InvalidMetricError(f"at most {self.max_metrics} app metrics", name=name, value=value)
        holders = self._chunks.keys() | self._intervals.keys()
        if samples and name not in holders and len(holders) >= MAX_SAMPLE_METRICS:
            raise InvalidMetricError(
                f"at most {MAX_SAMPLE_METRICS} app metrics hold batches or histograms", name=name, value=value
            )
        self._units[name] = unit

    def report(self, name: str, value: float, unit: str) -> None:
        """Store ``value`` (in ``unit``) for ``name`` at the clock's now.

        Raises:
            InvalidMetricError: a name or unit outside the patterns, a value that is not a finite
                number of at most ``MAX_APP_VALUE`` in size, a unit different from the one this name was
                first reported with, or too many names.
        """
        self._check(name, unit, value)
        if not _is_number(value) or not math.isfinite(value):
            raise InvalidMetricError("value must be a finite number", name=name, value=value)
        if abs(value) > MAX_APP_VALUE:
            raise InvalidMetricError(f"|value| must be at most {MAX_APP_VALUE:g}", name=name, value=value)
        with self._lock:
            self._register(name, unit, value, samples=False)
            self._series.setdefault(name, deque(maxlen=self.capacity)).append((self.clock(), float(value)))

    def report_samples(
        self, name: str, values: Sequence[float], unit: str, ages_s: Sequence[float] | None = None
    ) -> int:
        """Store a batch of samples (per-request latencies, say) for ``name``: each at the clock's
        now, or ``ages_s[i]`` seconds before it. Returns how many were stored.

        Raises:
            InvalidMetricError: a bad name or unit (as :meth:`report`); an empty batch or one of more
                than ``MAX_BATCH`` values; a value as :meth:`report` refuses it (``field``:
                ``values.<i>``); ``ages_s`` of another length than ``values`` or an age that is not a
                number in [0, ``MAX_SAMPLE_AGE_S``] (``field``: ``ages_s`` or ``ages_s.<i>``); a
                changed unit; too many names.
        """
        self._check(name, unit, None)
        if not isinstance(values, Sequence) or isinstance(values, str) or not 1 <= len(values) <= MAX_BATCH:
            raise InvalidMetricError(
                f"values must hold 1 to {MAX_BATCH} numbers", name=name, value=None, field="values"
            )
        for i, v in enumerate(values):
            if not _is_number(v) or not math.isfinite(v) or abs(v) > MAX_APP_VALUE:
                raise InvalidMetricError(
                    f"each value must be a finite number of at most {MAX_APP_VALUE:g} in size",
                    name=name, value=v, field=f"values.{i}",
                )  # fmt: skip
        ages = np.zeros(len(values))
        if ages_s is not None:
            if not isinstance(ages_s, Sequence) or len(ages_s) != len(values):
                raise InvalidMetricError("ages_s must have one age per value", name=name, value=None, field="ages_s")
            for i, a in enumerate(ages_s):
                if not _is_number(a) or not 0 <= a <= MAX_SAMPLE_AGE_S:
                    raise InvalidMetricError(
                        f"each age must be a number of seconds in [0, {MAX_SAMPLE_AGE_S:g}]",
                        name=name, value=a, field=f"ages_s.{i}",
                    )  # fmt: skip
            ages = np.asarray(ages_s, dtype=float)
        data: FloatArray = np.asarray(values, dtype=float)
        with self._lock:
            self._register(name, unit, values[0], samples=True)
            chunks = self._chunks.setdefault(name, deque())
            chunks.append((self.clock() - ages, data))
            total = self._chunk_total.get(name, 0) + len(data)
            while len(chunks) > self.capacity or total - len(chunks[0][1]) >= MAX_SAMPLES:
                total -= len(chunks.popleft()[1])
            if total > MAX_SAMPLES:  # cut the oldest chunk to the bound
                t0, v0 = chunks[0]
                cut = total - MAX_SAMPLES
                chunks[0] = (t0[cut:], v0[cut:])
                total = MAX_SAMPLES
            self._chunk_total[name] = total
        return len(data)

    def report_histogram(
        self,
        name: str,
        buckets: Sequence[tuple[float, float]],
        unit: str,
        counts: HistogramCounts = "since_start",
    ) -> int:
        """Store a histogram for ``name``: ``(le, cumulative_count)`` pairs as Prometheus exports them
        (each count is of observations <= ``le``; ``le`` may be +inf; any order).

        ``counts="since_start"``: the counts are counters since the exporter started, as a scrape
        sees them: the interval's observations are the difference from this name's previous report
        (the first report only seeds it, as a counter's first scrape does), and a count lower than
        before means the exporter restarted (a counter reset), so the new counts are the interval.
        ``counts="this_interval"``: the counts are this interval's own observations.
        Returns the observations recorded (0 for a seeding report or an empty interval).

        Raises:
            InvalidMetricError: a bad name or unit; no bucket or more than ``MAX_BUCKETS``; a bound
                that is NaN or repeated; no finite bound; a count that is not an integer in
                [0, 2**53]; counts that decrease as the bound grows (``field`` names the part:
                ``histogram``, ``histogram.<i>.le`` or ``histogram.<i>.count``); a changed unit;
                too many names.
        """
        self._check(name, unit, None)
        if not isinstance(buckets, Sequence) or not 1 <= len(buckets) <= MAX_BUCKETS:
            raise InvalidMetricError(
                f"a histogram has 1 to {MAX_BUCKETS} buckets", name=name, value=None, field="histogram"
            )
        for i, (le, c) in enumerate(buckets):
            if not _is_number(le) or math.isnan(le):
                raise InvalidMetricError("a bound is a number or +inf", name=name, value=le, field=f"histogram.{i}.le")
            if not _is_number(c) or not 0 <= c <= MAX_BUCKET_COUNT or c != int(c):
                raise InvalidMetricError(
                    "a count is a whole number >= 0", name=name, value=c, field=f"histogram.{i}.count"
                )
        pairs = sorted((float(le), int(c)) for le, c in buckets)
        bounds = tuple(le for le, _ in pairs)
        cumulative: IntArray = np.asarray([c for _, c in pairs], dtype=np.int64)
        if len(set(bounds)) != len(bounds):
            raise InvalidMetricError("bucket bounds must be distinct", name=name, value=None, field="histogram")
        if not any(math.isfinite(le) for le in bounds):
            raise InvalidMetricError("a histogram needs a finite bound", name=name, value=None, field="histogram")
        if (np.diff(cumulative) < 0).any():
            raise InvalidMetricError(
                "counts are cumulative: they never decrease as the bound grows",
                name=name, value=None, field="histogram",
            )  # fmt: skip
        with self._lock:
            self._register(name, unit, None, samples=True)
            interval = cumulative
            if counts == "since_start":
                previous = self._histogram_seen.get(name)
                self._histogram_seen[name] = (bounds, cumulative)
                if previous is None or previous[0] != bounds:
                    self._intervals.setdefault(name, deque(maxlen=self.capacity))
                    return 0
                delta = cumulative - previous[1]
                # a reset: some counter went down (the exporter restarted); counts are since the reset
                interval = cumulative if (delta < 0).any() or (np.diff(delta) < 0).any() else delta
            intervals = self._intervals.setdefault(name, deque(maxlen=self.capacity))
            if interval[-1] <= 0:
                return 0
            intervals.append(_Interval(self.clock(), bounds, interval))
        return int(interval[-1])

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._units)

    def unit_of(self, name: str) -> str | None:
        with self._lock:
            return self._units.get(name)

    def series(self, since: float | None = None) -> dict[str, list[tuple[float, float]]]:
        """``{name: [(t, value), ...]}`` oldest first, optionally from ``since`` on (single values only)."""
        with self._lock:
            copied = {k: list(v) for k, v in self._series.items()}
        if since is None:
            return copied
        return {k: [p for p in v if p[0] >= since] for k, v in copied.items()}

    def _window(
        self, name: str, start: float, end: float, open_start: bool = False
    ) -> tuple[list[tuple[float, float]], list[_Interval]]:
        """Single values and batch samples as ``(t, value)`` in ``[start, end]`` (``(start, end]``
        with ``open_start``) by time, and the histogram intervals stamped there."""

        def inside_(t: float) -> bool:
            return (start < t if open_start else start <= t) and t <= end

        with self._lock:
            points = [p for p in self._series.get(name, ()) if inside_(p[0])]
            chunks = list(self._chunks.get(name, ()))
            intervals = [i for i in self._intervals.get(name, ()) if inside_(i.t)]
        for t, v in chunks:
            inside = ((t > start) if open_start else (t >= start)) & (t <= end)
            if inside.any():
                points.extend(zip(t[inside].tolist(), v[inside].tolist(), strict=True))
        points.sort(key=lambda p: p[0])
        return points, intervals

    def window_samples(self, name: str, start: float, end: float, max_histogram_samples: int = 20_000) -> list[float]:
        """Every observation of ``name`` in ``(start, end]`` (the clock's seconds; open at the start so
        that two adjacent windows share no sample): its single values, its batch samples, and its
        histogram intervals stamped there, summed and expanded
        (:func:`lumos_mcp.compare.expand_histogram`, at most ``max_histogram_samples`` values per
        bucket layout). Empty for a name never reported."""
        points, intervals = self._window(name, start, end, open_start=True)
        values = [v for _, v in points]
        for bounds, summed in _sum_intervals(intervals).items():
            values.extend(expand_histogram(list(zip(bounds, summed, strict=True)), max_samples=max_histogram_samples))
        return values

    def summaries(self, since: float, now: float) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """Last, mean and p95 of each metric over ``[since, now]``; names without a value there are
        reported as unavailable. A histogram's observations count in ``count``, ``mean`` and
        ``p95`` (spread inside their buckets); its ``last`` is the median of its newest interval."""
        out: list[dict[str, Any]] = []
        missing: dict[str, str] = {}
        with self._lock:
            units = dict(self._units)
        for name in sorted(units):
            entry = _summarise(name, units[name], *self._window(name, since, now), now)
            if entry is None:
                missing[f"app.{name}"] = "no value reported in the window"
            else:
                out.append(entry)
        return out, missing

    def summary(self, name: str, since: float, now: float) -> dict[str, Any] | None:
        """``summaries(since, now)``'s entry for ``name`` alone (None: no value there). A name fed only
        single values reads just the points from ``since`` on: reports are stamped in clock order
        under the lock, so the walk back stops at the first older one (the guards' per-sample cost;
        no copy of the series). Batches and histograms are read as ``summaries`` reads them."""
        with self._lock:
            unit = self._units.get(name)
            if unit is None:
                return None
            if name not in self._chunks and name not in self._intervals:
                points: list[tuple[float, float]] = []
                for point in reversed(self._series.get(name, ())):
                    if point[0] < since:
                        break
                    if point[0] <= now:
                        points.append(point)
                points.reverse()
                return _summarise(name, unit, points, [], now)
        return _summarise(name, unit, *self._window(name, since, now), now)


def _summarise(
    name: str, unit: str, points: list[tuple[float, float]], intervals: list[_Interval], now: float
) -> dict[str, Any] | None:
    """One metric's summary over a window from its ``(t, value)`` points and histogram intervals
    there (None when both are empty). A histogram's observations count in ``count``, ``mean`` and
    ``p95`` (spread inside their buckets); its ``last`` is the median of its newest interval."""
    if not points and not intervals:
        return None
    values = [v for _, v in points]
    count = len(values)
    last_t, last = (points[-1][0], points[-1][1]) if points else (-math.inf, math.nan)
    for bounds, summed in _sum_intervals(intervals).items():
        values.extend(expand_histogram(list(zip(bounds, summed, strict=True)), max_samples=2_000))
        count += int(summed[-1])
    if intervals and intervals[-1].t >= last_t:
        last_t, last = intervals[-1].t, statistics.median(intervals[-1].expanded(2_000))
    return {
        "name": name,
        "unit": unit,
        "last": last,
        "mean": sum(values) / len(values),
        "p95": percentile(values, 95),
        "count": count,
        "last_age_s": max(0.0, now - last_t),
    }


def _sum_intervals(intervals: Iterable[_Interval]) -> dict[tuple[float, ...], list[int]]:
    """Histogram intervals summed per bucket layout (cumulative counts add up)."""
    sums: dict[tuple[float, ...], IntArray] = {}
    for i in intervals:
        sums[i.bounds] = sums[i.bounds] + i.counts if i.bounds in sums else i.counts.copy()
    return {b: c.tolist() for b, c in sums.items()}


# --------------------------------------------------------------------------- two windows compared
Window = tuple[float, float]
"""``(start, end)`` in seconds before now: ``(600, 300)`` is from ten to five minutes ago."""
COMPARE_RESAMPLES = 2_000
"""Bootstrap resamples per comparison."""
MAX_COMPARED = 10_000
"""Samples a side a comparison uses: a larger window is thinned to a random subset (seeded), which
widens the interval a little and keeps the bootstrap to seconds on one core."""


@dataclass(frozen=True)
class WindowComparison:
    """:func:`compare_app_windows`' answer: the windows measured and the comparison."""

    metric: str
    unit: str
    before_ago_s: Window
    after_ago_s: Window
    comparison: Comparison


def _thin(values: list[float], seed: int) -> list[float]:
    if len(values) <= MAX_COMPARED:
        return values
    picked = np.random.default_rng(seed).choice(len(values), size=MAX_COMPARED, replace=False)
    return [values[i] for i in sorted(picked.tolist())]


def check_windows(before: Window, after: Window) -> None:
    """Each window is ``(start, end)`` seconds ago with ``MAX_SAMPLE_AGE_S >= start > end >= 0``,
    and ``before`` ends no later than ``after`` starts (no sample is in both).

    Raises:
        InvalidWindowError: a window out of those bounds (``window`` names it), or overlapping windows.
    """
    for label, (start, end) in (("before", before), ("after", after)):
        if not (math.isfinite(start) and math.isfinite(end) and MAX_SAMPLE_AGE_S >= start > end >= 0):
            raise InvalidWindowError(
                f"[start, end] in seconds ago with {MAX_SAMPLE_AGE_S:g} >= start > end >= 0, not [{start:g}, {end:g}]",
                window=label, start_ago_s=start, end_ago_s=end,
            )  # fmt: skip
    if before[1] < after[0]:
        raise InvalidWindowError(
            "the before window must end (seconds ago) no later than the after window starts",
            window="after", start_ago_s=after[0], end_ago_s=after[1],
        )  # fmt: skip


def windows_around(applied_ago_s: float, ended_ago_s: float, window_s: float | None = None) -> tuple[Window, Window]:
    """The windows around a change applied ``applied_ago_s`` seconds ago (and reverted
    ``ended_ago_s`` ago, or 0 while it is in force): ``after`` runs from the apply for ``window_s``
    (default: up to ``ended_ago_s``), ``before`` is as long and ends at the apply; both are cut to
    what the store holds (``MAX_SAMPLE_AGE_S``).

    Raises:
        InvalidWindowError: (``window="txid"``) the apply is older than the store holds.
    """
    if applied_ago_s > MAX_SAMPLE_AGE_S:
        raise InvalidWindowError(
            f"applied {applied_ago_s:.0f} s ago: samples are kept for {MAX_SAMPLE_AGE_S:g} s",
            window="txid", start_ago_s=applied_ago_s, end_ago_s=ended_ago_s,
        )  # fmt: skip
    length = applied_ago_s - ended_ago_s if window_s is None else min(window_s, applied_ago_s - ended_ago_s)
    length = max(0.0, length)
    return (min(MAX_SAMPLE_AGE_S, applied_ago_s + length), applied_ago_s), (applied_ago_s, applied_ago_s - length)


def resolve_windows(
    before: Sequence[float] | None,
    after: Sequence[float] | None,
    applied: tuple[float, float] | None = None,
    window_s: float | None = None,
) -> tuple[Window, Window]:
    """The two windows a caller asked for: ``before`` and ``after`` as given (checked), or, with
    ``applied`` (a transaction's apply and end, seconds ago), :func:`windows_around` it.

    Raises:
        InvalidWindowError: windows and a transaction both or neither, or windows that break
            :func:`check_windows`.
    """
    if applied is not None:
        if before is not None or after is not None:
            raise InvalidWindowError(
                "give txid or before and after, not both", window="txid", start_ago_s=applied[0], end_ago_s=applied[1]
            )
        return windows_around(applied[0], applied[1], window_s)
    if before is None or after is None:
        raise InvalidWindowError(
            "give txid, or both before and after", window="before" if before is None else "after",
            start_ago_s=0.0, end_ago_s=0.0,
        )  # fmt: skip
    windows = (before[0], before[1]), (after[0], after[1])
    check_windows(*windows)
    return windows


def compare_app_windows(
    app: AppMetrics,
    metric: str,
    before: Window,
    after: Window,
    *,
    lower_is_better: bool = True,
    statistic: Statistic = "median",
    level: float = 0.95,
    min_effect: float = 0.0,
    resamples: int = COMPARE_RESAMPLES,
) -> WindowComparison:
    """Compare ``metric``'s observations in the ``after`` window with those in ``before``
    (:meth:`AppMetrics.window_samples`, :func:`lumos_mcp.compare.compare`; seed 0, so the same
    samples give the same answer). Too few samples is a "no evidence" verdict, not an error.

    A window holding more than ``MAX_COMPARED`` samples is thinned to that many (``n_before`` and
    ``n_after`` count the samples used).

    Raises:
        UnknownMetricError: ``metric`` was never reported (``known`` lists up to 50 that were).
        InvalidWindowError: the windows break :func:`check_windows`, or an option is out of range.
    """
    unit = app.unit_of(metric)
    if unit is None:
        raise UnknownMetricError(metric=metric, known=app.names()[:50])
    if before[0] != before[1] or after[0] != after[1]:  # empty windows (a txid applied just now) measure nothing
        check_windows(before, after)
    now = app.clock()
    b = _thin(app.window_samples(metric, now - before[0], now - before[1], MAX_COMPARED), 1)
    a = _thin(app.window_samples(metric, now - after[0], now - after[1], MAX_COMPARED), 2)
    try:
        result = compare(
            b, a, lower_is_better=lower_is_better, statistic=statistic, level=level, min_effect=min_effect,
            resamples=resamples,
        )  # fmt: skip
    except ValueError as e:
        raise InvalidWindowError(str(e), window="options", start_ago_s=before[0], end_ago_s=after[1]) from None
    return WindowComparison(metric, unit, before, after, result)


# --------------------------------------------------------------------------- Prometheus text format
@dataclass(frozen=True)
class PromSample:
    """One sample line; ``type`` comes from its ``# TYPE`` line (``untyped`` without one)."""

    name: str
    labels: Mapping[str, str]
    value: float
    type: str


_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")
_PROM_NAME = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:]*")


def _parse_labels(text: str, line: str) -> tuple[dict[str, str], str]:
    """Parse ``{a="x",b="y"}`` at the start of ``text``; returns labels and the rest.

    Raises:
        ScrapeError: a malformed label set.
    """
    labels: dict[str, str] = {}
    i = 1
    while True:
        while i < len(text) and text[i] in " ,":
            i += 1
        if i < len(text) and text[i] == "}":
            return labels, text[i + 1 :]
        m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[i:])
        if m is None or text[i + m.end() : i + m.end() + 2] != '="':
            raise ScrapeError(f"bad label set in {line!r}", url="(text)")
        key = m.group(0)
        i += m.end() + 2
        value: list[str] = []
        while True:
            if i >= len(text):
                raise ScrapeError(f"unterminated label value in {line!r}", url="(text)")
            c = text[i]
            if c == "\\" and i + 1 < len(text):
                nxt = text[i + 1]
                value.append("\n" if nxt == "n" else nxt)
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                value.append(c)
                i += 1
        labels[key] = "".join(value)


def parse_prometheus_text(text: str) -> list[PromSample]:
    """Parse the Prometheus text exposition format (version 0.0.4).

    Raises:
        ScrapeError: a sample line that is not ``name[{labels}] value [timestamp]``.
    """
    types: dict[str, str] = {}
    samples: list[PromSample] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                types[parts[2]] = parts[3].strip()
            continue
        m = _PROM_NAME.match(line)
        if m is None:
            raise ScrapeError(f"bad sample line {line!r}", url="(text)")
        name, rest = m.group(0), line[m.end() :]
        labels: dict[str, str] = {}
        if rest.startswith("{"):
            labels, rest = _parse_labels(rest, line)
        tokens = rest.split()
        if not tokens:
            raise ScrapeError(f"no value in {line!r}", url="(text)")
        try:
            value = float(tokens[0])
        except ValueError:
            raise ScrapeError(f"bad value in {line!r}", url="(text)") from None
        kind = types.get(name)
        if kind is None:
            base = next((name[: -len(s)] for s in _SUFFIXES if name.endswith(s) and name[: -len(s)] in types), None)
            kind = types[base] if base is not None else "untyped"
        samples.append(PromSample(name, MappingProxyType(labels), value, kind))
    return samples


@dataclass(frozen=True)
class PromHistogram:
    """One histogram series of a scrape: its family ``name`` (without ``_bucket``), its labels
    (without ``le``), its ``(le, cumulative_count)`` buckets (``+Inf`` included: from ``_count``
    when the exposition has no ``+Inf`` bucket), and its ``_sum`` and ``_count`` if present."""

    name: str
    labels: Mapping[str, str]
    buckets: tuple[tuple[float, float], ...]
    sum: float | None
    count: float | None


def prometheus_histograms(samples: Iterable[PromSample]) -> list[PromHistogram]:
    """The histogram series among ``samples`` (those a ``# TYPE name histogram`` line types), one
    per family and label set, in the order they first appear.

    Raises:
        ScrapeError: a ``_bucket`` sample without an ``le`` label, or with one that is not a number.
    """
    found: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any]] = {}
    for s in samples:
        if s.type != "histogram":
            continue
        suffix = next((x for x in ("_bucket", "_sum", "_count") if s.name.endswith(x)), None)
        if suffix is None:
            continue
        labels = {k: v for k, v in s.labels.items() if k != "le"}
        entry = found.setdefault(
            (s.name[: -len(suffix)], tuple(sorted(labels.items()))),
            {"labels": labels, "buckets": {}, "sum": None, "count": None},
        )
        if suffix == "_bucket":
            le = s.labels.get("le")
            try:
                bound = float(le) if le is not None else math.nan
            except ValueError:
                bound = math.nan
            if math.isnan(bound):
                raise ScrapeError(f"{s.name} has a bucket without a numeric le label", url="(text)")
            entry["buckets"][bound] = s.value
        else:
            entry[suffix[1:]] = s.value
    out = []
    for (name, _), e in found.items():
        buckets: dict[float, float] = e["buckets"]
        if not buckets:
            continue
        if math.inf not in buckets and e["count"] is not None:
            buckets[math.inf] = e["count"]
        out.append(
            PromHistogram(name, MappingProxyType(e["labels"]), tuple(sorted(buckets.items())), e["sum"], e["count"])
        )
    return out


def loopback_url(url: str) -> str:
    """The URL to fetch if ``url`` is http(s) on a loopback address; ``localhost`` becomes 127.0.0.1
    so that no resolver can send the request elsewhere.

    Raises:
        ScrapeRefusedError: another scheme, a host that is not a loopback IP or ``localhost``, or credentials.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ScrapeRefusedError("only http and https", url=url)
    if parts.username or parts.password:
        raise ScrapeRefusedError("no credentials in the URL", url=url)
    host = parts.hostname or ""
    if host == "localhost":
        ip = ipaddress.ip_address("127.0.0.1")
    else:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ScrapeRefusedError("the host must be a loopback IP or localhost", url=url) from None
    if not ip.is_loopback:
        raise ScrapeRefusedError("the host is not a loopback address", url=url)
    try:
        port = parts.port
    except ValueError:
        raise ScrapeRefusedError("bad port", url=url) from None
    netloc = f"[{ip}]" if ip.version == 6 else str(ip)
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect could leave loopback: treat it as the final answer (an HTTP error)


def scrape_prometheus(url: str, timeout_s: float = 2.0, max_bytes: int = MAX_SCRAPE_BYTES) -> list[PromSample]:
    """Fetch and parse a loopback Prometheus endpoint (blocking: call it from a worker thread).

    No proxy is used and no redirect is followed.

    Raises:
        ScrapeRefusedError: the URL is not on loopback.
        ScrapeError: connection failure, an HTTP error, a body over ``max_bytes``, or a malformed text.
    """
    target = loopback_url(url)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
    request = urllib.request.Request(target, headers={"Accept": "text/plain;version=0.0.4"})
    try:
        with opener.open(request, timeout=timeout_s) as response:
            body = response.read(max_bytes + 1)
    except urllib.error.HTTPError as e:
        e.close()
        raise ScrapeError(f"HTTP {e.code}", url=url, status=e.code) from None
    except (urllib.error.URLError, OSError) as e:
        raise ScrapeError(str(getattr(e, "reason", e)), url=url) from None
    if len(body) > max_bytes:
        raise ScrapeError(f"body larger than {max_bytes} bytes", url=url)
    try:
        return parse_prometheus_text(body.decode("utf-8", errors="replace"))
    except ScrapeError as e:
        raise ScrapeError(e.detail, url=url) from None


def app_metric_name(sample: PromSample, prefix: str = "") -> str:
    """An app metric name for a Prometheus series: ``prefix + name`` plus its label values."""
    parts = [prefix + sample.name] + [sample.labels[k] for k in sorted(sample.labels)]
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", ".".join(parts))[:128]
