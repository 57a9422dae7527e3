"""``Telemetry``: the sampler, perf and app metrics behind one object the service holds."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio

from lumos_mcp.errors import InvalidTelemetryRequestError, LumosError, TelemetryNotReadyError
from lumos_mcp.kernelfs import KernelRoot
from lumos_mcp.telemetry.app import AppMetrics, PromSample, app_metric_name, prometheus_histograms
from lumos_mcp.telemetry.metrics import SECTIONS, Data, interval_metrics, sections_between
from lumos_mcp.telemetry.paths import PathValues, lookup, number, split
from lumos_mcp.telemetry.perf import PerfInterval, PerfStat
from lumos_mcp.telemetry.readers import Snapshot
from lumos_mcp.telemetry.sampler import Clock, Sampler
from lumos_mcp.telemetry.signature import Signature, Trends
from lumos_mcp.telemetry.trends import ShiftRule, compute_trends

Progress = Callable[[float, float, str], Awaitable[None]]


def _check_window(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise InvalidTelemetryRequestError("must be a finite number of seconds > 0", parameter=name, value=value)
    return float(value)


def _check_sections(sections: Iterable[str] | None) -> set[str]:
    if sections is None:
        return set(SECTIONS)
    chosen = set(sections)
    unknown = chosen - SECTIONS
    if unknown:
        raise InvalidTelemetryRequestError(
            f"unknown section(s); choose from {sorted(SECTIONS)}", parameter="sections", value=sorted(unknown)
        )
    return chosen


def _in_sections(key: str, sections: set[str]) -> bool:
    return key.split(".", 1)[0] in sections


def _perf_section(intervals: Sequence[PerfInterval], interval_ms: int, unavailable: dict[str, str]) -> Data:
    counts: dict[str, float] = {}
    lengths: dict[str, float] = {}
    for iv in intervals:
        for event, count in iv.counts.items():
            counts[event] = counts.get(event, 0.0) + count
            lengths[event] = lengths.get(event, 0.0) + iv.length_s

    def rate(event: str) -> float | None:
        if event not in counts or lengths[event] <= 0:
            return None
        scale = 1000.0 if event == "task-clock" else 1.0  # task-clock counts ms
        return counts[event] / scale / lengths[event]

    ipc = None
    if counts.get("cycles") and "instructions" in counts:
        ipc = counts["instructions"] / counts["cycles"]
    else:
        unavailable["perf.ipc"] = "needs both cycles and instructions from perf"
    mpki = None
    if counts.get("instructions") and "LLC-load-misses" in counts:
        mpki = 1000.0 * counts["LLC-load-misses"] / counts["instructions"]
    else:
        unavailable["perf.llc_misses_per_kilo_instructions"] = "needs LLC-load-misses and instructions from perf"
    return {
        "ipc": ipc,
        "cycles_per_s": rate("cycles"),
        "instructions_per_s": rate("instructions"),
        "cache_misses_per_s": rate("cache-misses"),
        "llc_load_misses_per_s": rate("LLC-load-misses"),
        "llc_misses_per_kilo_instructions": mpki,
        "context_switches_per_s": rate("context-switches"),
        "cpu_migrations_per_s": rate("cpu-migrations"),
        "page_faults_per_s": rate("page-faults"),
        "task_clock_cpus": rate("task-clock"),
        "intervals": len(intervals),
        "interval_ms": interval_ms,
    }


_PAIR_FIELDS = frozenset({"window_s", "covered_s", "samples_used", "interval_s", "start_unix_s", "end_unix_s"})


class PairValues(PathValues):
    """The signature between two consecutive snapshots, one path at a time: what
    ``signature_between(a.wall, b.wall)`` holds at a path, computing only the section that path
    is in (an app metric: that metric's points in the window alone), each once.

    This is the guards' per-sample read: a full signature per sample (every section, every app
    series copied, a pydantic model) cost a guard most of its CPU. App metrics are summarised up
    to ``now`` (the later of ``b`` and the clock when this view was made), as the full signature
    made at that moment would.
    """

    def __init__(self, telemetry: Telemetry, a: Snapshot, b: Snapshot) -> None:
        self._telemetry = telemetry
        self.a = a
        self.b = b
        self.now = max(b.t, telemetry.clock())
        self._sections: dict[str, Any] = {}
        self._values: dict[str, float | None] = {}

    def value(self, path: str) -> float | None:
        try:
            return self._values[path]
        except KeyError:
            pass
        parts = split(path)
        head = parts[0]
        found: float | None
        if head == "app":
            found = self._app(parts) if len(parts) >= 3 else None
        elif head in _PAIR_FIELDS:
            found = self._pair_field(head) if len(parts) == 1 else None
        elif head in SECTIONS:
            found = lookup({head: self._section(head)}, path)
        else:
            found = None
        self._values[path] = found
        return found

    def _app(self, parts: tuple[str, ...]) -> float | None:
        window = self.b.t - self.a.t
        summary = self._telemetry.app.summary(".".join(parts[1:-1]), since=self.b.t - window, now=self.now)
        return None if summary is None or parts[-1] == "name" else number(summary.get(parts[-1]))

    def _pair_field(self, name: str) -> float:
        a, b = self.a, self.b
        return {
            "window_s": b.t - a.t,
            "covered_s": b.t - a.t,
            "samples_used": 2.0,
            "interval_s": self._telemetry.interval_s,
            "start_unix_s": a.wall,
            "end_unix_s": b.wall,
        }[name]

    def _section(self, name: str) -> Any:
        if name not in self._sections:
            if name == "perf":
                self._sections[name] = self._telemetry._perf_data(self.a.t, self.b.t, {})
            else:
                data, _ = sections_between(self.a, self.b, only={name})
                perf = self._section("perf") if name == "sched" else None
                if perf is not None and perf["cpu_migrations_per_s"] is not None:
                    data["sched"]["migrations_per_s"] = perf["cpu_migrations_per_s"]  # as _signature does
                self._sections[name] = data[name]
        return self._sections[name]


class Telemetry:
    """Sampler + optional perf + app metrics; signatures and trends over windows of the ring buffer.

    ``clock`` stamps snapshots, perf intervals and app metrics alike (a given ``perf`` gets it).
    """

    def __init__(
        self,
        root: KernelRoot,
        interval_s: float = 1.0,
        clock: Clock = time.monotonic,
        cgroups: Sequence[str] = (),
        perf: PerfStat | None = None,
        capacity: int = 3600,
        wall_clock: Clock = time.time,
        rule: ShiftRule | None = None,
    ) -> None:
        """
        Raises:
            InvalidTelemetryRequestError: a bad interval or capacity. InvalidParameterError: a bad cgroup name.
        """
        self.root = root
        self.clock = clock
        self.sampler = Sampler(root, interval_s, capacity, clock, cgroups, wall_clock)
        self.perf = perf
        if perf is not None:
            perf.clock = clock
        self.app = AppMetrics(clock, capacity)
        self.rule = rule or ShiftRule()
        self._running = False
        self._pair_cache: dict[tuple[float, float], dict[str, float]] = {}
        self._counter_seen: dict[str, tuple[float, float]] = {}

    @property
    def interval_s(self) -> float:
        return self.sampler.interval_s

    # ------------------------------------------------------------------ lifecycle
    @asynccontextmanager
    async def running(self) -> AsyncIterator[Telemetry]:
        """Take a first sample, start perf and the sampler; stop both (perf reaped) at exit.

        Raises:
            InvalidTelemetryRequestError: already running.
        """
        if self._running:
            raise InvalidTelemetryRequestError("telemetry is already running", parameter="running", value=True)
        self._running = True
        try:
            await anyio.to_thread.run_sync(self._first_sample)
            if self.perf is not None:
                await anyio.to_thread.run_sync(self.perf.start)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._sample_forever)
                try:
                    yield self
                finally:
                    tg.cancel_scope.cancel()
        finally:
            self._running = False
            if self.perf is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self.perf.stop)

    def _first_sample(self) -> None:
        latest = self.sampler.latest()
        if latest is None or self.clock() > latest.t:
            self.sampler.sample_once()

    async def _sample_forever(self) -> None:
        await anyio.sleep(self.interval_s)
        await self.sampler.run()

    # ------------------------------------------------------------------ app metrics
    def report_app_metric(self, name: str, value: float, unit: str) -> None:
        """Record an application metric (p99 latency, throughput) at the clock's now.

        Raises:
            InvalidMetricError: bad name or unit pattern, non-finite value, changed unit, too many names.
        """
        self.app.report(name, value, unit)

    def record_prometheus(self, samples: Iterable[PromSample], prefix: str = "prom.") -> list[str]:
        """Report scraped gauges (and untyped) as they are, counters as per-second rates since
        the previous scrape (the first scrape of a counter only seeds it), and histograms as the
        observations between two scrapes (bucket-count deltas, a counter reset handled:
        ``AppMetrics.report_histogram``). Returns the names recorded.

        Raises:
            InvalidMetricError: a value the app store refuses (NaN, too many names, too many buckets).
            ScrapeError: a histogram bucket without a numeric ``le``.
        """
        samples = list(samples)
        now = self.clock()
        recorded = []
        for s in samples:
            if s.type not in ("gauge", "counter", "untyped") or not math.isfinite(s.value):
                continue
            name = app_metric_name(s, prefix)
            if s.type == "counter":
                before = self._counter_seen.get(name)
                self._counter_seen[name] = (now, s.value)
                if before is None or now <= before[0] or s.value < before[1]:
                    continue
                self.app.report(name + "_per_s", (s.value - before[1]) / (now - before[0]), "1/s")
                recorded.append(name + "_per_s")
            else:
                self.app.report(name, s.value, "value")
                recorded.append(name)
        for h in prometheus_histograms(samples):
            name = app_metric_name(PromSample(h.name, h.labels, 0.0, "histogram"), prefix)
            if self.app.report_histogram(name, h.buckets, "value"):
                recorded.append(name)
        return recorded

    # ------------------------------------------------------------------ signature
    def signature(self, window_s: float, sections: set[str] | None = None) -> Signature:
        """The signature over the last ``window_s`` seconds of the ring buffer.

        Raises:
            InvalidTelemetryRequestError: a non-positive window or an unknown section.
            TelemetryNotReadyError: fewer than two samples in the buffer.
        """
        window = _check_window("window_s", window_s)
        chosen = _check_sections(sections)
        return self._signature(self.sampler.window(window), window, chosen)

    async def fresh_signature(
        self,
        window_s: float,
        progress: Progress | None = None,
        sections: set[str] | None = None,
        timeout_s: float | None = None,
    ) -> Signature:
        """A signature from samples taken after this call only, waiting until they span ``window_s``
        and reporting ``progress(covered_s, window_s, message)`` after each sample.

        Raises:
            InvalidTelemetryRequestError: a non-positive window or an unknown section.
            TelemetryNotReadyError: the sampler is not running, or the window did not fill within
                ``timeout_s`` (default: window plus five intervals plus 5 s).
        """
        window = _check_window("window_s", window_s)
        chosen = _check_sections(sections)
        if not self._running:
            raise TelemetryNotReadyError(
                "the sampler is not running (enter telemetry.running())", samples=len(self.sampler.samples()), needed=2
            )
        limit = timeout_s if timeout_s is not None else window + 5 * self.interval_s + 5.0
        start_t = self.clock()
        tolerance = 0.1 * self.interval_s
        try:
            with anyio.fail_after(limit):
                first = await self.sampler.wait_for_sample(after_t=start_t - 1e-9)
                last = first
                while last.t - first.t < window - tolerance:
                    if progress is not None:
                        await progress(last.t - first.t, window, f"collecting a fresh {window:g} s window")
                    last = await self.sampler.wait_for_sample(after_t=last.t)
        except TimeoutError:
            raise TelemetryNotReadyError(
                f"the fresh window did not fill within {limit:g} s",
                samples=len(self.sampler.samples(since=start_t)),
                needed=math.ceil(window / self.interval_s) + 1,
            ) from None
        if progress is not None:
            await progress(window, window, "window complete")
        snaps = [s for s in self.sampler.samples(since=first.t) if s.t <= last.t]
        return self._signature(snaps, window, chosen)

    def signature_between(self, start_unix_s: float, end_unix_s: float, sections: set[str] | None = None) -> Signature:
        """The signature over the buffered samples taken between two wall-clock times (for
        example while a transaction was applied), so past windows can be compared later.

        Raises:
            InvalidTelemetryRequestError: an unknown section.
            TelemetryNotReadyError: fewer than two samples in that span (evicted, or too short).
        """
        chosen = _check_sections(sections)
        snaps = [s for s in self.sampler.samples() if start_unix_s <= s.wall <= end_unix_s]
        window = snaps[-1].t - snaps[0].t if len(snaps) >= 2 else 0.0
        return self._signature(snaps, window, chosen)

    def pair_values(self, a: Snapshot, b: Snapshot) -> PairValues:
        """The signature between two consecutive snapshots as a :class:`PairValues`: each path
        computed on first read, alone (what a guard reads once per sample)."""
        return PairValues(self, a, b)

    def _signature(self, snaps: list[Snapshot], window: float, sections: set[str]) -> Signature:
        if len(snaps) < 2:
            raise TelemetryNotReadyError(
                "a signature needs two samples: wait one interval", samples=len(snaps), needed=2
            )
        first, last = snaps[0], snaps[-1]
        data, unavailable = sections_between(first, last)
        perf_data = self._perf_data(first.t, last.t, unavailable)
        data["perf"] = perf_data
        if perf_data is not None and perf_data["cpu_migrations_per_s"] is not None:
            data["sched"]["migrations_per_s"] = perf_data["cpu_migrations_per_s"]
            unavailable.pop("sched.migrations_per_s", None)
        app, app_missing = self.app.summaries(since=last.t - window, now=max(last.t, self.clock()))
        data["app"] = app
        unavailable.update(app_missing)
        payload: dict[str, Any] = {k: (v if k in sections else None) for k, v in data.items()}
        try:
            release: str | None = self.root.kernel_release
        except LumosError:
            release = None
        return Signature.model_validate(
            {
                "kernel_release": release,
                "window_s": window,
                "covered_s": last.t - first.t,
                "samples_used": len(snaps),
                "interval_s": self.interval_s,
                "start_unix_s": first.wall,
                "end_unix_s": last.wall,
                "sections": sorted(sections),
                **payload,
                "unavailable": {k: v for k, v in sorted(unavailable.items()) if _in_sections(k, sections)},
            }
        )

    def _perf_data(self, start_t: float, end_t: float, unavailable: dict[str, str]) -> Data | None:
        if self.perf is None:
            unavailable["perf"] = "perf is not enabled (Telemetry(perf=None))"
            return None
        for event, reason in self.perf.unavailable.items():
            unavailable["perf" if event == "perf" else f"perf.{event}"] = reason
        intervals = [iv for iv in self.perf.intervals(since=start_t) if iv.t <= end_t]
        if not intervals:
            unavailable.setdefault("perf", "no perf interval completed inside the window yet")
            return None
        return _perf_section(intervals, self.perf.interval_ms, unavailable)

    # ------------------------------------------------------------------ trends
    def _interval_metrics(self, a: Snapshot, b: Snapshot) -> dict[str, float]:
        key = (a.t, b.t)
        cached = self._pair_cache.get(key)
        if cached is None:
            cached = self._pair_cache[key] = interval_metrics(a, b)
        return cached

    def trends(
        self,
        window_s: float,
        baseline_s: float,
        sections: set[str] | None = None,
        metrics: Collection[str] | None = None,
    ) -> Trends:
        """Each metric's last ``window_s`` against the ``baseline_s`` before it: means, delta %,
        slope per second, EWMA, and shifts by the rule in ``trends.py``. ``metrics``: only these
        dotted names (the brief's), which costs a fraction of all of them.

        Raises:
            InvalidTelemetryRequestError: a non-positive window or an unknown section.
            TelemetryNotReadyError: fewer than two samples in the buffer.
        """
        window = _check_window("window_s", window_s)
        baseline = _check_window("baseline_s", baseline_s)
        chosen = _check_sections(sections)
        snaps = self.sampler.window(window + baseline)
        if len(snaps) < 2:
            raise TelemetryNotReadyError("trends need two samples: wait one interval", samples=len(snaps), needed=2)
        end_t = snaps[-1].t
        series: dict[str, list[tuple[float, float]]] = {}
        for a, b in itertools.pairwise(snaps):
            for name, value in self._interval_metrics(a, b).items():
                series.setdefault(name, []).append((b.t, value))
        if len(self._pair_cache) > 2 * self.sampler.capacity:
            buffer_start = self.sampler.samples()[0].t
            self._pair_cache = {k: v for k, v in self._pair_cache.items() if k[0] >= buffer_start}
        unavailable: dict[str, str] = {}
        if self.perf is not None:
            for iv in self.perf.intervals(since=snaps[0].t):
                for event, rate in iv.rates.items():
                    unit = "cpus" if event == "task-clock" else "per_s"
                    series.setdefault(f"perf.{event}_{unit}", []).append((iv.t, rate))
        else:
            unavailable["perf"] = "perf is not enabled (Telemetry(perf=None))"
        for name, points in self.app.series(since=snaps[0].t).items():
            if points:
                series[f"app.{name}"] = points
        chosen_series = {
            k: v for k, v in series.items() if _in_sections(k, chosen) and (metrics is None or k in metrics)
        }
        metrics, shifts = compute_trends(chosen_series, end_t - window, self.rule)
        return Trends.model_validate(
            {
                "window_s": window,
                "baseline_s": baseline,
                "rule": self.rule.describe(),
                "metrics": metrics,
                "shift_detected": bool(shifts),
                "shifts": shifts,
                "unavailable": {k: v for k, v in unavailable.items() if _in_sections(k, chosen)},
            }
        )
