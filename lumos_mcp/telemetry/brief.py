"""The compact view of a signature and its trends: what ``read_telemetry`` answers by default.

The full :class:`~lumos_mcp.telemetry.signature.Signature` stays the internal truth (guards,
the expert, the speculator and the ranker read it; ``read_telemetry(detail="full")`` returns
it). The brief keeps the numbers a tuning agent acts on, **at the same dotted paths as the
full signature** (``psi.cpu.some.avg10_pct``, ``cpu.total.util_pct``), so a path read here
names the same metric in a guard or in the full answer. What it leaves out, and why that is
safe, is in :data:`CUT`.

Numbers are rounded to about three significant figures (:func:`rounded`), except those in
:data:`EXACT_PATHS` and the app metrics: the built-in expert compares them with thresholds and
with each other, so its decisions on the brief are the same as on the full signature
(``tests/telemetry/test_brief.py``).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lumos_mcp.telemetry.signature import (
    AppMetricSummary,
    CgroupCpuStats,
    PsiLine,
    PsiResource,
    Shift,
    Signature,
    Trends,
)

MAX_CGROUPS = 5
"""Cgroups listed in the brief: the busiest and the most throttled first; the rest are counted."""
MAX_APP = 5
"""App metrics listed in the brief: latency metrics first; the rest are counted."""
MAX_SHIFTS = 5
"""Change points listed in the brief: the largest effect first; the rest are counted."""

EXACT_PATHS = frozenset(
    {
        "psi.cpu.some.window_pct",
        "psi.cpu.some.avg10_pct",
        "psi.memory.some.window_pct",
        "psi.memory.some.avg10_pct",
        "memory.major_faults_per_s",
    }
)
"""Numbers kept unrounded: the expert's objective and rule thresholds read them
(``agents.expert.objective``/``propose``), and rounding could move a value across a threshold."""

CUT = {
    "cpu.per_core": "per-CPU shares: the brief keeps the busiest and idlest CPU (core_util_max/min_pct)",
    "cpu.total.idle_pct": "100 - util_pct - iowait_pct",
    "sched.load5/load15, timeslices_per_s": "slow averages of load1; timeslices are absent without schedstats",
    "psi.*.avg60_pct/avg300_pct": "slower kernel averages of what window_pct and avg10_pct measure now",
    "memory (free, cached, anon, THP, compaction, reclaim steal)": "capacity detail; pressure shows in PSI",
    "perf (cycles, instructions, cache misses, task clock)": "kept: ipc and LLC misses per 1000 instructions",
    "cgroups periods_per_s, throttled_periods_per_s, cgroup_version": "throttled_pct and throttled_ms_per_s "
    "say how much throttling costs",
    "io per device": "summed over devices, with the worst utilisation and await",
    "network per interface, udp": "totals without loopback and TCP retransmits/connections are kept",
    "trends per metric (window mean, delta, ewma, slope, sd, counts)": "kept: the baseline mean of each brief "
    "metric (its value now is in the signature) and the change points",
    "unavailable reasons": "the names of what is missing are kept",
    "change points of metrics outside the brief (per CPU, device, interface)": "the brief's own metrics' are kept",
}
"""What the brief leaves out of the full answer, and what stands for it (``detail="full"`` has it all)."""


class _Brief(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def rounded(value: float | None) -> float | None:
    """About three significant figures: integers from 100, one decimal from 10, else two."""
    if value is None or not math.isfinite(value):
        return value
    if abs(value) >= 100:
        return float(round(value))
    return round(value, 1 if abs(value) >= 10 else 2)


class CpuTotalBrief(_Brief):
    util_pct: float | None = Field(description="busy share of all CPUs, %")
    user_pct: float | None
    system_pct: float | None
    iowait_pct: float | None
    steal_pct: float | None


class CpuBrief(_Brief):
    total: CpuTotalBrief
    cores: int = Field(description="online CPUs (count)")
    core_util_max_pct: float | None = Field(description="busiest CPU, %")
    core_util_min_pct: float | None = Field(description="idlest CPU, %")


class SchedBrief(_Brief):
    ctx_switches_per_s: float | None
    migrations_per_s: float | None
    forks_per_s: float | None
    procs_running: int | None = Field(description="runnable tasks (count)")
    procs_blocked: int | None = Field(description="tasks blocked on I/O (count)")
    load1: float | None = Field(description="1-minute load average (tasks)")
    run_delay_ms_per_s: float | None = Field(description="run-queue wait over all CPUs, ms per second")


class PsiLineBrief(_Brief):
    avg10_pct: float = Field(description="kernel's 10 s average, % of time stalled")
    window_pct: float | None = Field(description="% of the window stalled")


class PsiResourceBrief(_Brief):
    some: PsiLineBrief | None = Field(description="at least one task stalled")
    full: PsiLineBrief | None = Field(description="all non-idle tasks stalled")


class PsiBrief(_Brief):
    cpu: PsiResourceBrief | None
    memory: PsiResourceBrief | None
    io: PsiResourceBrief | None


class MemoryBrief(_Brief):
    total_mib: float | None
    available_mib: float | None
    dirty_mib: float | None
    swap_used_mib: float | None
    major_faults_per_s: float | None
    page_faults_per_s: float | None
    reclaim_scan_pages_per_s: float | None
    swap_in_pages_per_s: float | None
    swap_out_pages_per_s: float | None
    allocation_stalls_per_s: float | None
    oom_kills_per_s: float | None


class PerfBrief(_Brief):
    ipc: float | None = Field(description="instructions per cycle")
    llc_misses_per_kilo_instructions: float | None
    context_switches_per_s: float | None


class IoBrief(_Brief):
    """Summed over block devices."""

    devices: int = Field(description="block devices (count)")
    reads_per_s: float
    writes_per_s: float
    read_kib_per_s: float | None
    write_kib_per_s: float | None
    util_max_pct: float | None = Field(description="busiest device's share of time with I/O in flight, %")
    await_max_ms: float | None = Field(description="slowest device's mean time per I/O, ms")


class NetTotalsBrief(_Brief):
    rx_packets_per_s: float
    tx_packets_per_s: float
    rx_bytes_per_s: float
    tx_bytes_per_s: float
    rx_drops_per_s: float
    tx_drops_per_s: float


class TcpBrief(_Brief):
    retransmit_pct: float | None = Field(description="retransmitted / sent segments, %")
    established: int | None = Field(description="established connections (count)")


class NetworkBrief(_Brief):
    total_excluding_lo: NetTotalsBrief
    tcp: TcpBrief


class CgroupBrief(_Brief):
    name: str
    cpu_usage_cores: float | None = Field(description="CPU time used per second (cores)")
    throttled_ms_per_s: float | None = Field(description="time throttled, ms per second")
    throttled_pct: float | None = Field(description="throttled / elapsed CFS periods, %")


class SignatureBrief(_Brief):
    """The host over the last window, in brief: the same dotted paths as the full signature."""

    window_s: float
    covered_s: float = Field(description="seconds between the first and last sample used")
    samples_used: int
    notes: dict[str, str] = Field(description="one plain-language line per section")
    cpu: CpuBrief | None = None
    sched: SchedBrief | None = None
    psi: PsiBrief | None = None
    memory: MemoryBrief | None = None
    perf: PerfBrief | None = None
    io: IoBrief | None = None
    network: NetworkBrief | None = None
    cgroups: list[CgroupBrief] | None = Field(None, description=f"the {MAX_CGROUPS} busiest or most throttled groups")
    cgroups_omitted: int = Field(0, description="groups left out (detail='full' lists them)")
    app: list[AppMetricSummary] | None = Field(None, description=f"{MAX_APP} app metrics at most, latency first")
    app_omitted: int = 0
    unavailable: list[str] = Field(description="what this machine cannot measure (reasons: detail='full')")


class TrendsBrief(_Brief):
    """The window against the baseline before it, for the metrics of the brief."""

    baseline_s: float
    baseline: dict[str, float] = Field(
        description="dotted path -> the metric's mean over the baseline window, to compare with its value now"
        " (metrics at 0 in both windows are left out)"
    )
    shift_detected: bool
    shifts: list[Shift] = Field(description=f"change points, largest effect first (at most {MAX_SHIFTS})")
    shifts_omitted: int = 0


# --------------------------------------------------------------------------- building
def _psi_line(line: PsiLine | None, path: str) -> PsiLineBrief | None:
    if line is None:
        return None
    if f"{path}.window_pct" in EXACT_PATHS:
        return PsiLineBrief(avg10_pct=line.avg10_pct, window_pct=line.window_pct)
    return PsiLineBrief(avg10_pct=line.avg10_pct, window_pct=rounded(line.window_pct))


def _psi_resource(resource: PsiResource | None, path: str) -> PsiResourceBrief | None:
    if resource is None:
        return None
    return PsiResourceBrief(
        some=_psi_line(resource.some, f"{path}.some"), full=_psi_line(resource.full, f"{path}.full")
    )


def _sum(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return rounded(sum(known)) if known else None


def _max(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return rounded(max(known)) if known else None


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{rounded(value):g}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{rounded(value):g}"


def _latency(name: str) -> bool:
    return "latency" in name or "p99" in name


def _busy_groups(groups: list[CgroupCpuStats]) -> list[CgroupCpuStats]:
    def weight(g: CgroupCpuStats) -> tuple[float, float]:
        return (g.throttled_pct or 0.0, g.cpu_usage_cores or 0.0)

    return sorted(groups, key=weight, reverse=True)


HEADLINES = {
    "cpu": ("cpu.total.util_pct", "CPU use"),
    "sched": ("sched.procs_running", "runnable tasks"),
    "psi": ("psi.cpu.some.window_pct", "CPU stall"),
    "memory": ("memory.major_faults_per_s", "major faults"),
    "io": ("psi.io.some.window_pct", "I/O stall"),
    "network": ("network.total_excluding_lo.rx_packets_per_s", "packets in"),
}
"""Each section's note ends with the trend of one metric against the baseline window."""
HEADLINE_PATHS = frozenset(path for path, _ in HEADLINES.values())
STEADY_PCT = 10.0
"""A headline metric within this % of its baseline reads as steady in the notes."""


