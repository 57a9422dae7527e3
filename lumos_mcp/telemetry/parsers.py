"""Pure parsers of kernel telemetry texts: ``parse_x(text) -> frozen dataclass``.

They never open a file (readers in ``readers.py`` do that through ``KernelRoot``), so each
one is tested on texts recorded from real kernels. Counters stay as the kernel's integers
in the kernel's units; rates are computed elsewhere from two snapshots.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from lumos_mcp.errors import TelemetryParseError

_EMPTY: Mapping[str, int] = MappingProxyType({})


def _int(source: str, token: str) -> int:
    try:
        return int(token)
    except ValueError:
        raise TelemetryParseError(f"{token!r} is not an integer", source=source) from None


def _float(source: str, token: str) -> float:
    try:
        return float(token)
    except ValueError:
        raise TelemetryParseError(f"{token!r} is not a number", source=source) from None


# --------------------------------------------------------------------------- /proc/stat
@dataclass(frozen=True)
class CpuTimes:
    """One ``cpu`` line of /proc/stat, in jiffies (USER_HZ ticks). ``guest`` is inside ``user``."""

    user: int
    nice: int
    system: int
    idle: int
    iowait: int = 0
    irq: int = 0
    softirq: int = 0
    steal: int = 0
    guest: int = 0
    guest_nice: int = 0

    @property
    def total(self) -> int:
        """All accounted time (guest time is already counted in user and nice)."""
        return self.user + self.nice + self.system + self.idle + self.iowait + self.irq + self.softirq + self.steal

    @property
    def idle_all(self) -> int:
        return self.idle + self.iowait


@dataclass(frozen=True)
class ProcStat:
    """/proc/stat: CPU times (total and per online CPU) and scheduler counters."""

    total: CpuTimes
    per_cpu: Mapping[int, CpuTimes]
    ctxt: int
    processes: int
    procs_running: int
    procs_blocked: int
    btime: int | None = None


def parse_stat(text: str) -> ProcStat:
    """Parse /proc/stat.

    Raises:
        TelemetryParseError: no aggregate ``cpu`` line, a missing ``ctxt``/``processes``/
            ``procs_running``/``procs_blocked`` line, or a non-integer field.
    """
    src = "proc/stat"
    total: CpuTimes | None = None
    per_cpu: dict[int, CpuTimes] = {}
    scalars: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        key = parts[0]
        if key.startswith("cpu"):
            numbers = [_int(src, p) for p in parts[1:11]]
            if len(numbers) < 4:
                raise TelemetryParseError(f"{key} has {len(numbers)} fields, needs at least 4", source=src)
            times = CpuTimes(*numbers)
            if key == "cpu":
                total = times
            else:
                per_cpu[_int(src, key[3:])] = times
        elif key in ("ctxt", "processes", "procs_running", "procs_blocked", "btime") and len(parts) >= 2:
            scalars[key] = _int(src, parts[1])
    if total is None:
        raise TelemetryParseError("no aggregate cpu line", source=src)
    missing = [k for k in ("ctxt", "processes", "procs_running", "procs_blocked") if k not in scalars]
    if missing:
        raise TelemetryParseError(f"missing {', '.join(missing)}", source=src)
    return ProcStat(
        total=total,
        per_cpu=MappingProxyType(per_cpu),
        ctxt=scalars["ctxt"],
        processes=scalars["processes"],
        procs_running=scalars["procs_running"],
        procs_blocked=scalars["procs_blocked"],
        btime=scalars.get("btime"),
    )


# --------------------------------------------------------------------------- /proc/schedstat
@dataclass(frozen=True)
class SchedstatCpu:
    """A ``cpuN`` line: time on CPU and waiting on the run queue (ns), and timeslices run."""

    cpu: int
    running_ns: int
    run_delay_ns: int
    timeslices: int


@dataclass(frozen=True)
class Schedstat:
    version: int
    timestamp_jiffies: int
    cpus: tuple[SchedstatCpu, ...]

    @property
    def run_delay_ns(self) -> int:
        return sum(c.run_delay_ns for c in self.cpus)

    @property
    def timeslices(self) -> int:
        return sum(c.timeslices for c in self.cpus)


MIN_SCHEDSTAT_VERSION = 15


def parse_schedstat(text: str) -> Schedstat:
    """Parse /proc/schedstat, version 15 or later (kernel 4.x onwards; 16 and 17 keep the cpu line).

    Raises:
        TelemetryParseError: no version line, a version older than 15, or a short cpu line.
    """
    src = "proc/schedstat"
    version: int | None = None
    timestamp = 0
    cpus: list[SchedstatCpu] = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "version" and len(parts) >= 2:
            version = _int(src, parts[1])
            if version < MIN_SCHEDSTAT_VERSION:
                raise TelemetryParseError(
                    f"version {version} is older than {MIN_SCHEDSTAT_VERSION} (different field layout)", source=src
                )
        elif parts[0] == "timestamp" and len(parts) >= 2:
            timestamp = _int(src, parts[1])
        elif parts[0].startswith("cpu"):
            if len(parts) < 10:
                raise TelemetryParseError(f"{parts[0]} has {len(parts) - 1} fields, needs 9", source=src)
            cpus.append(
                SchedstatCpu(
                    cpu=_int(src, parts[0][3:]),
                    running_ns=_int(src, parts[7]),
                    run_delay_ns=_int(src, parts[8]),
                    timeslices=_int(src, parts[9]),
                )
            )
    if version is None:
        raise TelemetryParseError("no version line", source=src)
    return Schedstat(version=version, timestamp_jiffies=timestamp, cpus=tuple(cpus))


# --------------------------------------------------------------------------- /proc/pressure/*
@dataclass(frozen=True)
class PressureLine:
    """Share of wall time some (or all) tasks stalled: averages in %, total in microseconds."""

    avg10: float
    avg60: float
    avg300: float
    total_us: int


@dataclass(frozen=True)
class Pressure:
    """One /proc/pressure file. ``full`` is absent for cpu before kernel 5.13."""

    some: PressureLine
    full: PressureLine | None


def parse_pressure(text: str, resource: str = "cpu") -> Pressure:
    """Parse /proc/pressure/{cpu,memory,io} (PSI).

    Raises:
        TelemetryParseError: no ``some`` line, or a line without avg10/avg60/avg300/total.
    """
    src = f"proc/pressure/{resource}"
    lines: dict[str, PressureLine] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0] not in ("some", "full"):
            continue
        values: dict[str, str] = {}
        for token in parts[1:]:
            key, sep, value = token.partition("=")
            if sep:
                values[key] = value
        try:
            lines[parts[0]] = PressureLine(
                avg10=_float(src, values["avg10"]),
                avg60=_float(src, values["avg60"]),
                avg300=_float(src, values["avg300"]),
                total_us=_int(src, values["total"]),
            )
        except KeyError as e:
            raise TelemetryParseError(f"{parts[0]} line lacks {e.args[0]}", source=src) from None
    if "some" not in lines:
        raise TelemetryParseError("no 'some' line", source=src)
    return Pressure(some=lines["some"], full=lines.get("full"))


# --------------------------------------------------------------------------- /proc/vmstat
VMSTAT_SELECTED = frozenset(
    {
        "nr_free_pages",
        "pgpgin",
        "pgpgout",
        "pswpin",
        "pswpout",
        "pgfault",
        "pgmajfault",
        "pgscan_kswapd",
        "pgscan_direct",
        "pgscan_khugepaged",
        "pgscan_proactive",
        "pgscan_direct_throttle",
        "pgsteal_kswapd",
        "pgsteal_direct",
        "pgsteal_khugepaged",
        "pgsteal_proactive",
        "allocstall_dma",
        "allocstall_dma32",
        "allocstall_normal",
        "allocstall_movable",
        "compact_stall",
        "compact_fail",
        "compact_success",
        "thp_fault_alloc",
        "thp_fault_fallback",
        "thp_collapse_alloc",
        "workingset_refault",
        "workingset_refault_anon",
        "workingset_refault_file",
        "oom_kill",
        "numa_hit",
        "numa_miss",
    }
)
# Scan and steal counters by reclaimer; pgscan_anon/pgscan_file split the same pages by type.
_PGSCAN = ("pgscan_kswapd", "pgscan_direct", "pgscan_khugepaged", "pgscan_proactive")
_PGSTEAL = ("pgsteal_kswapd", "pgsteal_direct", "pgsteal_khugepaged", "pgsteal_proactive")


@dataclass(frozen=True)
class VmStat:
    """Selected /proc/vmstat counters (``VMSTAT_SELECTED``); a counter this kernel lacks is absent."""

    counters: Mapping[str, int] = field(default_factory=lambda: _EMPTY)

    def get(self, name: str) -> int | None:
        return self.counters.get(name)

    def _sum(self, names: tuple[str, ...]) -> int | None:
        present = [self.counters[n] for n in names if n in self.counters]
        return sum(present) if present else None

    @property
    def pgscan(self) -> int | None:
        """Pages scanned by every reclaimer (kswapd, direct, khugepaged, proactive)."""
        return self._sum(_PGSCAN)

    @property
    def pgsteal(self) -> int | None:
        """Pages reclaimed by every reclaimer."""
        return self._sum(_PGSTEAL)

    @property
    def allocstall(self) -> int | None:
        """Direct-reclaim stalls across zones."""
        return self._sum(tuple(n for n in self.counters if n.startswith("allocstall_")))


def parse_vmstat(text: str) -> VmStat:
    """Parse /proc/vmstat, keeping the counters in ``VMSTAT_SELECTED``.

    Raises:
        TelemetryParseError: a selected counter is not an integer, or no pgfault counter.
    """
    src = "proc/vmstat"
    counters: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in VMSTAT_SELECTED:
            counters[parts[0]] = _int(src, parts[1])
    if "pgfault" not in counters:
        raise TelemetryParseError("no pgfault counter", source=src)
    return VmStat(counters=MappingProxyType(counters))


# --------------------------------------------------------------------------- /proc/meminfo
MEMINFO_SELECTED = frozenset(
    {
        "MemTotal",
        "MemFree",
        "MemAvailable",
        "Buffers",
        "Cached",
        "SwapCached",
        "SwapTotal",
        "SwapFree",
        "Dirty",
        "Writeback",
        "AnonPages",
        "Shmem",
        "Slab",
        "AnonHugePages",
        "Committed_AS",
    }
)


@dataclass(frozen=True)
class MemInfo:
    """Selected /proc/meminfo fields in KiB (the kernel's "kB"). MemAvailable exists from 3.14."""

    fields_kib: Mapping[str, int]

    @property
    def total_kib(self) -> int:
        return self.fields_kib["MemTotal"]

    @property
    def free_kib(self) -> int:
        return self.fields_kib["MemFree"]

    @property
    def available_kib(self) -> int | None:
        return self.fields_kib.get("MemAvailable")


def parse_meminfo(text: str) -> MemInfo:
    """Parse /proc/meminfo, keeping ``MEMINFO_SELECTED`` (values in KiB).

    Raises:
        TelemetryParseError: no MemTotal or MemFree, or a value that is not an integer.
    """
    src = "proc/meminfo"
    fields: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if sep and key in MEMINFO_SELECTED:
            tokens = rest.split()
            if not tokens:
                raise TelemetryParseError(f"{key} has no value", source=src)
            fields[key] = _int(src, tokens[0])
    for required in ("MemTotal", "MemFree"):
        if required not in fields:
            raise TelemetryParseError(f"no {required}", source=src)
    return MemInfo(fields_kib=MappingProxyType(fields))


# --------------------------------------------------------------------------- /proc/loadavg
@dataclass(frozen=True)
class LoadAvg:
    load1: float
    load5: float
    load15: float
    runnable: int
    threads: int
    last_pid: int


def parse_loadavg(text: str) -> LoadAvg:
    """Parse /proc/loadavg (``0.11 0.09 0.03 1/84 3848``).

    Raises:
        TelemetryParseError: fewer than five fields or a malformed ``runnable/threads``.
    """
    src = "proc/loadavg"
    parts = text.split()
    if len(parts) < 5 or "/" not in parts[3]:
        raise TelemetryParseError(f"unexpected shape {text.strip()!r}", source=src)
    runnable, _, threads = parts[3].partition("/")
    return LoadAvg(
        load1=_float(src, parts[0]),
        load5=_float(src, parts[1]),
        load15=_float(src, parts[2]),
        runnable=_int(src, runnable),
        threads=_int(src, threads),
        last_pid=_int(src, parts[4]),
    )


# --------------------------------------------------------------------------- /proc/diskstats
@dataclass(frozen=True)
class DiskStats:
    """One /proc/diskstats line. Sectors are 512 bytes whatever the device's block size."""

    device: str
    reads: int
    reads_merged: int
    sectors_read: int
    read_time_ms: int
    writes: int
    writes_merged: int
    sectors_written: int
    write_time_ms: int
    in_flight: int
    io_time_ms: int
    weighted_io_time_ms: int


DISK_SKIP_PREFIXES = ("loop", "ram")


def parse_diskstats(text: str, skip_prefixes: tuple[str, ...] = DISK_SKIP_PREFIXES) -> Mapping[str, DiskStats]:
    """Parse /proc/diskstats (14, 18 or 20 columns), skipping loop and ram devices.

    Raises:
        TelemetryParseError: a line with fewer than 14 columns or a non-integer field.
    """
    src = "proc/diskstats"
    disks: dict[str, DiskStats] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 14:
            raise TelemetryParseError(f"line has {len(parts)} columns, needs 14: {line.strip()!r}", source=src)
        name = parts[2]
        if name.startswith(skip_prefixes):
            continue
        n = [_int(src, p) for p in parts[3:14]]
        disks[name] = DiskStats(name, *n)
    return MappingProxyType(disks)


# --------------------------------------------------------------------------- /proc/net/dev
@dataclass(frozen=True)
class NetDev:
    interface: str
    rx_bytes: int
    rx_packets: int
    rx_errors: int
    rx_drops: int
    tx_bytes: int
    tx_packets: int
    tx_errors: int
    tx_drops: int


def parse_net_dev(text: str) -> Mapping[str, NetDev]:
    """Parse /proc/net/dev (two header lines, then ``iface: 8 rx fields 8 tx fields``).

    Raises:
        TelemetryParseError: an interface line with fewer than 16 counters.
    """
    src = "proc/net/dev"
    interfaces: dict[str, NetDev] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if not sep or "|" in line:
            continue
        n = rest.split()
        if len(n) < 16:
            raise TelemetryParseError(f"{name.strip()} has {len(n)} counters, needs 16", source=src)
        v = [_int(src, x) for x in n[:16]]
        iface = name.strip()
        interfaces[iface] = NetDev(iface, v[0], v[1], v[2], v[3], v[8], v[9], v[10], v[11])
    return MappingProxyType(interfaces)


# --------------------------------------------------------------------------- /proc/net/snmp
SNMP_SELECTED: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "Tcp": frozenset(
            {
                "ActiveOpens",
                "PassiveOpens",
                "AttemptFails",
                "EstabResets",
                "CurrEstab",
                "InSegs",
                "OutSegs",
                "RetransSegs",
                "InErrs",
                "OutRsts",
            }
        ),
        "Udp": frozenset(
            {"InDatagrams", "NoPorts", "InErrors", "OutDatagrams", "RcvbufErrors", "SndbufErrors", "InCsumErrors"}
        ),
    }
)


