"""The performance signature and trends as pydantic models (the edge: tools return these).

Every number carries its unit in its name (``_pct``, ``_per_s``, ``_mib``, ``_ms``) or in its
description. ``None`` means "not measurable here" and the reason is in ``unavailable``.
``schemas/telemetry.schema.json`` is generated from these models: after changing one, run
``python -c "from lumos_mcp.telemetry import write_schema; write_schema()"``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

SCHEMA_VERSION = "1"
SCHEMA_FILE = "telemetry.schema.json"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- cpu
class CpuShares(_Model):
    util_pct: float = Field(description="busy share of CPU time (100 - idle - iowait), %")
    user_pct: float = Field(description="user + nice, %")
    system_pct: float = Field(description="system + irq + softirq, %")
    iowait_pct: float
    steal_pct: float = Field(description="time the hypervisor ran something else, %")
    idle_pct: float


class CoreShares(CpuShares):
    cpu: int = Field(description="CPU number")


class CpuSection(_Model):
    """From /proc/stat (tick-sampled: use cgroup usage for exact per-group CPU)."""

    total: CpuShares = Field(description="all CPUs; 100% = every CPU busy")
    per_core: list[CoreShares]
    cores: int = Field(description="online CPUs (count)")


# --------------------------------------------------------------------------- sched
class SchedSection(_Model):
    ctx_switches_per_s: float | None
    ctx_switches_source: Literal["proc/stat", "perf"]
    forks_per_s: float | None = Field(description="new processes and threads per second")
    migrations_per_s: float | None = Field(description="CPU migrations per second (perf cpu-migrations only)")
    procs_running: int | None = Field(description="runnable tasks at the last sample (count)")
    procs_blocked: int | None = Field(description="tasks blocked on I/O at the last sample (count)")
    load1: float | None = Field(description="1-minute load average (runnable + uninterruptible tasks)")
    load5: float | None = Field(description="5-minute load average (tasks)")
    load15: float | None = Field(description="15-minute load average (tasks)")
    run_delay_ms_per_s: float | None = Field(
        description="run-queue wait summed over CPUs, ms per second (= average tasks waiting x 1000); schedstat"
    )
    run_delay_us_per_timeslice: float | None = Field(description="average wait before each timeslice, µs; schedstat")
    timeslices_per_s: float | None


# --------------------------------------------------------------------------- psi
class PsiLine(_Model):
    avg10_pct: float = Field(description="kernel's 10 s average share of time stalled, %")
    avg60_pct: float
    avg300_pct: float
    window_pct: float | None = Field(description="share of the signature window stalled, % (from total µs)")


class PsiResource(_Model):
    some: PsiLine | None = Field(description="at least one task stalled")
    full: PsiLine | None = Field(description="all non-idle tasks stalled (absent for cpu before 5.13)")


class PsiSection(_Model):
    cpu: PsiResource | None
    memory: PsiResource | None
    io: PsiResource | None


# --------------------------------------------------------------------------- memory
class MemorySection(_Model):
    total_mib: float | None = None
    free_mib: float | None = None
    available_mib: float | None = Field(default=None, description="MemAvailable, MiB")
    cached_mib: float | None = Field(default=None, description="page cache + buffers, MiB")
    dirty_mib: float | None = None
    anon_mib: float | None = None
    swap_used_mib: float | None = None
    page_faults_per_s: float | None = None
    major_faults_per_s: float | None = None
    swap_in_pages_per_s: float | None = None
    swap_out_pages_per_s: float | None = None
    reclaim_scan_pages_per_s: float | None = Field(default=None, description="kswapd + direct + others, pages/s")
    reclaim_steal_pages_per_s: float | None = None
    direct_reclaim_scan_pages_per_s: float | None = None
    allocation_stalls_per_s: float | None = None
    compact_stalls_per_s: float | None = None
    thp_fault_allocs_per_s: float | None = None
    thp_fault_fallbacks_per_s: float | None = None
    oom_kills_per_s: float | None = None


# --------------------------------------------------------------------------- perf
class PerfSection(_Model):
    """From ``perf stat -a``: rates averaged over the perf intervals that ended inside the window."""

    ipc: float | None = Field(description="instructions per cycle (ratio)")
    cycles_per_s: float | None
    instructions_per_s: float | None
    cache_misses_per_s: float | None
    llc_load_misses_per_s: float | None
    llc_misses_per_kilo_instructions: float | None = Field(description="LLC load misses per 1000 instructions")
    context_switches_per_s: float | None
    cpu_migrations_per_s: float | None
    page_faults_per_s: float | None
    task_clock_cpus: float | None = Field(
        description="perf task-clock per second of wall time (CPUs); with -a it counts idle time too, so it is"
        " about the number of online CPUs: a check of perf's coverage, not utilisation (use cpu.total.util_pct)"
    )
    intervals: int = Field(description="perf intervals averaged (count)")
    interval_ms: int = Field(description="perf's -I interval, ms")


# --------------------------------------------------------------------------- io and network
class DiskIo(_Model):
    device: str
    reads_per_s: float
    writes_per_s: float
    read_kib_per_s: float | None
    write_kib_per_s: float | None
    util_pct: float | None = Field(description="share of time with I/O in flight, %")
    await_ms: float | None = Field(description="mean time per completed I/O, ms (null when none completed)")
    read_await_ms: float | None
    write_await_ms: float | None
    queue_depth: float | None = Field(description="average requests in flight (aqu-sz, requests)")


class NetInterface(_Model):
    interface: str
    rx_packets_per_s: float | None
    tx_packets_per_s: float | None
    rx_bytes_per_s: float | None
    tx_bytes_per_s: float | None
    rx_drops_per_s: float | None
    tx_drops_per_s: float | None
    rx_errors_per_s: float | None
    tx_errors_per_s: float | None


class NetTotals(_Model):
    rx_packets_per_s: float
    tx_packets_per_s: float
    rx_bytes_per_s: float
    tx_bytes_per_s: float
    rx_drops_per_s: float
    tx_drops_per_s: float
    rx_errors_per_s: float
    tx_errors_per_s: float


class TcpStats(_Model):
    retransmits_per_s: float | None = Field(description="retransmitted segments per second")
    in_segs_per_s: float | None
    out_segs_per_s: float | None
    retransmit_pct: float | None = Field(description="retransmitted / sent segments, %")
    resets_sent_per_s: float | None
    active_opens_per_s: float | None
    passive_opens_per_s: float | None
    established: int | None = Field(description="established connections at the last sample (count)")


class UdpStats(_Model):
    in_datagrams_per_s: float | None
    in_errors_per_s: float | None
    rcvbuf_errors_per_s: float | None
    no_ports_per_s: float | None


class NetworkSection(_Model):
    interfaces: list[NetInterface]
    total_excluding_lo: NetTotals
    tcp: TcpStats
    udp: UdpStats


# --------------------------------------------------------------------------- cgroups and app
class CgroupCpuStats(_Model):
    name: str
    cgroup_version: Literal[1, 2]
    cpu_usage_cores: float | None = Field(description="CPU time used per second of wall time (cores)")
    periods_per_s: float | None = Field(description="CFS bandwidth periods elapsed per second")
    throttled_periods_per_s: float | None
    throttled_ms_per_s: float | None = Field(description="time throttled, ms per second")
    throttled_pct: float | None = Field(description="throttled / elapsed periods, %")


class AppMetricSummary(_Model):
    name: str
    unit: str = Field(description="the unit the metric was reported in")
    last: float = Field(description="latest value, in unit")
    mean: float = Field(description="mean over the window, in unit")
    p95: float = Field(description="95th percentile over the window, in unit")
    count: int = Field(description="values in the window (count)")
    last_age_s: float


class Signature(_Model):
    """A compact performance signature of the host over the last ``window_s`` seconds.

    Rates are averages over the window; gauges (memory, load, PSI averages) are the last
    sample's. Sections not requested, or not measurable here, are null; ``unavailable``
    says what is missing and why.
    """

    schema_version: Literal["1"] = "1"
    kernel_release: str | None
    window_s: float = Field(description="requested window, s")
    covered_s: float = Field(description="time between the first and last sample used, s")
    samples_used: int = Field(description="snapshots inside the window (count)")
    interval_s: float = Field(description="sampling interval, s")
    start_unix_s: float = Field(description="wall time of the first sample used, Unix seconds")
    end_unix_s: float = Field(description="wall time of the last sample used, Unix seconds")
    sections: list[str]
    cpu: CpuSection | None = None
    sched: SchedSection | None = None
    psi: PsiSection | None = None
    memory: MemorySection | None = None
    perf: PerfSection | None = None
    io: list[DiskIo] | None = None
    network: NetworkSection | None = None
    cgroups: list[CgroupCpuStats] | None = None
    app: list[AppMetricSummary] | None = None
    unavailable: dict[str, str] = Field(default_factory=dict, description="metric or source -> why it is missing")


# --------------------------------------------------------------------------- trends
class MetricTrend(_Model):
    """One metric's trend, in the metric's own unit (see its name)."""

    current_mean: float
    baseline_mean: float | None
    delta: float | None = Field(description="current_mean - baseline_mean, metric unit")
    delta_pct: float | None = Field(description="delta relative to |baseline_mean|, %")
    slope_per_s: float | None = Field(description="least-squares slope over the current window, unit per second")
    ewma: float = Field(description="exponentially weighted moving average over baseline then current, metric unit")
    pooled_sd: float = Field(description="pooled standard deviation of single values, metric unit")
    current_samples: int
    baseline_samples: int
    shift: bool


class Shift(_Model):
    metric: str
    direction: Literal["up", "down"]
    magnitude: float = Field(description="|current_mean - baseline_mean|, in the metric's unit")
    delta_pct: float | None = Field(description="relative change, %")
    effect_sd: float | None = Field(description="magnitude in pooled standard deviations (null when sd is 0)")


class Trends(_Model):
    """Per-metric trends of the last ``window_s`` against the ``baseline_s`` before it."""

    schema_version: Literal["1"] = "1"
    window_s: float = Field(description="current window, s")
    baseline_s: float = Field(description="baseline window just before it, s")
    rule: str = Field(description="the change-point rule in words")
    metrics: dict[str, MetricTrend]
    shift_detected: bool
    shifts: list[Shift] = Field(description="metrics whose mean moved, largest effect first")
    unavailable: dict[str, str] = Field(default_factory=dict)


def telemetry_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``Signature`` and ``Trends`` (both under ``$defs``)."""
    _, schema = models_json_schema(
        [(Signature, "serialization"), (Trends, "serialization")],
        title="lumos-mcp telemetry",
        description=f"Performance signature and trends, schema_version {SCHEMA_VERSION}.",
    )
    return schema


def render_schema() -> str:
    return json.dumps(telemetry_json_schema(), indent=2, sort_keys=True) + "\n"


def write_schema(path: str | Path | None = None) -> Path:
    """Write the schema to ``path`` (default: ``schemas/telemetry.schema.json`` of the checkout).

    Raises:
        OSError: the file cannot be written.
    """
    target = Path(path) if path is not None else Path(__file__).resolve().parents[2] / "schemas" / SCHEMA_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_schema())
    return target
