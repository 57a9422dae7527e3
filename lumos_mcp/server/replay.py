"""``replay_audit``: an agent looks back at what was done on this host, from the audit log alone."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from lumos_mcp.errors import InvalidArgumentsError
from lumos_mcp.replay import Segment, load, parse_time
from lumos_mcp.server.common import READ_ONLY, domain_errors, ok
from lumos_mcp.service import Service


class SegmentOut(BaseModel):
    value: int | bool | str | float | None = Field(description="the knob's value (null: unknown, changed outside)")
    since: float | None = Field(description="Unix s it began (null: before the log, as first seen)")
    until: float | None = Field(description="Unix s it ended (null: it still holds)")
    state: str = Field(description="original, armed, committed, reverted, auto_reverted or unknown")
    tx: str | None
    actor: str | None
    rationale: str | None
    reason: str | None = Field(description="why an auto-revert happened (deadline, server_exit, recovery...)")


class ReplayResult(BaseModel):
    verified: bool = Field(description="the log's hash chain verified")
    records: int = Field(description="records replayed (count)")
    mode: str | None
    knobs: dict[str, list[SegmentOut]] = Field(description="knob -> its last segments, oldest first")
    segments_cut: int = Field(description="older segments left out beyond max_segments per knob (count)")
    at: dict[str, SegmentOut] | None = Field(description="each knob's segment at the time asked for, if any")


def _out(seg: Segment) -> SegmentOut:
    value: Any = seg.value
    return SegmentOut(
        value=value if value is None or isinstance(value, bool | int | float | str) else str(value),
        since=seg.since,
        until=seg.until,
        state=seg.state,
        tx=seg.tx,
        actor=seg.actor,
        rationale=seg.rationale,
        reason=seg.reason,
    )


def register(mcp: MCPServer[Service], service: Service) -> None:
    @mcp.tool(title="Replay the audit log", annotations=READ_ONLY)
    @domain_errors
    def replay_audit(
        knob: Annotated[
            str | None, Field(description="Only this knob id (default: every knob).", max_length=200)
        ] = None,
        at: Annotated[
            str | None,
            Field(description="Also each knob's state at this time: Unix seconds or ISO 8601 (UTC).", max_length=64),
        ] = None,
        max_segments: Annotated[int, Field(ge=1, le=200, description="Latest segments kept per knob.")] = 20,
    ) -> Annotated[CallToolResult, ReplayResult]:
        """What lumos-mcp did on this host, rebuilt from the hash-chained audit log: each knob's values over
        time (from when to when, which transaction, actor and rationale set it, committed or reverted and
        why). Refuses (audit_chain_broken) a log whose chain does not verify. Read-only."""
        when = None
        if at is not None:
            try:
                when = parse_time(at)
            except ValueError:
                raise InvalidArgumentsError(
                    "at is neither Unix seconds nor ISO 8601", tool="replay_audit", arguments=["at"]
                ) from None
        result = load(service.audit.path, mode=service.mode)
        chosen = {k: v for k, v in result.timelines.items() if knob is None or k == knob}
        cut = sum(max(0, len(v) - max_segments) for v in chosen.values())
        return ok(
            ReplayResult(
                verified=result.verified,
                records=result.records,
                mode=result.mode,
                knobs={k: [_out(s) for s in v[-max_segments:]] for k, v in sorted(chosen.items())},
                segments_cut=cut,
                at=None
                if when is None
                else {k: _out(s) for k, s in sorted(result.at(when).items()) if knob is None or k == knob},
            )
        )

    _ = replay_audit