@dataclass(frozen=True)
class Snmp:
    """Selected Tcp and Udp counters of /proc/net/snmp (``SNMP_SELECTED``)."""

    tcp: Mapping[str, int]
    udp: Mapping[str, int]


def parse_snmp(text: str) -> Snmp:
    """Parse /proc/net/snmp: pairs of ``Proto: names`` / ``Proto: values`` lines.

    Raises:
        TelemetryParseError: a values line whose length differs from its header, or no Tcp table.
    """
    src = "proc/net/snmp"
    tables: dict[str, dict[str, int]] = {}
    header: dict[str, list[str]] = {}
    for line in text.splitlines():
        proto, sep, rest = line.partition(":")
        if not sep or proto not in SNMP_SELECTED:
            continue
        tokens = rest.split()
        if proto not in header:
            header[proto] = tokens
            continue
        names = header.pop(proto)
        if len(names) != len(tokens):
            raise TelemetryParseError(f"{proto} has {len(names)} names but {len(tokens)} values", source=src)
        wanted = SNMP_SELECTED[proto]
        tables[proto] = {k: _int(src, v) for k, v in zip(names, tokens, strict=True) if k in wanted}
    if "Tcp" not in tables:
        raise TelemetryParseError("no Tcp table", source=src)
    return Snmp(tcp=MappingProxyType(tables["Tcp"]), udp=MappingProxyType(tables.get("Udp", {})))