def _trend_words(trends: Trends, path: str, label: str) -> str:
    t = trends.metrics.get(path)
    if t is None or t.baseline_mean is None:
        return ""
    if t.delta_pct is None:
        return "" if not t.current_mean else f"; {label} up from 0"
    if abs(t.delta_pct) < STEADY_PCT:
        return f"; {label} steady"
    return f"; {label} {'up' if t.delta_pct > 0 else 'down'} {abs(t.delta_pct):.0f}%"


def brief_signature(sig: Signature, trends: Trends | None = None) -> SignatureBrief:
    """The compact view of ``sig`` (sections it does not hold stay null); with ``trends``, each note
    ends with its section's headline metric against the baseline window."""
    notes: dict[str, str] = {}
    data: dict[str, Any] = {}
    if sig.cpu is not None:
        t = sig.cpu.total
        cores = [c.util_pct for c in sig.cpu.per_core]
        data["cpu"] = CpuBrief(
            total=CpuTotalBrief(
                util_pct=rounded(t.util_pct),
                user_pct=rounded(t.user_pct),
                system_pct=rounded(t.system_pct),
                iowait_pct=rounded(t.iowait_pct),
                steal_pct=rounded(t.steal_pct),
            ),
            cores=sig.cpu.cores,
            core_util_max_pct=_max(list(cores)),
            core_util_min_pct=rounded(min(cores)) if cores else None,
        )
        notes["cpu"] = (
            f"{_pct(t.util_pct)} busy (user {_pct(t.user_pct)}, system {_pct(t.system_pct)}, iowait "
            f"{_pct(t.iowait_pct)}) over {sig.cpu.cores} CPUs; busiest CPU {_pct(max(cores) if cores else None)}"
        )
    if sig.sched is not None:
        s = sig.sched
        data["sched"] = SchedBrief(
            ctx_switches_per_s=rounded(s.ctx_switches_per_s),
            migrations_per_s=rounded(s.migrations_per_s),
            forks_per_s=rounded(s.forks_per_s),
            procs_running=s.procs_running,
            procs_blocked=s.procs_blocked,
            load1=rounded(s.load1),
            run_delay_ms_per_s=rounded(s.run_delay_ms_per_s),
        )
        per_cpu = (
            f" ({s.procs_running / sig.cpu.cores:.1f} per CPU)"
            if s.procs_running is not None and sig.cpu is not None and sig.cpu.cores
            else ""
        )
        notes["sched"] = (
            f"{_num(s.procs_running)} runnable{per_cpu}, load1 {_num(s.load1)}, "
            f"{_num(s.ctx_switches_per_s)} context switches/s"
        )
    if sig.psi is not None:
        p = sig.psi
        data["psi"] = PsiBrief(
            cpu=_psi_resource(p.cpu, "psi.cpu"),
            memory=_psi_resource(p.memory, "psi.memory"),
            io=_psi_resource(p.io, "psi.io"),
        )

        def stalled(resource: PsiResource | None) -> str:
            line = resource.some if resource is not None else None
            return "-" if line is None else _pct(line.window_pct if line.window_pct is not None else line.avg10_pct)

        notes["psi"] = (
            f"tasks waited for CPU {stalled(p.cpu)}, memory {stalled(p.memory)}, I/O {stalled(p.io)} of the window"
        )
    if sig.memory is not None:
        m = sig.memory
        data["memory"] = MemoryBrief(
            total_mib=rounded(m.total_mib),
            available_mib=rounded(m.available_mib),
            dirty_mib=rounded(m.dirty_mib),
            swap_used_mib=rounded(m.swap_used_mib),
            major_faults_per_s=m.major_faults_per_s,
            page_faults_per_s=rounded(m.page_faults_per_s),
            reclaim_scan_pages_per_s=rounded(m.reclaim_scan_pages_per_s),
            swap_in_pages_per_s=rounded(m.swap_in_pages_per_s),
            swap_out_pages_per_s=rounded(m.swap_out_pages_per_s),
            allocation_stalls_per_s=rounded(m.allocation_stalls_per_s),
            oom_kills_per_s=rounded(m.oom_kills_per_s),
        )
        notes["memory"] = (
            f"{_num(m.available_mib)} of {_num(m.total_mib)} MiB available, {_num(m.major_faults_per_s)} major "
            f"faults/s, reclaim scan {_num(m.reclaim_scan_pages_per_s)} pages/s"
        )
    if sig.perf is not None:
        pf = sig.perf
        data["perf"] = PerfBrief(
            ipc=rounded(pf.ipc),
            llc_misses_per_kilo_instructions=rounded(pf.llc_misses_per_kilo_instructions),
            context_switches_per_s=rounded(pf.context_switches_per_s),
        )
        notes["perf"] = f"IPC {_num(pf.ipc)}, LLC misses/1000 instructions {_num(pf.llc_misses_per_kilo_instructions)}"
    if sig.io is not None:
        devs = sig.io
        data["io"] = IoBrief(
            devices=len(devs),
            reads_per_s=rounded(sum(d.reads_per_s for d in devs)) or 0.0,
            writes_per_s=rounded(sum(d.writes_per_s for d in devs)) or 0.0,
            read_kib_per_s=_sum([d.read_kib_per_s for d in devs]),
            write_kib_per_s=_sum([d.write_kib_per_s for d in devs]),
            util_max_pct=_max([d.util_pct for d in devs]),
            await_max_ms=_max([d.await_ms for d in devs]),
        )
        busiest = max(devs, key=lambda d: d.util_pct or 0.0, default=None)
        notes["io"] = (
            f"{len(devs)} devices; busiest {busiest.device} {_pct(busiest.util_pct)} busy, await "
            f"{_num(busiest.await_ms)} ms"
            if busiest is not None
            else "no block devices"
        )
    if sig.network is not None:
        n, tcp = sig.network.total_excluding_lo, sig.network.tcp
        data["network"] = NetworkBrief(
            total_excluding_lo=NetTotalsBrief(
                rx_packets_per_s=rounded(n.rx_packets_per_s) or 0.0,
                tx_packets_per_s=rounded(n.tx_packets_per_s) or 0.0,
                rx_bytes_per_s=rounded(n.rx_bytes_per_s) or 0.0,
                tx_bytes_per_s=rounded(n.tx_bytes_per_s) or 0.0,
                rx_drops_per_s=rounded(n.rx_drops_per_s) or 0.0,
                tx_drops_per_s=rounded(n.tx_drops_per_s) or 0.0,
            ),
            tcp=TcpBrief(retransmit_pct=rounded(tcp.retransmit_pct), established=tcp.established),
        )
        notes["network"] = (
            f"{_num(n.rx_packets_per_s + n.tx_packets_per_s)} packets/s without loopback, TCP retransmits "
            f"{_pct(tcp.retransmit_pct)}, {_num(tcp.established)} connections"
        )
    cgroups_omitted = 0
    if sig.cgroups is not None:
        ordered = _busy_groups(list(sig.cgroups))
        cgroups_omitted = max(0, len(ordered) - MAX_CGROUPS)
        data["cgroups"] = [
            CgroupBrief(
                name=g.name,
                cpu_usage_cores=rounded(g.cpu_usage_cores),
                throttled_ms_per_s=rounded(g.throttled_ms_per_s),
                throttled_pct=rounded(g.throttled_pct),
            )
            for g in ordered[:MAX_CGROUPS]
        ]
        throttled = [g.name for g in ordered if (g.throttled_pct or 0.0) > 0]
        notes["cgroups"] = (
            f"{len(ordered)} watched; busiest {ordered[0].name} {_num(ordered[0].cpu_usage_cores)} cores; "
            + (f"throttled: {', '.join(throttled[:MAX_CGROUPS])}" if throttled else "none throttled")
            if ordered
            else "no cgroups watched (serve --cgroup NAME adds one)"
        )
    app_omitted = 0
    if sig.app is not None:
        # latency metrics first (what a latency tuner optimises; the expert's objective is the first
        # of them), each group in the signature's order
        recent = [a for a in sig.app if _latency(a.name)] + [a for a in sig.app if not _latency(a.name)]
        app_omitted = max(0, len(recent) - MAX_APP)
        data["app"] = recent[:MAX_APP]
        notes["app"] = (
            "; ".join(f"{a.name} p95 {_num(a.p95)} {a.unit} over {a.count}" for a in recent[:3])
            if recent
            else "no app metric reported (report_app_metric)"
        )
    if trends is not None:
        for section, (path, label) in HEADLINES.items():
            if section in notes:
                notes[section] += _trend_words(trends, path, label)
    return SignatureBrief(
        window_s=sig.window_s,
        covered_s=round(sig.covered_s, 2),
        samples_used=sig.samples_used,
        notes=notes,
        cgroups_omitted=cgroups_omitted,
        app_omitted=app_omitted,
        unavailable=sorted(sig.unavailable),
        **data,
    )


