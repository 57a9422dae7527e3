"""Telemetry tools: the performance signature with trends, and application metrics."""

from __future__ import annotations

from typing import Annotated

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from lumos_mcp.server.common import READ_ONLY, REPORTING, domain_errors, ok
from lumos_mcp.service import Service
from lumos_mcp.telemetry.facade import Telemetry
from lumos_mcp.telemetry.signature import Signature, Trends

SECTIONS = "cpu, sched, psi, memory, perf, io, network, cgroups, app"


class TelemetryResult(BaseModel):
    signature: Signature
    trends: Trends | None = Field(
        None,
        description="The window against the baseline before it; null while the buffer does not yet hold a baseline.",
    )


class MetricAck(BaseModel):
    name: str
    value: float
    unit: str
    accepted: bool = True


def _covered(telemetry: Telemetry) -> float:
    """Seconds of samples the ring buffer holds."""
    samples = telemetry.sampler.samples()
    return samples[-1].t - samples[0].t if len(samples) >= 2 else 0.0


def register(mcp: MCPServer[Service], service: Service) -> None:
    @mcp.tool(title="Read the performance signature", annotations=READ_ONLY)
    @domain_errors
    async def read_telemetry(
        ctx: Context,
        window_s: Annotated[float, Field(gt=0, le=3600, description="Window to summarise, seconds.")] = 10.0,
        sections: Annotated[list[str] | None, Field(description=f"Subset of: {SECTIONS}. All if omitted.")] = None,
        fresh: Annotated[
            bool,
            Field(
                description="Wait for a window of samples taken after this call (use "
                "after apply, to measure the new setting)."
            ),
        ] = False,
    ) -> Annotated[CallToolResult, TelemetryResult]:
        """The host's performance signature over the last window_s seconds: CPU per core, scheduler (context
        switches, migrations, run-queue delay), pressure stall (PSI), memory and VM, perf counters where the
        machine has them (IPC, LLC), disk, network, per-cgroup CPU and throttling, and application metrics
        reported with report_app_metric. Units are in every field name. Trends compare the window with the
        one before it (delta, slope, EWMA, shift_detected). If the buffer does not cover the window yet (or
        fresh=true) it waits, reporting progress. `unavailable` says what this machine cannot measure."""
        telemetry = service.telemetry
        chosen = set(sections) if sections else None

        async def progress(done: float, total: float, message: str) -> None:
            await ctx.report_progress(done, total, message)

        if fresh or _covered(telemetry) < window_s * 0.9:
            signature = await telemetry.fresh_signature(window_s, progress, chosen)
        else:
            signature = await anyio.to_thread.run_sync(telemetry.signature, window_s, chosen)
        # trends fit a line per metric over hundreds of samples: keep that off the event loop
        trends = (
            await anyio.to_thread.run_sync(telemetry.trends, window_s, window_s, chosen)
            if _covered(telemetry) >= 2 * window_s
            else None
        )
        return ok(TelemetryResult(signature=signature, trends=trends))

    @mcp.tool(title="Report an application metric", annotations=REPORTING)
    @domain_errors
    def report_app_metric(
        name: Annotated[
            str, Field(description="e.g. 'api.latency_p99_ms' or 'orders.throughput_rps'.", max_length=128)
        ],
        value: Annotated[float, Field(description="The measured value, in unit.")],
        unit: Annotated[str, Field(description="e.g. ms, rps, percent.", max_length=32)],
    ) -> Annotated[CallToolResult, MetricAck]:
        """Feed an application metric (latency, throughput) that you measured. It appears in read_telemetry's
        `app` section (last, mean, p95 over the window), so the loop can optimise what the user cares about."""
        service.telemetry.report_app_metric(name, value, unit)
        return ok(MetricAck(name=name, value=value, unit=unit))

    _ = (read_telemetry, report_app_metric)
