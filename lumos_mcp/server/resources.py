"""Resources (the catalog, the policy, the audit tail) and the ``tune-latency`` prompt."""

from __future__ import annotations

import orjson
from mcp.server.mcpserver import MCPServer

from lumos_mcp.audit import tail
from lumos_mcp.server.common import INSTRUCTIONS
from lumos_mcp.service import Service


def register(mcp: MCPServer[Service], service: Service) -> None:
    @mcp.resource("lumos://catalog", mime_type="application/json", description="Every knob the catalog knows.")
    def catalog() -> str:
        return orjson.dumps(
            [
                {
                    "id": s.id,
                    "group": s.group,
                    "kind": s.kind,
                    "unit": s.unit,
                    "min": s.min,
                    "max": s.max,
                    "description": s.description,
                    "note": s.note,
                }
                for s in service.catalog
            ]
        ).decode()

    @mcp.resource("lumos://policy", mime_type="application/json", description="The active policy.")
    def policy() -> str:
        return orjson.dumps(service.policy.summary()).decode()

    @mcp.resource(
        "lumos://policy/guards",
        mime_type="application/json",
        description="The policy's guards: the metric rules that revert a change at once when they breach, "
        "its probation after commit, and how baselines are taken. Per-change guards may only tighten these.",
    )
    def policy_guards() -> str:
        return orjson.dumps(service.policy.guards_summary()).decode()

    @mcp.resource("lumos://audit/tail", mime_type="application/json", description="The last 50 audit records.")
    def audit_tail() -> str:
        return orjson.dumps(tail(service.audit.path, 50)).decode()

    @mcp.prompt(
        name="tune-latency",
        title="Tune this host for tail latency",
        description="Start a tuning session for tail latency: the loop (observe, stage, approve, apply, "
        "measure, commit or revert), the rules of thumb, and your goal.",
    )
    def tune_latency(goal: str = "lower p99 latency of the main service without starving batch jobs") -> str:
        return (
            f"You are tuning a live Linux host through lumos-mcp. Goal: {goal}.\n\n{INSTRUCTIONS}\n\n"
            "Rules of thumb: prefer reversible, small steps (the policy caps step size); change one or two "
            "knobs at a time and measure a full window before deciding; weights (cgroup cpu_weight/cpu_shares, "
            "cpu_idle for batch groups) help latency without throttling; CPU quotas (cpu_max) cut throughput and "
            "often hurt neighbours' latency; on EEVDF kernels (6.6+) the CFS granularity knobs are gone. "
            "Commit only what measurably helped; revert anything else. Never try to bypass a denial. "
            "Decide with evidence: report samples of your objective (report_app_metric with values=[...] per "
            "request, a Prometheus histogram, or one value a second) before and after apply, then call "
            "compare_windows(metric, txid=..., lower_is_better=...) before commit. Commit only on verdict "
            '"better"; revert on "worse"; on "no evidence" measure once more over a longer window (window_s, '
            'or wait and call again) and then commit only on "better", else revert. '
            "Guard every change on your objective: report it (report_app_metric, e.g. p99_ms) and stage with "
            'guards=[{"metric": "app.p99_ms.last", "ratio": 1.25, "hold_samples": 2}] so the server '
            "reverts a change that hurts within seconds, even while you think; the policy's own guards are at "
            "lumos://policy/guards. A txid answered with reverted_by='guard' was reverted for you: read its "
            "evidence and try something else."
        )

    _ = (catalog, policy, policy_guards, audit_tail, tune_latency)
