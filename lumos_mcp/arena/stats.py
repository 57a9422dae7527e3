"""Tail statistics of latency samples, repeats, the throughput floor, and pgbench's logs.

Percentiles are nearest-rank: p99 is the smallest sample with at least 99% of the samples at
or below it (numpy's ``inverted_cdf``), so every reported value was really observed and a
small log can be checked by hand. Requests that timed out count as infinitely slow: they
are in the percentiles' denominator and over every SLO, never silently dropped.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_FAILED_WORDS = {"failed", "serialization", "deadlock"}
_TPS_RE = re.compile(r"^tps = ([0-9.]+) \((?:without|excluding) initial connection", re.MULTILINE)


@dataclass(frozen=True)
class TailStats:
    """Latency tail of one measurement window (all times in microseconds)."""

    count: int
    timed_out: int
    p50_us: float
    p95_us: float
    p99_us: float
    p999_us: float
    mean_us: float
    max_us: float
    slo_us: float
    frac_over_slo: float
    throughput: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def nearest_rank(sorted_us: FloatArray, total: int, pct: float) -> float:
    """The ``pct`` percentile by nearest rank over ``total`` samples, of which ``sorted_us`` (ascending)
    are the answered ones and the rest are infinitely slow.

    Raises:
        ValueError: ``total`` is 0 or below ``len(sorted_us)``, or ``pct`` outside (0, 100].
    """
    if total <= 0 or total < len(sorted_us) or not 0 < pct <= 100:
        raise ValueError(f"bad percentile request: pct={pct}, total={total}, answered={len(sorted_us)}")
    rank = max(1, math.ceil(pct / 100.0 * total - 1e-9))
    return float(sorted_us[rank - 1]) if rank <= len(sorted_us) else math.inf


def tail_stats(
    latencies_us: npt.ArrayLike, slo_us: float, *, timed_out: int = 0, throughput: float | None = None
) -> TailStats:
    """p50, p95, p99, p99.9, mean, max and the fraction over ``slo_us`` of one window.

    ``timed_out`` requests are infinitely slow for the percentiles and the SLO fraction;
    ``mean_us`` and ``max_us`` are over answered requests only (``nan`` when none answered).

    Raises:
        ValueError: no samples at all, negative or non-finite latencies, or a negative count.
    """
    lat = np.sort(np.asarray(latencies_us, dtype=np.float64).ravel())
    if timed_out < 0:
        raise ValueError("timed_out must be >= 0")
    if lat.size and (not np.all(np.isfinite(lat)) or lat[0] < 0):
        raise ValueError("latencies must be finite and >= 0")
    total = int(lat.size) + timed_out
    if total == 0:
        raise ValueError("no samples: nothing was measured in this window")
    over = int(np.count_nonzero(lat > slo_us)) + timed_out
    return TailStats(
        count=int(lat.size),
        timed_out=timed_out,
        p50_us=nearest_rank(lat, total, 50),
        p95_us=nearest_rank(lat, total, 95),
        p99_us=nearest_rank(lat, total, 99),
        p999_us=nearest_rank(lat, total, 99.9),
        mean_us=float(lat.mean()) if lat.size else math.nan,
        max_us=float(lat[-1]) if lat.size else math.nan,
        slo_us=float(slo_us),
        frac_over_slo=over / total,
        throughput=throughput,
    )


def median_of_repeats(repeats: Sequence[TailStats]) -> TailStats:
    """Field-wise median of repeated windows (the reference machine's noise is about 30% run to run).

    ``count`` and ``timed_out`` are summed (how much evidence is behind the medians); every
    other field is the median of the repeats' values (``throughput`` when all have one).

    Raises:
        ValueError: no repeats, or repeats measured against different SLOs.
    """
    if not repeats:
        raise ValueError("median_of_repeats needs at least one repeat")
    if len({r.slo_us for r in repeats}) != 1:
        raise ValueError("repeats were measured against different SLOs")
    values: dict[str, Any] = {}
    for f in fields(TailStats):
        column = [getattr(r, f.name) for r in repeats]
        if f.name in ("count", "timed_out"):
            values[f.name] = sum(column)
        elif f.name == "throughput":
            values[f.name] = None if any(v is None for v in column) else float(statistics.median(column))
        else:
            values[f.name] = float(statistics.median(column))
    return TailStats(**values)


def throughput_floor_ok(measured: float, baseline: float, floor_fraction: float) -> bool:
    """Whether ``measured`` throughput keeps at least ``floor_fraction`` of ``baseline``
    (``throughput_floor_ok(8000, 8900, 0.9)`` is True). ``nan`` measured fails.

    Raises:
        ValueError: ``baseline`` not positive, or ``floor_fraction`` outside (0, 1].
    """
    if not baseline > 0 or not math.isfinite(baseline):
        raise ValueError(f"baseline must be a positive number, not {baseline}")
    if not 0 < floor_fraction <= 1:
        raise ValueError(f"floor_fraction must be in (0, 1], not {floor_fraction}")
    return bool(measured >= floor_fraction * baseline)


@dataclass(frozen=True)
class PgbenchLog:
    """A parsed pgbench per-transaction log (``pgbench -l``)."""

    latencies_us: FloatArray
    """Per completed transaction: from its scheduled start (its actual start without ``--rate``)."""
    lags_us: FloatArray
    """Schedule lag per completed transaction (zeros without ``--rate``)."""
    skipped: int
    failed: int
    first_end_s: float
    last_end_s: float


def parse_pgbench_log(text: str, *, rate_limited: bool) -> PgbenchLog:
    """Parse ``client_id transaction_no time script_no time_epoch time_us [schedule_lag [retries]]``.

    pgbench computes ``time`` as completion minus the *scheduled* start (``now -
    txn_scheduled`` in pgbench.c), so with ``--rate`` it already includes ``schedule_lag``
    and is the latency free of coordinated omission; the lag is returned separately and
    is not added again. ``time`` may be ``skipped`` (``--latency-limit``) or ``failed`` /
    ``serialization`` / ``deadlock``; those are counted, not timed. The end times
    (``time_epoch.time_us``) bound the window the log covers.

    Raises:
        ValueError: a line does not have the expected shape (the message names the line).
    """
    latencies: list[float] = []
    lags: list[float] = []
    skipped = failed = 0
    first_end = math.inf
    last_end = -math.inf
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        needed = 7 if rate_limited else 6
        if len(parts) < needed:
            raise ValueError(f"pgbench log line {number}: expected {needed} fields, got {line!r}")
        try:
            end = int(parts[4]) + int(parts[5]) / 1e6
            lag = float(parts[6]) if rate_limited else 0.0
            if parts[2] == "skipped":
                skipped += 1
                continue
            if parts[2] in _FAILED_WORDS:
                failed += 1
                continue
            latency = float(parts[2])
        except ValueError as e:
            raise ValueError(f"pgbench log line {number}: {e}: {line!r}") from e
        first_end = min(first_end, end)
        last_end = max(last_end, end)
        latencies.append(latency)
        lags.append(lag)
    return PgbenchLog(
        latencies_us=np.asarray(latencies, dtype=np.float64),
        lags_us=np.asarray(lags, dtype=np.float64),
        skipped=skipped,
        failed=failed,
        first_end_s=first_end if latencies else math.nan,
        last_end_s=last_end if latencies else math.nan,
    )


def parse_pgbench_tps(stdout: str) -> float:
    """The ``tps = N (without initial connection time)`` figure of pgbench's summary.

    Raises:
        ValueError: the summary has no such line (pgbench failed or changed its format).
    """
    m = _TPS_RE.search(stdout)
    if m is None:
        raise ValueError("pgbench output has no 'tps = ... (without initial connection time)' line")
    return float(m.group(1))


__all__ = [
    "FloatArray",
    "PgbenchLog",
    "TailStats",
    "median_of_repeats",
    "nearest_rank",
    "parse_pgbench_log",
    "parse_pgbench_tps",
    "tail_stats",
    "throughput_floor_ok",
]