# --------------------------------------------------------------------------- cgroup cpu.stat
def parse_flat_keyed(text: str, source: str) -> Mapping[str, int]:
    """Parse a ``key value`` per line file (cgroup ``cpu.stat``).

    Raises:
        TelemetryParseError: a value that is not an integer.
    """
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[0]] = _int(source, parts[1])
    return MappingProxyType(out)


@dataclass(frozen=True)
class CgroupCpu:
    """A cgroup's CPU counters, normalised to nanoseconds. ``None``: this hierarchy lacks it."""

    name: str
    version: int
    usage_ns: int | None
    nr_periods: int | None
    nr_throttled: int | None
    throttled_ns: int | None


def parse_cgroup_v1_cpu(name: str, cpu_stat: str, cpuacct_usage: str | None) -> CgroupCpu:
    """cgroup v1: ``cpu.stat`` (nr_periods, nr_throttled, throttled_time ns) and ``cpuacct.usage`` (ns).

    Raises:
        TelemetryParseError: a non-integer counter.
    """
    src = f"cgroup {name} cpu.stat"
    stat = parse_flat_keyed(cpu_stat, src)
    usage = _int(f"cgroup {name} cpuacct.usage", cpuacct_usage.strip()) if cpuacct_usage is not None else None
    return CgroupCpu(
        name=name,
        version=1,
        usage_ns=usage,
        nr_periods=stat.get("nr_periods"),
        nr_throttled=stat.get("nr_throttled"),
        throttled_ns=stat.get("throttled_time"),
    )


def parse_cgroup_v2_cpu(name: str, cpu_stat: str) -> CgroupCpu:
    """cgroup v2 ``cpu.stat``: usage_usec always; nr_periods/nr_throttled/throttled_usec with the cpu controller.

    Raises:
        TelemetryParseError: a non-integer counter.
    """
    stat = parse_flat_keyed(cpu_stat, f"cgroup {name} cpu.stat")

    def ns(key: str) -> int | None:
        value = stat.get(key)
        return None if value is None else value * 1000

    return CgroupCpu(
        name=name,
        version=2,
        usage_ns=ns("usage_usec"),
        nr_periods=stat.get("nr_periods"),
        nr_throttled=stat.get("nr_throttled"),
        throttled_ns=ns("throttled_usec"),
    )
