"""The approval tool: ask the user by elicitation when the client can, else an operator."""

from __future__ import annotations

from typing import Annotated

import anyio
from mcp.server.mcpserver import (
    AcceptedElicitation,
    CancelledElicitation,
    Context,
    DeclinedElicitation,
    Elicit,
    ElicitationResult,
    MCPServer,
    Resolve,
)
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from lumos_mcp.api import ApprovalResult
from lumos_mcp.errors import LumosError
from lumos_mcp.server.common import STAGING, domain_errors, ok, service_of
from lumos_mcp.service import Service


class ApprovalAnswer(BaseModel):
    approve: bool = Field(description="Apply this change to the host?")
    note: str = Field("", description="Optional note for the audit log")


class NoElicitation(BaseModel):
    """The client cannot be asked: the approval goes to an operator instead."""

    reason: str = "client did not declare the elicitation capability"


def _client_can_elicit(ctx: Context) -> bool:
    caps = ctx.client_capabilities
    el = caps.elicitation if caps is not None else None
    return el is not None and (el.form is not None or el.url is None)


async def ask_human(txid: str, ctx: Context) -> Elicit[ApprovalAnswer] | NoElicitation:
    """Resolver: deterministic question, no side effects (it may run more than once)."""
    if not _client_can_elicit(ctx):
        return NoElicitation()
    service = service_of(ctx)
    try:
        staged = service.staged(txid)
    except LumosError:
        return NoElicitation(reason="unknown transaction")
    if not staged.verdict.approval_required or not staged.verdict.allowed:
        return NoElicitation(reason="no approval needed")
    return Elicit(
        f"lumos-mcp asks to change this host: {service.describe(staged)}. "
        f"It auto-reverts unless committed within {staged.confirm_within_s:.0f} s. Approve?",
        ApprovalAnswer,
    )


def register(mcp: MCPServer[Service], service: Service) -> None:
    @mcp.tool(title="Ask a human to approve a staged change", annotations=STAGING)
    @domain_errors
    async def request_approval(
        txid: Annotated[str, Field(description="The txid from stage_sched_params.", max_length=64)],
        approval: Annotated[ElicitationResult[ApprovalAnswer], Resolve(ask_human)],
        ctx: Context,
        wait_s: Annotated[
            float,
            Field(
                ge=0,
                le=600,
                description=("When the client cannot ask the user, wait up to this long for an operator's decision."),
            ),
        ] = 0,
    ) -> Annotated[CallToolResult, ApprovalResult]:
        """Get approval for a staged change. If your client supports elicitation the user is asked directly;
        otherwise a pending approval is opened for an operator (`lumos-mcp approvals approve ID` in a terminal)
        and you may wait for it (wait_s) or call again later. Approvals bind to the change's digest, are
        single-use and expire. Next: apply(txid) once granted."""
        staged = await anyio.to_thread.run_sync(service.staged, txid)
        if staged.verdict.allowed and not staged.verdict.approval_required:
            return ok(ApprovalResult(txid=txid, status="not_required", via="policy", next=f"Call apply('{txid}')."))
        match approval:
            case AcceptedElicitation(data=NoElicitation()):
                return ok(await _operator_approval(service, txid, wait_s, ctx))
            case AcceptedElicitation(data=ApprovalAnswer(approve=True, note=note)):
                granted = await anyio.to_thread.run_sync(service.record_elicitation, txid, True, note)
                return ok(
                    ApprovalResult(
                        txid=txid,
                        status="granted",
                        approval_id=granted.id,
                        via="elicitation",
                        expires_in_s=round(granted.expires_at - service.clock(), 1),
                        next=f"Call apply('{txid}').",
                    )
                )
            case AcceptedElicitation() | DeclinedElicitation() | CancelledElicitation():
                denied = await anyio.to_thread.run_sync(service.record_elicitation, txid, False, "")
                return ok(
                    ApprovalResult(
                        txid=txid,
                        status="denied",
                        approval_id=denied.id,
                        via="elicitation",
                        next="The user said no. Do not apply; propose something else.",
                    )
                )
        raise AssertionError("unreachable: every elicitation outcome is matched")

    _ = request_approval


async def _operator_approval(service: Service, txid: str, wait_s: float, ctx: Context) -> ApprovalResult:
    approval = await anyio.to_thread.run_sync(service.request_approval, txid)
    with anyio.move_on_after(wait_s):
        waited = 0.0
        while approval.status == "pending" and wait_s > 0:
            await anyio.sleep(0.2)
            waited += 0.2
            await ctx.report_progress(min(waited, wait_s), wait_s, "waiting for an operator's decision")
            approval = await anyio.to_thread.run_sync(service.approvals.get, approval.id)
    now = service.clock()
    status = approval.status
    if status == "pending" and approval.expires_at <= now:
        status = "expired"
    hint = {
        "granted": f"Call apply('{txid}').",
        "pending": f"An operator must run: lumos-mcp approvals approve {approval.id}. Then call apply('{txid}').",
        "denied": "The operator said no. Do not apply; propose something else.",
        "expired": "The approval expired. Stage again.",
        "used": "This approval was already used. Stage again for a new change.",
    }[status]
    return ApprovalResult(
        txid=txid,
        status=status,
        approval_id=approval.id,
        via="operator",
        expires_in_s=round(approval.expires_at - now, 1),
        next=hint,
    )
