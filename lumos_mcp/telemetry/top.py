"""``lumos-mcp top``: a live terminal view of the performance signature and its trends."""

from __future__ import annotations

import shutil
import sys

import anyio
import orjson
from rich.console import Group
from rich.live import Live
from rich.table import Table

from lumos_mcp.kernelfs.root import KernelRoot
from lumos_mcp.telemetry.facade import Progress, Telemetry
from lumos_mcp.telemetry.perf import PerfStat
from lumos_mcp.telemetry.signature import Signature, Trends


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(sig: Signature, trends: Trends | None) -> Group:
    """The signature as a few compact tables."""
    head = Table(
        title=f"lumos-mcp top · kernel {sig.kernel_release} · window {sig.window_s:g} s ({sig.samples_used} samples)",
        show_header=True,
        expand=False,
    )
    for col in ("metric", "value"):
        head.add_column(col)
    rows: list[tuple[str, str]] = []
    if sig.cpu is not None and sig.cpu.total is not None:
        rows.append(("cpu util %", _f(sig.cpu.total.util_pct)))
        for n, core in enumerate(sig.cpu.per_core or []):
            rows.append((f"cpu{n} util %", _f(core.util_pct)))
    flat = sig.model_dump(mode="json", exclude_none=True)
    for section in ("sched", "memory"):
        for key, value in (flat.get(section) or {}).items():
            if isinstance(value, int | float):
                rows.append((f"{section}.{key}", _f(float(value), 2)))
    for resource, lines in (flat.get("psi") or {}).items():
        for kind, line in (lines or {}).items():
            if isinstance(line, dict):
                rows.append((f"psi.{resource}.{kind} avg10 %", _f(line.get("avg10_pct"), 2)))
    for name, value in rows:
        head.add_row(name, value)
    parts: list[Table] = [head]
    if trends is not None and trends.shifts:
        shifts = Table(title="shifts detected", show_header=True)
        for col in ("metric", "direction", "delta %"):
            shifts.add_column(col)
        for shift in trends.shifts[:10]:
            shifts.add_row(shift.metric, shift.direction, _f(shift.delta_pct))
        parts.append(shifts)
    if sig.unavailable:
        missing = Table(title="not measurable here", show_header=False)
        for key, why in list(sig.unavailable.items())[:12]:
            missing.add_row(key, why)
        parts.append(missing)
    return Group(*parts)


def _progress_on_stderr(window_s: float) -> Progress:
    """Progress while the window fills: one updating line on a terminal, a start and an end line else."""
    tty = sys.stderr.isatty()
    sys.stderr.write(f"lumos-mcp top: sampling a fresh {window_s:g} s window; the signature follows as JSON\n")

    async def progress(covered_s: float, window: float, message: str) -> None:
        if covered_s >= window:
            sys.stderr.write(("\r" if tty else "") + f"{message} ({window:g} s)\n")
        elif tty:
            sys.stderr.write(f"\r{message}: {covered_s:4.1f} / {window:g} s")
        sys.stderr.flush()

    return progress


async def run_top(interval_s: float, window_s: float, once: bool) -> int:
    """Sample the host (read-only) and show the signature, refreshed every interval."""
    perf = PerfStat(interval_ms=int(interval_s * 1000)) if shutil.which("perf") else None
    telemetry = Telemetry(KernelRoot("/"), interval_s=interval_s, perf=perf)
    async with telemetry.running():
        if once:
            sig = await telemetry.fresh_signature(window_s, _progress_on_stderr(window_s))
            sys.stdout.write(orjson.dumps(sig.model_dump(mode="json"), option=orjson.OPT_INDENT_2).decode() + "\n")
            return 0
        await telemetry.fresh_signature(min(window_s, 2 * interval_s))
        with Live(render(telemetry.signature(window_s), None), refresh_per_second=2, screen=False) as live:
            while True:
                await anyio.sleep(interval_s)
                covered = len(telemetry.sampler.samples()) * interval_s
                trends = telemetry.trends(window_s, window_s) if covered >= 2 * window_s else None
                live.update(render(telemetry.signature(window_s), trends))
