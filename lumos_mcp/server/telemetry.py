"""Telemetry tools: the performance signature with trends, and application metrics."""

from __future__ import annotations

from typing import Annotated, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult
from pydantic import BaseModel, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from lumos_mcp.server.common import READ_ONLY, REPORTING, domain_errors, ok
from lumos_mcp.service import Service
from lumos_mcp.telemetry.brief import (
    HEADLINE_PATHS,
    SignatureBrief,
    TrendsBrief,
    brief_paths,
    brief_signature,
    brief_trends,
)
from lumos_mcp.telemetry.facade import Telemetry
from lumos_mcp.telemetry.signature import Signature, Trends

SECTIONS = "cpu, sched, psi, memory, perf, io, network, cgroups, app"


class TelemetryResult(BaseModel):
    detail: Literal["summary", "full"] = Field(description="summary: SignatureBrief/TrendsBrief; full: every field")
    signature: SignatureBrief | Signature
    trends: TrendsBrief | Trends | None = Field(
        description="The window against the baseline before it; null while the buffer does not yet hold a baseline."
    )

    @classmethod
    def __get_pydantic_json_schema__(cls, core: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        """Each level's exact shape: `detail` says which model `signature` and `trends` hold (if/then/else)."""
        schema = handler(core)
        target = handler.resolve_ref_schema(schema)
        props = target["properties"]
        brief_sig, full_sig = props["signature"]["anyOf"]  # in the order the annotation declares them
        brief_trends, full_trends, null = props["trends"]["anyOf"]
        # the properties name no model, so a client validates each value once, against its level's model
        props["signature"] = {"type": "object", "description": "SignatureBrief (summary) or Signature (full)"}
        props["trends"] = {"type": ["object", "null"], "description": props["trends"].get("description", "")}
        target.update(
            {
                "if": {"properties": {"detail": {"const": "summary"}}},
                "then": {"properties": {"signature": brief_sig, "trends": {"anyOf": [brief_trends, null]}}},
                "else": {"properties": {"signature": full_sig, "trends": {"anyOf": [full_trends, null]}}},
            }
        )
        return schema


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
        detail: Annotated[
            Literal["summary", "full"],
            Field(description="summary: the brief; full: per CPU, device, interface, every trend statistic."),
        ] = "summary",
        fresh: Annotated[
            bool,
            Field(
                description="Wait for a window of samples taken after this call (use "
                "after apply, to measure the new setting)."
            ),
        ] = False,
    ) -> Annotated[CallToolResult, TelemetryResult]:
        """The host over the last window_s seconds, in brief: CPU, run queue, pressure stall (PSI), memory,
        I/O, network, busiest cgroups, app metrics (report_app_metric), a note per section, baseline means and
        change points (shifts). Units are in the names; paths match the full signature (and guards).
        detail="full": per CPU/device/interface and every trend statistic; sections narrows either. Waits,
        with progress, until the window is covered, or for a new one if fresh=true (after apply)."""
        telemetry = service.telemetry
        chosen = set(sections) if sections else None

        async def progress(done: float, total: float, message: str) -> None:
            await ctx.report_progress(done, total, message)

        def answer(fresh_signature: Signature | None) -> CallToolResult:
            signature = fresh_signature or telemetry.signature(window_s, chosen)
            with_trends = _covered(telemetry) >= 2 * window_s
            if detail == "full":
                trends = telemetry.trends(window_s, window_s, chosen) if with_trends else None
                return ok(TelemetryResult(detail="full", signature=signature, trends=trends))
            brief = brief_signature(signature)
            if not with_trends:
                return ok(TelemetryResult(detail="summary", signature=brief, trends=None))
            # the brief's metrics only: a third of the series, and the change points among them
            trends = telemetry.trends(window_s, window_s, chosen, set(brief_paths(brief)) | HEADLINE_PATHS)
            brief = brief_signature(signature, trends)
            return ok(TelemetryResult(detail="summary", signature=brief, trends=brief_trends(trends, brief)))

        waited = None
        # a late sampler (a loaded machine) can leave one sample in the window: wait for a fresh one then
        if fresh or _covered(telemetry) < window_s * 0.9 or len(telemetry.sampler.window(window_s)) < 2:
            waited = await telemetry.fresh_signature(window_s, progress, chosen)
        # trends fit a line per metric over hundreds of samples: all the work off the event loop, in one hop
        return await anyio.to_thread.run_sync(answer, waited)

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
