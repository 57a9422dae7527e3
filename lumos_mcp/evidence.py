"""The evidence a change was decided on, small enough for every audit record.

An apply, commit, revert or auto-revert record carries ``telemetry``: a handful of fields of the
full performance signature (the ones an auditor asks about first: how busy, how much waiting,
how much pressure), rounded, plus at most ``MAX_APP_METRICS`` application metrics. Never the
whole signature: the record stays well under ``MAX_SUMMARY_BYTES``.
"""

from __future__ import annotations

from typing import Any

from lumos_mcp.telemetry.signature import Signature

SUMMARY_SECTIONS = frozenset({"cpu", "sched", "psi", "memory", "perf", "app"})
"""The signature sections the summary reads (others are not computed for it)."""
FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cpu_util_pct", ("cpu", "total", "util_pct")),
    ("load1", ("sched", "load1")),
    ("run_delay_us_per_timeslice", ("sched", "run_delay_us_per_timeslice")),
    ("ctx_switches_per_s", ("sched", "ctx_switches_per_s")),
    ("psi_cpu_some_avg10_pct", ("psi", "cpu", "some", "avg10_pct")),
    ("psi_memory_some_avg10_pct", ("psi", "memory", "some", "avg10_pct")),
    ("psi_io_some_avg10_pct", ("psi", "io", "some", "avg10_pct")),
    ("mem_available_mib", ("memory", "available_mib")),
    ("major_faults_per_s", ("memory", "major_faults_per_s")),
    ("ipc", ("perf", "ipc")),
)
"""Summary name -> attribute path in the full signature."""
MAX_APP_METRICS = 3
MAX_NAME = 64
MAX_SUMMARY_BYTES = 1024
"""What one summary may take in a record, JSON-encoded (tests hold it to this)."""


def _at(obj: Any, path: tuple[str, ...]) -> float | None:
    for name in path:
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    if isinstance(obj, bool) or not isinstance(obj, int | float):
        return None
    return obj


def _round(value: float) -> float:
    return float(f"{value:.4g}")


def telemetry_summary(signature: Signature) -> dict[str, Any]:
    """The few signature fields an audit record keeps (missing ones are left out), with the
    window they cover and the first ``MAX_APP_METRICS`` app metrics' p95."""
    out: dict[str, Any] = {
        "end_unix_s": round(signature.end_unix_s, 3),
        "covered_s": round(signature.covered_s, 3),
    }
    for name, path in FIELDS:
        value = _at(signature, path)
        if value is not None:
            out[name] = _round(value)
    apps = sorted(signature.app or [], key=lambda m: m.name)[:MAX_APP_METRICS]
    if apps:
        out["app_p95"] = {m.name[:MAX_NAME]: _round(m.p95) for m in apps}
    return out


__all__ = ["FIELDS", "MAX_APP_METRICS", "MAX_SUMMARY_BYTES", "SUMMARY_SECTIONS", "telemetry_summary"]
