"""Rates and gauges between two snapshots, as plain nested data (the signature's sections).

Rates divide counter deltas by the difference of the snapshots' own timestamps (psutil's
``cpu_percent`` way), so an injected clock makes them exact in tests. Gauges (memory,
load, PSI averages) are the later snapshot's. A counter that went backwards (reset, device
replaced) gives no rate rather than a negative one; a counter the kernel lacks gives
``None`` and a reason in ``unavailable``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from lumos_mcp.telemetry.parsers import CpuTimes, PressureLine
from lumos_mcp.telemetry.readers import PSI_RESOURCES, Snapshot

SECTIONS = frozenset({"cpu", "sched", "psi", "memory", "perf", "io", "network", "cgroups", "app"})
KIB = 1024
MIB = 1024 * 1024
SECTOR_BYTES = 512

Data = dict[str, Any]


def _delta(a: int | None, b: int | None) -> int | None:
    if a is None or b is None or b < a:
        return None
    return b - a


def _per_s(a: int | None, b: int | None, dt: float, scale: float = 1.0) -> float | None:
    d = _delta(a, b)
    return None if d is None else d * scale / dt


def cpu_percentages(a: CpuTimes, b: CpuTimes) -> Data | None:
    """Shares of the CPU time elapsed between two readings, in %; ``None`` if no tick elapsed."""
    elapsed = b.total - a.total
    if elapsed <= 0:
        return None

    def pct(*names: str) -> float:
        ticks: int = sum(max(getattr(b, n) - getattr(a, n), 0) for n in names)
        return 100.0 * ticks / elapsed

    idle = pct("idle", "iowait")
    return {
        "util_pct": max(0.0, 100.0 - idle),
        "user_pct": pct("user", "nice"),
        "system_pct": pct("system", "irq", "softirq"),
        "iowait_pct": pct("iowait"),
        "steal_pct": pct("steal"),
        "idle_pct": pct("idle"),
    }


def _cpu(a: Snapshot, b: Snapshot, unavailable: dict[str, str]) -> Data | None:
    if a.stat is None or b.stat is None:
        unavailable["cpu"] = b.missing.get("stat") or a.missing.get("stat", "proc/stat unreadable")
        return None
    total = cpu_percentages(a.stat.total, b.stat.total)
    if total is None:
        unavailable["cpu"] = "no CPU tick elapsed between the samples"
        return None
    cores = []
    for cpu, times in sorted(b.stat.per_cpu.items()):
        before = a.stat.per_cpu.get(cpu)
        shares = cpu_percentages(before, times) if before is not None else None
        if shares is not None:
            cores.append({"cpu": cpu, **shares})
    return {"total": total, "per_core": cores, "cores": len(b.stat.per_cpu)}


def _sched(a: Snapshot, b: Snapshot, dt: float, unavailable: dict[str, str]) -> Data:
    data: Data = {
        "ctx_switches_per_s": None,
        "ctx_switches_source": "proc/stat",
        "forks_per_s": None,
        "migrations_per_s": None,
        "procs_running": None,
        "procs_blocked": None,
        "load1": None,
        "load5": None,
        "load15": None,
        "run_delay_ms_per_s": None,
        "run_delay_us_per_timeslice": None,
        "timeslices_per_s": None,
    }
    unavailable["sched.migrations_per_s"] = "needs perf (cpu-migrations): procfs has no migration counter"
    if a.stat is not None and b.stat is not None:
        data["ctx_switches_per_s"] = _per_s(a.stat.ctxt, b.stat.ctxt, dt)
        data["forks_per_s"] = _per_s(a.stat.processes, b.stat.processes, dt)
        data["procs_running"] = b.stat.procs_running
        data["procs_blocked"] = b.stat.procs_blocked
    else:
        unavailable["sched.ctx_switches_per_s"] = b.missing.get("stat", "proc/stat unreadable")
    if b.loadavg is not None:
        data.update(load1=b.loadavg.load1, load5=b.loadavg.load5, load15=b.loadavg.load15)
    else:
        unavailable["sched.load1"] = b.missing.get("loadavg", "proc/loadavg unreadable")
    if a.schedstat is not None and b.schedstat is not None:
        delay = _delta(a.schedstat.run_delay_ns, b.schedstat.run_delay_ns)
        slices = _delta(a.schedstat.timeslices, b.schedstat.timeslices)
        if delay is not None:
            data["run_delay_ms_per_s"] = delay / 1e6 / dt
        if delay is not None and slices:
            data["run_delay_us_per_timeslice"] = delay / 1e3 / slices
        if slices is not None:
            data["timeslices_per_s"] = slices / dt
    else:
        reason = b.missing.get("schedstat") or a.missing.get("schedstat", "proc/schedstat unreadable")
        unavailable["sched.run_delay"] = reason
    return data


def _psi_line(a: PressureLine | None, b: PressureLine | None, dt: float) -> Data | None:
    if b is None:
        return None
    window = None
    if a is not None:
        d = _delta(a.total_us, b.total_us)
        window = None if d is None else min(100.0, 100.0 * d / (dt * 1e6))
    return {"avg10_pct": b.avg10, "avg60_pct": b.avg60, "avg300_pct": b.avg300, "window_pct": window}


def _psi(a: Snapshot, b: Snapshot, dt: float, unavailable: dict[str, str]) -> Data | None:
    if not b.pressure:
        unavailable["psi"] = b.missing.get("pressure/cpu", "no pressure files (PSI)")
        return None
    data: Data = {}
    for resource in PSI_RESOURCES:
        pb = b.pressure.get(resource)
        if pb is None:
            unavailable[f"psi.{resource}"] = b.missing.get(f"pressure/{resource}", "unreadable")
            data[resource] = None
            continue
        pa = a.pressure.get(resource)
        full = _psi_line(pa.full if pa else None, pb.full, dt)
        if full is None:
            unavailable[f"psi.{resource}.full"] = "the kernel reports no 'full' line (cpu before 5.13)"
        data[resource] = {"some": _psi_line(pa.some if pa else None, pb.some, dt), "full": full}
    return data


_VM_RATES = {
    "page_faults_per_s": "pgfault",
    "major_faults_per_s": "pgmajfault",
    "swap_in_pages_per_s": "pswpin",
    "swap_out_pages_per_s": "pswpout",
    "direct_reclaim_scan_pages_per_s": "pgscan_direct",
    "compact_stalls_per_s": "compact_stall",
    "thp_fault_allocs_per_s": "thp_fault_alloc",
    "thp_fault_fallbacks_per_s": "thp_fault_fallback",
    "oom_kills_per_s": "oom_kill",
}


def _memory(a: Snapshot, b: Snapshot, dt: float, unavailable: dict[str, str]) -> Data | None:
    if b.meminfo is None and b.vmstat is None:
        unavailable["memory"] = b.missing.get("meminfo", "proc/meminfo unreadable")
        return None
    data: Data = {}
    if b.meminfo is not None:
        f = b.meminfo.fields_kib

        def mib(*names: str) -> float | None:
            if not all(n in f for n in names):
                return None
            return sum(f[n] for n in names) / KIB

        data.update(
            total_mib=mib("MemTotal"),
            free_mib=mib("MemFree"),
            available_mib=mib("MemAvailable"),
            cached_mib=mib("Cached", "Buffers"),
            dirty_mib=mib("Dirty"),
            anon_mib=mib("AnonPages"),
            swap_used_mib=(f["SwapTotal"] - f["SwapFree"]) / KIB if "SwapTotal" in f and "SwapFree" in f else None,
        )
        if data["available_mib"] is None:
            unavailable["memory.available_mib"] = "meminfo has no MemAvailable (kernel before 3.14)"
    else:
        unavailable["memory.meminfo"] = b.missing.get("meminfo", "proc/meminfo unreadable")
    if a.vmstat is not None and b.vmstat is not None:
        va, vb = a.vmstat, b.vmstat
        for key, counter in _VM_RATES.items():
            data[key] = _per_s(va.get(counter), vb.get(counter), dt)
            if vb.get(counter) is None:
                unavailable[f"memory.{key}"] = f"vmstat has no {counter} on this kernel"
        data["reclaim_scan_pages_per_s"] = _per_s(va.pgscan, vb.pgscan, dt)
        data["reclaim_steal_pages_per_s"] = _per_s(va.pgsteal, vb.pgsteal, dt)
        data["allocation_stalls_per_s"] = _per_s(va.allocstall, vb.allocstall, dt)
    else:
        unavailable["memory.vmstat"] = b.missing.get("vmstat", "proc/vmstat unreadable")
    return data


def _io(a: Snapshot, b: Snapshot, dt: float, unavailable: dict[str, str]) -> list[Data] | None:
    if a.diskstats is None or b.diskstats is None:
        unavailable["io"] = b.missing.get("diskstats", "proc/diskstats unreadable")
        return None
    disks = []
    for name, db in sorted(b.diskstats.items()):
        da = a.diskstats.get(name)
        if da is None:
            continue
        reads = _delta(da.reads, db.reads)
        writes = _delta(da.writes, db.writes)
        rtime = _delta(da.read_time_ms, db.read_time_ms)
        wtime = _delta(da.write_time_ms, db.write_time_ms)
        busy = _delta(da.io_time_ms, db.io_time_ms)
        weighted = _delta(da.weighted_io_time_ms, db.weighted_io_time_ms)
        if reads is None or writes is None or rtime is None or wtime is None:
            continue  # counters reset: the device was replaced between samples
        disks.append(
            {
                "device": name,
                "reads_per_s": reads / dt,
                "writes_per_s": writes / dt,
                "read_kib_per_s": _per_s(da.sectors_read, db.sectors_read, dt, SECTOR_BYTES / KIB),
                "write_kib_per_s": _per_s(da.sectors_written, db.sectors_written, dt, SECTOR_BYTES / KIB),
                "util_pct": None if busy is None else min(100.0, 100.0 * busy / (dt * 1000)),
                "await_ms": (rtime + wtime) / (reads + writes) if reads + writes else None,
                "read_await_ms": rtime / reads if reads else None,
                "write_await_ms": wtime / writes if writes else None,
                "queue_depth": None if weighted is None else weighted / (dt * 1000),
            }
        )
    return disks


_NET_FIELDS = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_drops", "tx_drops", "rx_errors", "tx_errors")


def _network(a: Snapshot, b: Snapshot, dt: float, unavailable: dict[str, str]) -> Data | None:
    if a.net_dev is None or b.net_dev is None:
        unavailable["network"] = b.missing.get("net/dev", "proc/net/dev unreadable")
        return None
    interfaces = []
    totals = dict.fromkeys(_NET_FIELDS, 0.0)
    for name, nb in sorted(b.net_dev.items()):
        na = a.net_dev.get(name)
        if na is None:
            continue
        row: Data = {"interface": name}
        for f in _NET_FIELDS:
            row[f"{f}_per_s"] = _per_s(getattr(na, f), getattr(nb, f), dt)
            if name != "lo" and row[f"{f}_per_s"] is not None:
                totals[f] += row[f"{f}_per_s"]
        interfaces.append(row)
    data: Data = {"interfaces": interfaces, "total_excluding_lo": {f"{k}_per_s": v for k, v in totals.items()}}
    tcp: Data = dict.fromkeys(
        [
            "retransmits_per_s",
            "in_segs_per_s",
            "out_segs_per_s",
            "retransmit_pct",
            "resets_sent_per_s",
            "active_opens_per_s",
            "passive_opens_per_s",
            "established",
        ]
    )
    udp: Data = dict.fromkeys(["in_datagrams_per_s", "in_errors_per_s", "rcvbuf_errors_per_s", "no_ports_per_s"])
    if a.snmp is not None and b.snmp is not None:
        ta, tb, ua, ub = a.snmp.tcp, b.snmp.tcp, a.snmp.udp, b.snmp.udp
        for key, counter in [
            ("retransmits_per_s", "RetransSegs"),
            ("in_segs_per_s", "InSegs"),
            ("out_segs_per_s", "OutSegs"),
            ("resets_sent_per_s", "OutRsts"),
            ("active_opens_per_s", "ActiveOpens"),
            ("passive_opens_per_s", "PassiveOpens"),
        ]:
            tcp[key] = _per_s(ta.get(counter), tb.get(counter), dt)
        retrans = _delta(ta.get("RetransSegs"), tb.get("RetransSegs"))
        out = _delta(ta.get("OutSegs"), tb.get("OutSegs"))
        tcp["retransmit_pct"] = 100.0 * retrans / out if retrans is not None and out else None
        tcp["established"] = tb.get("CurrEstab")
        for key, counter in [
            ("in_datagrams_per_s", "InDatagrams"),
            ("in_errors_per_s", "InErrors"),
            ("rcvbuf_errors_per_s", "RcvbufErrors"),
            ("no_ports_per_s", "NoPorts"),
        ]:
            udp[key] = _per_s(ua.get(counter), ub.get(counter), dt)
    else:
        unavailable["network.tcp"] = b.missing.get("net/snmp", "proc/net/snmp unreadable")
    data["tcp"] = tcp
    data["udp"] = udp
    return data


def _cgroups(a: Snapshot, b: Snapshot, dt: float, unavailable: dict[str, str]) -> list[Data]:
    groups = []
    for name in sorted(set(a.missing) | set(b.missing)):
        if name.startswith("cgroup/"):
            unavailable["cgroups." + name.removeprefix("cgroup/")] = b.missing.get(name) or a.missing[name]
    for name, gb in sorted(b.cgroups.items()):
        ga = a.cgroups.get(name)
        if ga is None:
            continue
        periods = _delta(ga.nr_periods, gb.nr_periods)
        throttled = _delta(ga.nr_throttled, gb.nr_throttled)
        row: Data = {
            "name": name,
            "cgroup_version": gb.version,
            "cpu_usage_cores": _per_s(ga.usage_ns, gb.usage_ns, dt, 1e-9),
            "periods_per_s": None if periods is None else periods / dt,
            "throttled_periods_per_s": None if throttled is None else throttled / dt,
            "throttled_ms_per_s": _per_s(ga.throttled_ns, gb.throttled_ns, dt, 1e-6),
            "throttled_pct": 100.0 * throttled / periods if throttled is not None and periods else None,
        }
        if gb.usage_ns is None:
            unavailable[f"cgroups.{name}.cpu_usage_cores"] = "no cpuacct.usage for this cgroup v1 group"
        if gb.nr_throttled is None:
            unavailable[f"cgroups.{name}.throttled"] = "no cpu controller on this group (cpu.stat lacks nr_throttled)"
        groups.append(row)
    return groups


def sections_between(a: Snapshot, b: Snapshot, only: Collection[str] | None = None) -> tuple[Data, dict[str, str]]:
    """Every /proc section between snapshot ``a`` and a later ``b`` (or only those named in
    ``only``), and what is unavailable.

    Raises:
        ValueError: ``b`` is not later than ``a``.
    """
    dt = b.t - a.t
    if dt <= 0:
        raise ValueError(f"snapshots out of order: dt={dt}")
    unavailable: dict[str, str] = {}
    makers: dict[str, Callable[[], Any]] = {
        "cpu": lambda: _cpu(a, b, unavailable),
        "sched": lambda: _sched(a, b, dt, unavailable),
        "psi": lambda: _psi(a, b, dt, unavailable),
        "memory": lambda: _memory(a, b, dt, unavailable),
        "io": lambda: _io(a, b, dt, unavailable),
        "network": lambda: _network(a, b, dt, unavailable),
        "cgroups": lambda: _cgroups(a, b, dt, unavailable),
    }
    data: Data = {name: make() for name, make in makers.items() if only is None or name in only}
    return data, unavailable


_ID_KEYS = ("cpu", "device", "interface", "name")
_NOT_METRICS = frozenset({"cgroup_version", "cores"})


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested section data as ``{"cpu.total.util_pct": 12.5, "io.vda.util_pct": ...}``.

    List items are keyed by their identity field (cpu number, device, interface, name).
    Booleans, strings and ``None`` are left out.
    """
    out: dict[str, float] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, bool) or value is None or key in _NOT_METRICS:
            continue
        if isinstance(value, int | float):
            out[path] = float(value)
        elif isinstance(value, Mapping):
            out.update(flatten(value, path + "."))
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, Mapping):
                    ident = next((item[k] for k in _ID_KEYS if k in item), None)
                    label = f"cpu{ident}" if key == "per_core" else str(ident)
                    rest = {k: v for k, v in item.items() if k not in _ID_KEYS}
                    out.update(flatten(rest, f"{path}.{label}."))
    return out


def interval_metrics(a: Snapshot, b: Snapshot) -> dict[str, float]:
    """Flat ``{metric: value}`` between two snapshots (what trends are computed on).

    Raises:
        ValueError: ``b`` is not later than ``a``.
    """
    data, _ = sections_between(a, b)
    return flatten(data)
