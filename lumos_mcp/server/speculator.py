"""Speculator tools: start, stop and watch the fast controller (see lumos_mcp.speculator)."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from lumos_mcp.server.common import READ_ONLY, WRITING, domain_errors, ok
from lumos_mcp.service import Service
from lumos_mcp.speculator import Speculator, start_speculator, stop_speculator


class SpeculatorStatus(BaseModel):
    running: bool
    interval_s: float | None = None
    knobs: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per knob: envelope bounds, step, deadline, the move it holds (txid)."
    )
    moves: int = 0
    rearms: int = 0
    expired: int = 0
    superseded: int = Field(default=0, description="moves taken over by the agent's write (last write wins)")
    refused: int = 0
    last_move: dict[str, Any] | None = None
    reacting_to: dict[str, Any] | None = Field(default=None, description="the signal it last read: name, value, target")
    why: str = ""
    reverted: list[str] = Field(default_factory=list, description="txids reverted by speculator_stop")


def _status(service: Service, reverted: list[str] | None = None) -> SpeculatorStatus:
    spec = service.speculator
    if not isinstance(spec, Speculator):
        return SpeculatorStatus(running=False, reverted=reverted or [])
    st = spec.status()
    st.pop("band", None)
    st.pop("recent_errors", None)
    return SpeculatorStatus.model_validate({**st, "reverted": reverted or []})


def register(mcp: MCPServer[Service], service: Service) -> None:
    @mcp.tool(title="Start the speculator", annotations=WRITING)
    @domain_errors
    async def speculator_start(
        knobs: Annotated[
            list[str],
            Field(min_length=1, max_length=8, description="Knob ids inside the policy's speculation envelope."),
        ],
        metric: Annotated[
            str,
            Field(
                description="A cost to lower, as named in read_telemetry trends, e.g. 'app.p95_ms' (an app "
                "metric you report with report_app_metric) or 'psi.cpu.some_pct'.",
                max_length=128,
            ),
        ],
        target: Annotated[float, Field(gt=0, description="The metric's good value, in its unit.")],
        bounds: Annotated[
            dict[str, tuple[int, int]] | None,
            Field(description="Optional tighter [min, max] per knob, inside the envelope."),
        ] = None,
        interval_s: Annotated[float, Field(ge=0.2, le=60, description="Seconds between decisions.")] = 1.0,
    ) -> Annotated[CallToolResult, SpeculatorStatus]:
        """Start a fast controller that, every interval_s, moves the given knobs by small steps inside the
        policy's speculation envelope when the metric is above target (+10%), until it is back at target.
        Each move is an auto-reverting transaction (speculative, no approval); it is re-armed while it keeps
        helping. Your own apply on a knob takes it over (last write wins) and the speculator resumes from your
        value; commit to keep a value. Next: speculator_status, speculator_stop."""
        start_speculator(service, knobs, metric, target, bounds, interval_s)
        return ok(_status(service))

    @mcp.tool(title="Stop the speculator", annotations=WRITING)
    @domain_errors
    def speculator_stop(
        revert: Annotated[bool, Field(description="Undo the moves it still holds now (else they expire).")] = True,
    ) -> Annotated[CallToolResult, SpeculatorStatus]:
        """Stop the speculator. Moves it still holds are reverted now (or left to their short deadline).
        What the agent applied or committed is untouched."""
        status = _status(service, stop_speculator(service, revert))
        status.running = False
        return ok(status)

    @mcp.tool(title="Speculator status", annotations=READ_ONLY)
    @domain_errors
    def speculator_status() -> Annotated[CallToolResult, SpeculatorStatus]:
        """Whether the speculator runs; moves made, re-armed, expired and superseded by your writes; its
        last move and why; the signal it is reacting to."""
        return ok(_status(service))

    _ = (speculator_start, speculator_stop, speculator_status)
