"""Signature -> fixed feature vector, and two vectors -> pairwise features.

The vector is built from `flatten` of a `Signature` (``{"sched.ctx_switches_per_s": ...}``),
so a recorded window, a live signature and a tool argument all go through the same code.
Host metrics are named as the signature names them; per-device and per-core values are
reduced to sums or max/min (device names differ between hosts); cgroups enter by *role*
(``app``: the group whose performance matters, ``other``: the group whose knobs trade
against it), mapped to real cgroup names by ``roles``. Missing metrics are ``nan`` (this
host has no IPC, LLC or schedstat run delay): the boosted trees route them, and the
archetype embedding imputes the training mean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from lumos_mcp.telemetry.metrics import flatten

FloatArray = npt.NDArray[np.float64]

HOST_FEATURES: tuple[str, ...] = (
    "cpu.total.util_pct",
    "cpu.total.user_pct",
    "cpu.total.system_pct",
    "cpu.total.iowait_pct",
    "cpu.total.steal_pct",
    "sched.ctx_switches_per_s",
    "sched.forks_per_s",
    "sched.migrations_per_s",
    "sched.procs_running",
    "sched.procs_blocked",
    "sched.load1",
    "sched.run_delay_ms_per_s",
    "sched.run_delay_us_per_timeslice",
    "psi.cpu.some.window_pct",
    "psi.cpu.full.window_pct",
    "psi.memory.some.window_pct",
    "psi.memory.full.window_pct",
    "psi.io.some.window_pct",
    "psi.io.full.window_pct",
    "memory.page_faults_per_s",
    "memory.major_faults_per_s",
    "memory.reclaim_scan_pages_per_s",
    "memory.allocation_stalls_per_s",
    "memory.thp_fault_allocs_per_s",
    "memory.anon_mib",
    "memory.dirty_mib",
    "perf.ipc",
    "perf.cache_misses_per_s",
    "perf.llc_misses_per_kilo_instructions",
    "perf.context_switches_per_s",
    "perf.cpu_migrations_per_s",
    "perf.page_faults_per_s",
    "network.total_excluding_lo.rx_packets_per_s",
    "network.total_excluding_lo.tx_packets_per_s",
    "network.tcp.in_segs_per_s",
)
DERIVED_FEATURES: tuple[str, ...] = (
    "cpu.core_util_max_pct",
    "cpu.core_util_min_pct",
    "io.reads_per_s",
    "io.writes_per_s",
    "io.read_kib_per_s",
    "io.write_kib_per_s",
    "io.util_max_pct",
    "network.lo_packets_per_s",
)
CGROUP_METRICS: tuple[str, ...] = ("cpu_usage_cores", "throttled_ms_per_s", "throttled_pct")
ROLES: tuple[str, ...] = ("app", "other")
DEFAULT_ROLES: dict[str, str] = {"app": "lumos-arena/app", "other": "lumos-arena/other"}


def feature_names(with_cgroups: bool = True) -> list[str]:
    """The vector's names, in order."""
    names = [*HOST_FEATURES, *DERIVED_FEATURES]
    if with_cgroups:
        names += [f"cgroup.{role}.{m}" for role in ROLES for m in CGROUP_METRICS]
    return names


def flat_signature(signature: Mapping[str, Any]) -> dict[str, float]:
    """Numeric leaves of a signature given as nested data (``Signature.model_dump()``), or as it is
    when already flat (dotted keys, as recorded in the dataset)."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in signature.values()):
        return {k: float(v) for k, v in signature.items()}
    return flatten({k: v for k, v in signature.items() if k != "unavailable"})


def _sum(flat: Mapping[str, float], prefix: str, suffix: str, exclude: Sequence[str] = ()) -> float:
    values = [
        v
        for k, v in flat.items()
        if k.startswith(prefix) and k.endswith(suffix) and not any(k.startswith(prefix + e + ".") for e in exclude)
    ]
    return float(sum(values)) if values else math.nan


def _extreme(flat: Mapping[str, float], prefix: str, suffix: str, fn: Any) -> float:
    values = [v for k, v in flat.items() if k.startswith(prefix) and k.endswith(suffix)]
    return float(fn(values)) if values else math.nan


def vector(
    signature: Mapping[str, Any], roles: Mapping[str, str] | None = None, with_cgroups: bool = True
) -> FloatArray:
    """The fixed feature vector of one signature (nested or flat), ``nan`` where a metric is missing.

    ``roles`` maps ``app``/``other`` to cgroup names (default: the arena's groups).
    """
    flat = flat_signature(signature)
    roles = DEFAULT_ROLES if roles is None else roles
    values = [flat.get(name, math.nan) for name in HOST_FEATURES]
    values += [
        _extreme(flat, "cpu.per_core.", ".util_pct", max),
        _extreme(flat, "cpu.per_core.", ".util_pct", min),
        _sum(flat, "io.", ".reads_per_s"),
        _sum(flat, "io.", ".writes_per_s"),
        _sum(flat, "io.", ".read_kib_per_s"),
        _sum(flat, "io.", ".write_kib_per_s"),
        _extreme(flat, "io.", ".util_pct", max),
        flat.get("network.interfaces.lo.rx_packets_per_s", math.nan),
    ]
    if with_cgroups:
        for role in ROLES:
            group = roles.get(role)
            for m in CGROUP_METRICS:
                values.append(flat.get(f"cgroups.{group}.{m}", math.nan) if group else math.nan)
    return np.array(values, dtype=np.float64)


def matrix(
    signatures: Sequence[Mapping[str, Any]], roles: Mapping[str, str] | None = None, with_cgroups: bool = True
) -> FloatArray:
    """Rows of `vector`, one per signature."""
    width = len(feature_names(with_cgroups))
    if not signatures:
        return np.empty((0, width))
    return np.vstack([vector(s, roles, with_cgroups) for s in signatures])


def signed_log(x: FloatArray) -> FloatArray:
    """``sign(x) * log1p(|x|)``: rates span orders of magnitude; nan stays nan."""
    return np.sign(x) * np.log1p(np.abs(x))


def pair_feature_names(names: Sequence[str]) -> list[str]:
    return [f"diff:{n}" for n in names] + [f"logratio:{n}" for n in names] + [f"level:{n}" for n in names]


def pair_features(a: FloatArray, b: FloatArray, scale: FloatArray) -> FloatArray:
    """Pairwise features of rows ``a`` against rows ``b`` (same shape): the difference divided by
    the feature's training spread, the safe log-ratio ``slog(a) - slog(b)`` and the pair's level
    ``(slog(a) + slog(b)) / 2`` (the context a difference means something in). Antisymmetric in
    the first two blocks, symmetric in the third; ``nan`` where either side is missing.
    """
    la, lb = signed_log(a), signed_log(b)
    return np.hstack([(a - b) / scale, la - lb, (la + lb) / 2.0])