def brief_paths(brief: SignatureBrief) -> list[str]:
    """The dotted paths of the brief's numbers (cgroups and app by name, as trends name them)."""
    out: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        elif isinstance(node, int | float) and not isinstance(node, bool):
            out.append(prefix[:-1])

    dumped = brief.model_dump(exclude={"window_s", "covered_s", "samples_used", "notes", "cgroups", "app"})
    dumped.pop("cgroups_omitted", None)
    dumped.pop("app_omitted", None)
    walk(dumped, "")
    for g in brief.cgroups or []:
        out += [f"cgroups.{g.name}.cpu_usage_cores", f"cgroups.{g.name}.throttled_pct"]
    out += [f"app.{a.name}" for a in brief.app or []]
    return out


def brief_trends(trends: Trends, brief: SignatureBrief) -> TrendsBrief:
    """The baseline means of the brief's metrics, and the largest change points."""
    base: dict[str, float] = {}
    for path in brief_paths(brief):
        t = trends.metrics.get(path)
        if t is not None and t.baseline_mean is not None and (t.baseline_mean or t.current_mean):
            base[path] = rounded(t.baseline_mean) or 0.0
    shifts = [
        s.model_copy(
            update={
                "magnitude": rounded(s.magnitude),
                "delta_pct": rounded(s.delta_pct),
                "effect_sd": rounded(s.effect_sd),
            }
        )
        for s in trends.shifts[:MAX_SHIFTS]
    ]
    return TrendsBrief(
        baseline_s=trends.baseline_s,
        baseline=base,
        shift_detected=trends.shift_detected,
        shifts=shifts,
        shifts_omitted=max(0, len(trends.shifts) - MAX_SHIFTS),
    )


Detail = Literal["summary", "full"]
