"""The change tools: stage, apply, commit, revert, and the server's status."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult
from pydantic import Field

from lumos_mcp.api import Denial, DiffEntry, GuardInput, StageResult, StatusResult, TxResult, TxSummary
from lumos_mcp.bounded import bounded
from lumos_mcp.server.common import READ_ONLY, STAGING, WRITING, domain_errors, ok
from lumos_mcp.service import MAX_RATIONALE, Service, StagedChange, restored_data
from lumos_mcp.txn import Transaction, TxState


def _summary(info: dict[str, Any]) -> TxSummary:
    return TxSummary(
        txid=info["txid"],
        state=info["state"],
        speculative=info["speculative"],
        changes=[DiffEntry(**c) for c in info["changes"]],
        digest=info["digest"],
        deadline_in_s=info["deadline_in_s"],
        outcome=info["outcome"],
        reverted_by=info["reverted_by"],
        guard=info["guard"],
        guards=info["guards"],
        probation_ends_in_s=info["probation_ends_in_s"],
    )


def _tx_result(
    service: Service, tx: Transaction, next_step: str, restored: list[dict[str, str]] | None = None
) -> TxResult:
    now = service.clock()
    return TxResult(
        txid=tx.id,
        state=tx.state.value,
        values={c.knob: c.after for c in tx.changes},
        deadline_in_s=round(tx.deadline - now, 3) if tx.deadline and tx.state is TxState.APPLIED else None,
        restored=restored or [],
        next=next_step,
    )


def _stage_result(staged: StagedChange) -> StageResult:
    v = staged.verdict
    if not v.allowed:
        nxt = "Denied: change the values to satisfy the denials and stage again."
    elif v.approval_required:
        nxt = f"Call request_approval(txid='{staged.tx.id}'), then apply."
    else:
        nxt = f"Call apply(txid='{staged.tx.id}')."
    return StageResult(
        txid=staged.tx.id,
        digest=staged.tx.digest,
        diff=[DiffEntry(knob=c.knob, before=c.before, after=c.after, unit=c.unit) for c in staged.tx.changes],
        allowed=v.allowed,
        denials=[
            Denial(rule=d.rule, knob=d.knob, value=bounded(d.value), limit=bounded(d.limit), message=d.message)
            for d in v.denials
        ],
        approval_required=v.approval_required,
        approval_reasons=list(v.approval_reasons),
        confirm_within_s=staged.confirm_within_s,
        guards=[g.text() for g in staged.guards],
        next=nxt,
    )


def register(mcp: MCPServer[Service], service: Service) -> None:
    @mcp.tool(title="Stage a knob change (no write)", annotations=STAGING)
    @domain_errors
    def stage_sched_params(
        changes: Annotated[
            dict[str, int | bool | str],
            Field(
                description='Knob id -> new value, e.g. {"cgroup.batch.cpu_weight": 20, "vm.swappiness": 10}. '
                "Ids come from list_tunables."
            ),
        ],
        confirm_within_s: Annotated[
            float | None,
            Field(
                gt=0, le=86400, description="Auto-revert deadline after apply, in seconds (policy default if omitted)."
            ),
        ] = None,
        guards: Annotated[
            list[GuardInput] | None,
            Field(
                max_length=16,
                description="Revert this change at once if a metric you care about gets worse, e.g. "
                '[{"metric": "app.p99_ms.last", "ratio": 1.25, "hold_samples": 2}] (p99 must stay within 1.25x '
                "its pre-apply median). Report the app metric first (report_app_metric). These add to the "
                "policy's guards (lumos://policy/guards) and may only tighten them.",
            ),
        ] = None,
        rationale: Annotated[
            str | None,
            Field(
                max_length=MAX_RATIONALE,
                description="Why you propose this change, in your own words (kept in the audit log for the operator).",
            ),
        ] = None,
    ) -> Annotated[CallToolResult, StageResult]:
        """Validate a proposed change WITHOUT writing anything: types, units, hard ranges, the policy's bounds,
        step limits, cooldowns, cross-field rules and the guards that will watch it (a guard on a metric with no
        value here is refused: guard_metric_missing; one looser than the policy's: guard_loosens). Returns the
        exact diff, the verdict (every denial names its rule, knob, value and limit), whether approval is
        needed, the guards, and a txid. Next: request_approval(txid) if approval_required, else apply(txid).
        Stage with a guard on your objective: the server then reverts a change that hurts it within seconds,
        without waiting for you."""
        wanted = [g.model_dump(exclude_none=True) for g in guards or ()]
        return ok(
            _stage_result(service.stage(changes, confirm_within_s=confirm_within_s, guards=wanted, rationale=rationale))
        )

    @mcp.tool(title="Apply a staged change (armed, auto-reverting)", annotations=WRITING)
    @domain_errors
    def apply(
        txid: Annotated[str, Field(description="The txid from stage_sched_params.", max_length=64)],
        approval_id: Annotated[
            str | None, Field(description="Approval to use (found by txid if omitted).", max_length=64)
        ] = None,
    ) -> Annotated[CallToolResult, TxResult]:
        """Write a staged change to the kernel: originals are journaled first, values are read back and
        verified, and an auto-revert deadline is armed. The policy is checked again now. Next: measure with
        read_telemetry, then commit(txid) to keep or revert(txid) to undo before deadline_in_s runs out."""
        tx = service.apply(txid, approval_id)
        left = (tx.deadline or 0) - service.clock()
        return ok(_tx_result(service, tx, f"Measure, then commit('{txid}') or revert('{txid}') within {left:.0f} s."))

    @mcp.tool(title="Commit an applied change", annotations=WRITING)
    @domain_errors
    def commit(
        txid: Annotated[str, Field(description="An applied txid.", max_length=64)],
    ) -> Annotated[CallToolResult, TxResult]:
        """Keep an applied change: disarms its auto-revert deadline. Refuses (external_change) if a knob no
        longer holds what was written; a change a guard already reverted answers invalid_state with
        reverted_by='guard' and the evidence. When the policy sets a guard probation, the change stays applied
        and watched for probation_s and is committed after it unless a guard breaches. Next: keep watching
        read_telemetry."""
        tx = service.commit(txid)
        if tx.state is TxState.APPLIED:
            return ok(_tx_result(service, tx, "On probation: committed when it ends unless a guard breaches."))
        return ok(_tx_result(service, tx, "Committed. Keep watching read_telemetry."))

    @mcp.tool(title="Revert an applied change", annotations=WRITING)
    @domain_errors
    def revert(
        txid: Annotated[str, Field(description="An applied txid.", max_length=64)],
        force: Annotated[bool, Field(description="Also overwrite knobs someone else changed since apply.")] = False,
    ) -> Annotated[CallToolResult, TxResult]:
        """Restore the original values of an applied change, in reverse order, and verify them. Refuses
        (external_change) if someone else changed a knob since apply, unless force; invalid_state with
        reverted_by='guard' and the evidence when a guard already reverted it."""
        tx, results = service.revert(txid, force=force)
        return ok(_tx_result(service, tx, "Reverted.", restored=restored_data(results)))

    @mcp.tool(title="Server status", annotations=READ_ONLY)
    @domain_errors
    def get_status() -> Annotated[CallToolResult, StatusResult]:
        """The mode (observe, sandbox, live), the policy, armed transactions with seconds left before
        auto-revert and the guards watching them, staged and recent transactions (reverted_by and, for a
        guard revert, its evidence), pending approvals, and any journal, audit or auto-revert problem the
        server is living with."""
        st = service.status()
        return ok(
            StatusResult(
                mode=st["mode"],
                policy=st["policy"],
                kernel=st["kernel"],
                state_dir=st["state_dir"],
                armed=[_summary(t) for t in st["armed"]],
                staged=[_summary(t) for t in st["staged"]],
                recent=[_summary(t) for t in st["recent"]],
                pending_approvals=st["pending_approvals"],
                journal_problem=st["journal_problem"],
                recording_problem=st["recording_problem"],
                deadline_loop_error=st["deadline_loop_error"],
                compaction_problem=st["compaction_problem"],
                drift=st["drift"],
            )
        )

    _ = (stage_sched_params, apply, commit, revert, get_status)
