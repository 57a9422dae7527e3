"""Telemetry tools: the performance signature with trends, application metrics (one value, a batch of
samples or a histogram), and the comparison of an app metric before and after a change."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult
from pydantic import BaseModel, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from lumos_mcp.compare import Statistic, Verdict
from lumos_mcp.errors import InvalidArgumentsError
from lumos_mcp.server.common import READ_ONLY, REPORTING, domain_errors, ok
from lumos_mcp.service import Service
from lumos_mcp.telemetry.app import (
    MAX_APP_VALUE,
    MAX_BATCH,
    MAX_BUCKETS,
    MAX_SAMPLE_AGE_S,
    HistogramCounts,
    compare_app_windows,
    resolve_windows,
)
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
    value: float | None = Field(description="The single value reported; null for a batch or a histogram.")
    unit: str
    accepted: bool = True
    kind: Literal["value", "samples", "histogram"] = "value"
    samples: int = Field(
        default=1,
        description="Observations stored: 1 for a value, the batch's size, or the histogram interval's count "
        "(0 for the first report of since_start counts, which only sets the starting counts).",
    )


class HistogramBucket(BaseModel):
    le: float | Literal["+Inf"] = Field(description="Upper bound, in unit, or '+Inf'.")
    count: int = Field(ge=0, le=2**53, description="Observations <= le.")


class WindowComparisonResult(BaseModel):
    """A metric compared between two windows: after - before, with its bootstrap interval."""

    metric: str
    unit: str
    verdict: Verdict = Field(
        description="better/worse: the whole interval of the change lies on that side (beyond min_effect); "
        "no evidence: it reaches no change, or either window had fewer than 3 samples."
    )
    statistic: Statistic
    lower_is_better: bool
    before: float | None = Field(description="The statistic over the before window (null: no sample).")
    after: float | None = Field(description="The statistic over the after window (null: no sample).")
    effect: float | None = Field(description="after - before, in unit (negative: lower after).")
    low: float | None = Field(description="Lower end of the effect's interval (null: too few samples).")
    high: float | None = Field(description="Upper end of the effect's interval (null: too few samples).")
    relative: float | None = Field(description="effect / before (null when before is 0 or missing).")
    n_before: int
    n_after: int
    level: float
    min_effect: float
    reason: str
    before_ago_s: list[float] = Field(description="The before window measured: [start, end] seconds ago.")
    after_ago_s: list[float] = Field(description="The after window measured: [start, end] seconds ago.")
    txid: str | None = None


def _finite_or_none(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


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
        unit: Annotated[str, Field(description="e.g. ms, rps, percent.", max_length=32)],
        value: Annotated[float | None, Field(description="One measured value, in unit.")] = None,
        values: Annotated[
            list[float] | None,
            Field(
                max_length=MAX_BATCH,
                description=f"A batch of samples (e.g. per-request latencies), at most {MAX_BATCH}.",
            ),
        ] = None,
        ages_s: Annotated[
            list[float] | None,
            Field(
                max_length=MAX_BATCH,
                description=f"With values: each sample's age in seconds before now (0..{MAX_SAMPLE_AGE_S:g}); "
                "omitted: all now.",
            ),
        ] = None,
        histogram: Annotated[
            list[HistogramBucket] | None,
            Field(
                max_length=MAX_BUCKETS,
                description="Prometheus-style cumulative buckets [{le, count}] (count = observations <= le).",
            ),
        ] = None,
        histogram_counts: Annotated[
            HistogramCounts,
            Field(
                description="since_start: exporter counters (a report stores the change since the last one; "
                "the first only sets the start; a drop is a restart). this_interval: this interval's counts."
            ),
        ] = "since_start",
    ) -> Annotated[CallToolResult, MetricAck]:
        """Feed an application metric (latency, throughput) that you measured: exactly one of `value` (one
        number), `values` (a batch of samples, optionally with ages_s) or `histogram` (cumulative buckets).
        It appears in read_telemetry's `app` section (last, mean, p95 over the window), so the loop can
        optimise what the user cares about; batches and histograms give compare_windows the samples it needs
        to decide keep or revert."""
        given = [k for k, v in (("value", value), ("values", values), ("histogram", histogram)) if v is not None]
        if len(given) != 1:  # none: value is missing (or null, as a client sends NaN), as before batches existed
            raise InvalidArgumentsError(
                "give exactly one of value, values or histogram", tool="report_app_metric", arguments=given or ["value"]
            )
        if ages_s is not None and values is None:
            raise InvalidArgumentsError("ages_s goes with values", tool="report_app_metric", arguments=["ages_s"])
        app = service.telemetry.app
        if values is not None:
            n = app.report_samples(name, values, unit, ages_s)
            return ok(MetricAck(name=name, value=None, unit=unit, kind="samples", samples=n))
        if histogram is not None:
            buckets = [(math.inf if b.le == "+Inf" else b.le, b.count) for b in histogram]
            n = app.report_histogram(name, buckets, unit, histogram_counts)
            return ok(MetricAck(name=name, value=None, unit=unit, kind="histogram", samples=n))
        assert value is not None
        service.telemetry.report_app_metric(name, value, unit)
        return ok(MetricAck(name=name, value=value, unit=unit))

    @mcp.tool(title="Compare an app metric before and after a change", annotations=READ_ONLY)
    @domain_errors
    def compare_windows(
        metric: Annotated[str, Field(description="An app metric name (report_app_metric or scraped).", max_length=128)],
        txid: Annotated[
            str | None,
            Field(
                description="Compare the window since this transaction's apply (to its revert, or now) with as "
                "long a window just before it. Or give before and after.",
                max_length=64,
            ),
        ] = None,
        before: Annotated[
            list[float] | None,
            Field(
                min_length=2,
                max_length=2,
                description="[start, end] in seconds ago, e.g. [120, 60]: from 2 to 1 minute ago.",
            ),
        ] = None,
        after: Annotated[
            list[float] | None,
            Field(
                min_length=2, max_length=2, description="[start, end] in seconds ago, e.g. [60, 0]; after before ends."
            ),
        ] = None,
        window_s: Annotated[
            float | None,
            Field(gt=0, le=MAX_SAMPLE_AGE_S, description="With txid: each window's length (default: since apply)."),
        ] = None,
        lower_is_better: Annotated[bool, Field(description="true for latency, false for throughput.")] = True,
        statistic: Annotated[
            Statistic, Field(description="What to compare: median, mean, p90, p95 or p99.")
        ] = "median",
        min_effect: Annotated[
            float, Field(ge=0, le=MAX_APP_VALUE, description="Smallest change (in unit) worth keeping; 0: any.")
        ] = 0.0,
        level: Annotated[float, Field(ge=0.5, le=0.999, description="Confidence level of the interval.")] = 0.95,
    ) -> Annotated[CallToolResult, WindowComparisonResult]:
        """Better, worse or no evidence: an app metric's samples after a change against before it, with the
        effect (after - before, in the metric's unit) and its bootstrap interval. Use it after apply and before
        commit, with the txid: commit only on "better", revert on "worse"; on "no evidence" measure a longer
        window once (more samples) or revert. Feed samples first (report_app_metric with values or a
        histogram, or one value per second): a window with fewer than 3 samples is "no evidence". Read-only."""
        applied = service.applied_ago_s(txid) if txid is not None else None
        windows = resolve_windows(before, after, applied, window_s)
        found = compare_app_windows(
            service.telemetry.app, metric, *windows,
            lower_is_better=lower_is_better, statistic=statistic, level=level, min_effect=min_effect,
        )  # fmt: skip
        c = found.comparison
        return ok(
            WindowComparisonResult(
                metric=metric, unit=found.unit, verdict=c.verdict, statistic=c.statistic,
                lower_is_better=c.lower_is_better, before=_finite_or_none(c.before), after=_finite_or_none(c.after),
                effect=_finite_or_none(c.effect), low=_finite_or_none(c.low), high=_finite_or_none(c.high),
                relative=_finite_or_none(c.relative), n_before=c.n_before, n_after=c.n_after, level=c.level,
                min_effect=c.min_effect, reason=c.reason, before_ago_s=list(found.before_ago_s),
                after_ago_s=list(found.after_ago_s), txid=txid,
            )
        )  # fmt: skip

    _ = (read_telemetry, report_app_metric, compare_windows)
