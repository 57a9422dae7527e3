"""Readers: ``read_x(root)`` reads one source through ``KernelRoot`` and parses it.

A reader raises the typed error of the root (``KnobUnavailableError`` when the kernel lacks
the file). ``read_snapshot`` reads every source and turns each failure into an entry of its
``missing`` mapping, so a kernel without a source reports ``None`` plus a reason, never zeros.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import TypeVar

from lumos_mcp.errors import InvalidParameterError, KnobUnavailableError, LumosError
from lumos_mcp.kernelfs import KernelRoot
from lumos_mcp.telemetry.parsers import (
    CgroupCpu,
    DiskStats,
    LoadAvg,
    MemInfo,
    NetDev,
    Pressure,
    ProcStat,
    Schedstat,
    Snmp,
    VmStat,
    parse_cgroup_v1_cpu,
    parse_cgroup_v2_cpu,
    parse_diskstats,
    parse_loadavg,
    parse_meminfo,
    parse_net_dev,
    parse_pressure,
    parse_schedstat,
    parse_snmp,
    parse_stat,
    parse_vmstat,
)

PSI_RESOURCES = ("cpu", "memory", "io")

# Why a source can be absent, appended to the "does not exist" reason.
_HINTS = {
    "schedstat": "the kernel lacks CONFIG_SCHEDSTATS",
    "pressure": "the kernel lacks PSI (CONFIG_PSI, or psi=0 on the command line)",
}

_CGROUP_NAME = re.compile(r"^[A-Za-z0-9_.@:+-]+(/[A-Za-z0-9_.@:+-]+)*$")


def read_stat(root: KernelRoot) -> ProcStat:
    """/proc/stat.

    Raises:
        KnobUnavailableError, KernelIOError: the root's errors. TelemetryParseError: a malformed text.
    """
    return parse_stat(root.read_text("proc/stat"))


def read_schedstat(root: KernelRoot) -> Schedstat:
    """/proc/schedstat (kernels built with CONFIG_SCHEDSTATS).

    Raises:
        KnobUnavailableError: the kernel has no schedstats. TelemetryParseError: version < 15.
    """
    return parse_schedstat(root.read_text("proc/schedstat"))


def read_pressure(root: KernelRoot, resource: str) -> Pressure:
    """/proc/pressure/<resource> for resource in cpu, memory, io.

    Raises:
        InvalidParameterError: an unknown resource. KnobUnavailableError: no PSI on this kernel.
        TelemetryParseError: a malformed text.
    """
    if resource not in PSI_RESOURCES:
        raise InvalidParameterError("not one of cpu, memory, io", parameter=resource, knob="telemetry.psi")
    return parse_pressure(root.read_text(f"proc/pressure/{resource}"), resource)


def read_vmstat(root: KernelRoot) -> VmStat:
    """/proc/vmstat (selected counters).

    Raises:
        KnobUnavailableError, KernelIOError: the root's errors. TelemetryParseError: a malformed text.
    """
    return parse_vmstat(root.read_text("proc/vmstat"))


def read_meminfo(root: KernelRoot) -> MemInfo:
    """/proc/meminfo (selected fields, KiB).

    Raises:
        KnobUnavailableError, KernelIOError: the root's errors. TelemetryParseError: a malformed text.
    """
    return parse_meminfo(root.read_text("proc/meminfo"))


def read_loadavg(root: KernelRoot) -> LoadAvg:
    """/proc/loadavg.

    Raises:
        KnobUnavailableError, KernelIOError: the root's errors. TelemetryParseError: a malformed text.
    """
    return parse_loadavg(root.read_text("proc/loadavg"))


def read_diskstats(root: KernelRoot) -> Mapping[str, DiskStats]:
    """/proc/diskstats without loop and ram devices; when ``sys/block`` lists devices, whole disks only
    (partitions would count the same I/O twice).

    Raises:
        KnobUnavailableError, KernelIOError: the root's errors. TelemetryParseError: a malformed text.
    """
    disks = parse_diskstats(root.read_text("proc/diskstats"))
    whole = set(root.listdir("sys/block"))
    if whole:
        disks = MappingProxyType({k: v for k, v in disks.items() if k in whole})
    return disks


def read_net_dev(root: KernelRoot) -> Mapping[str, NetDev]:
    """/proc/net/dev.

    Raises:
        KnobUnavailableError, KernelIOError: the root's errors. TelemetryParseError: a malformed text.
    """
    return parse_net_dev(root.read_text("proc/net/dev"))


def read_snmp(root: KernelRoot) -> Snmp:
    """/proc/net/snmp (selected Tcp and Udp counters).

    Raises:
        KnobUnavailableError, KernelIOError: the root's errors. TelemetryParseError: a malformed text.
    """
    return parse_snmp(root.read_text("proc/net/snmp"))


def check_cgroup_name(name: str) -> str:
    """A cgroup path relative to a hierarchy's root (``batch``, ``system.slice/pg.service``).

    Raises:
        InvalidParameterError: an empty name, ``.``/``..`` parts, or characters outside the pattern.
    """
    if not _CGROUP_NAME.match(name) or any(p in (".", "..") for p in name.split("/")):
        raise InvalidParameterError("a cgroup name is letters, digits and _.@:+- parts", parameter=name, knob="cgroup")
    return name


def read_cgroup_cpu(root: KernelRoot, name: str) -> CgroupCpu:
    """CPU usage and throttling of one cgroup, whichever hierarchy holds it.

    Looked up in order: cgroup v1 (``sys/fs/cgroup/cpu/<name>/cpu.stat`` with ``cpuacct.usage``
    from ``cpuacct/<name>`` or ``cpu/<name>``), cgroup v2 (``sys/fs/cgroup/<name>/cpu.stat`` when
    ``sys/fs/cgroup/cgroup.controllers`` exists), then the hybrid layout's
    ``sys/fs/cgroup/unified/<name>/cpu.stat``.

    Raises:
        InvalidParameterError: a malformed name. KnobUnavailableError: no hierarchy has the group.
        TelemetryParseError: a malformed counter.
    """
    check_cgroup_name(name)
    v1 = f"sys/fs/cgroup/cpu/{name}"
    if root.exists(f"{v1}/cpu.stat"):
        usage: str | None = None
        for candidate in (f"sys/fs/cgroup/cpuacct/{name}/cpuacct.usage", f"{v1}/cpuacct.usage"):
            if root.exists(candidate):
                usage = root.read_text(candidate)
                break
        return parse_cgroup_v1_cpu(name, root.read_text(f"{v1}/cpu.stat"), usage)
    if root.exists("sys/fs/cgroup/cgroup.controllers") and root.exists(f"sys/fs/cgroup/{name}/cpu.stat"):
        return parse_cgroup_v2_cpu(name, root.read_text(f"sys/fs/cgroup/{name}/cpu.stat"))
    if root.exists(f"sys/fs/cgroup/unified/{name}/cpu.stat"):
        return parse_cgroup_v2_cpu(name, root.read_text(f"sys/fs/cgroup/unified/{name}/cpu.stat"))
    raise KnobUnavailableError(
        "no cgroup v1 cpu, v2 or unified group of that name", knob=f"cgroup {name}", kernel=_release(root)
    )


def _release(root: KernelRoot) -> str:
    try:
        return root.kernel_release
    except LumosError:
        return "unknown"


# --------------------------------------------------------------------------- snapshot
@dataclass(frozen=True)
class Snapshot:
    """Every source read at one instant. ``t`` is the sampler's (monotonic) clock in seconds,
    ``wall`` the Unix time; a source that could not be read is ``None`` with a reason in ``missing``."""

    t: float
    wall: float
    stat: ProcStat | None
    schedstat: Schedstat | None
    pressure: Mapping[str, Pressure]
    vmstat: VmStat | None
    meminfo: MemInfo | None
    loadavg: LoadAvg | None
    diskstats: Mapping[str, DiskStats] | None
    net_dev: Mapping[str, NetDev] | None
    snmp: Snmp | None
    cgroups: Mapping[str, CgroupCpu]
    missing: Mapping[str, str]


_T = TypeVar("_T")


def _reason(source: str, err: LumosError) -> str:
    hint = _HINTS.get(source.split("/")[0])
    if isinstance(err, KnobUnavailableError) and hint:
        return f"{err.code}: {hint}"
    return f"{err.code}: {err}"


def read_snapshot(root: KernelRoot, t: float, wall: float, cgroups: Sequence[str] = ()) -> Snapshot:
    """Read every source once (blocking file reads: run it in a worker thread).

    Raises:
        InvalidParameterError: a malformed cgroup name (checked before anything is read).
    """
    for name in cgroups:
        check_cgroup_name(name)
    missing: dict[str, str] = {}

    def attempt(source: str, reader: Callable[[], _T]) -> _T | None:
        try:
            return reader()
        except LumosError as e:
            missing[source] = _reason(source, e)
            return None

    pressure: dict[str, Pressure] = {}
    for resource in PSI_RESOURCES:
        value = attempt(f"pressure/{resource}", partial(read_pressure, root, resource))
        if value is not None:
            pressure[resource] = value
    groups: dict[str, CgroupCpu] = {}
    for name in cgroups:
        group = attempt(f"cgroup/{name}", partial(read_cgroup_cpu, root, name))
        if group is not None:
            groups[name] = group
    return Snapshot(
        t=t,
        wall=wall,
        stat=attempt("stat", lambda: read_stat(root)),
        schedstat=attempt("schedstat", lambda: read_schedstat(root)),
        pressure=MappingProxyType(pressure),
        vmstat=attempt("vmstat", lambda: read_vmstat(root)),
        meminfo=attempt("meminfo", lambda: read_meminfo(root)),
        loadavg=attempt("loadavg", lambda: read_loadavg(root)),
        diskstats=attempt("diskstats", lambda: read_diskstats(root)),
        net_dev=attempt("net/dev", lambda: read_net_dev(root)),
        snmp=attempt("net/snmp", lambda: read_snmp(root)),
        cgroups=MappingProxyType(groups),
        missing=MappingProxyType(missing),
    )
