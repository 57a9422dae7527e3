"""``build_server(service)``: the MCP tools, resources and prompts. Each tool is a few lines
over the service; domain errors come back as ``is_error`` results carrying a code and fields.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, ParamSpec, cast

import anyio
import orjson
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
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.types import CallToolResult, InputRequiredResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field, ValidationError

from lumos_mcp import __version__
from lumos_mcp.api import (
    ApprovalResult,
    Denial,
    DiffEntry,
    PolicyRuleInfo,
    StageResult,
    StatusResult,
    Tunable,
    TunableList,
    TxResult,
    TxSummary,
)
from lumos_mcp.errors import InvalidArgumentsError, LumosError, UnknownToolError
from lumos_mcp.service import Service, restored_data
from lumos_mcp.txn import Transaction, TxState

P = ParamSpec("P")

INSTRUCTIONS = """\
lumos-mcp tunes this Linux host's kernel safely. The loop:
1. read_telemetry and list_tunables: see the workload and which knobs exist here, with the policy's bounds.
2. stage_sched_params({knob: value}): validates without writing; returns the diff, the verdict and a txid.
3. request_approval(txid) if the stage result says approval_required.
4. apply(txid): writes through a journal and arms an auto-revert deadline.
5. Measure (read_telemetry), then commit(txid) to keep or revert(txid) to undo. Without a commit before the
   deadline the server reverts by itself. Errors carry a code and fields: act on them."""

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
STAGING = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
WRITING = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False)


def ok(model: BaseModel) -> CallToolResult:
    data = model.model_dump(mode="json")
    return CallToolResult(content=[TextContent(type="text", text=orjson.dumps(data).decode())], structured_content=data)


def failed(error: LumosError) -> CallToolResult:
    data = {"error": {"code": error.code, "message": str(error), "fields": _json_safe(error.fields)}}
    return CallToolResult(
        content=[TextContent(type="text", text=orjson.dumps(data).decode())], structured_content=data, is_error=True
    )


def _json_safe(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value, default=repr))


def domain_errors(fn: Callable[P, Any]) -> Callable[P, Any]:
    """Turn the domain's errors into ``is_error`` results the model can act on."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            try:
                return await fn(*args, **kwargs)
            except LumosError as e:
                return failed(e)

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        try:
            return fn(*args, **kwargs)
        except LumosError as e:
            return failed(e)

    return wrapper


# --------------------------------------------------------------------------- approval resolver
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


def _service(ctx: Context) -> Service:
    return cast(Service, ctx.request_context.lifespan_context)


async def ask_human(txid: str, ctx: Context) -> Elicit[ApprovalAnswer] | NoElicitation:
    """Resolver: deterministic question, no side effects (it may run more than once)."""
    if not _client_can_elicit(ctx):
        return NoElicitation()
    service = _service(ctx)
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


# --------------------------------------------------------------------------- helpers
def _summary(info: dict[str, Any]) -> TxSummary:
    return TxSummary(
        txid=info["txid"],
        state=info["state"],
        speculative=info["speculative"],
        changes=[DiffEntry(**c) for c in info["changes"]],
        digest=info["digest"],
        deadline_in_s=info["deadline_in_s"],
        outcome=info["outcome"],
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


class LumosServer(MCPServer[Service]):
    """``MCPServer`` whose argument errors are typed like every other error a tool returns.

    The SDK answers arguments that fail the input schema with a bare text ("Error executing
    tool ...: 1 validation error ..."); a caller cannot act on that by code, so they come back
    as ``invalid_arguments`` naming the fields (not the values, which are the caller's data).
    """

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Service, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as e:
            if isinstance(e, UnexpectedToolError):
                raise
            if isinstance(e.__cause__, ValidationError):
                problems = e.__cause__.errors()
                fields = sorted({".".join(str(p) for p in err["loc"]) for err in problems})
                reasons = sorted({str(err["msg"]) for err in problems})
                return failed(InvalidArgumentsError("; ".join(reasons)[:500], tool=name, arguments=fields[:50]))
            if self._tool_manager.get_tool(name) is None:
                return failed(UnknownToolError(tool=name))
            raise


def build_server(service: Service, *, token_verifier: Any = None, auth: Any = None) -> MCPServer[Service]:
    """The MCP server over ``service`` (already started: locked and recovered)."""

    @asynccontextmanager
    async def lifespan(server: MCPServer[Service]) -> AsyncIterator[Service]:
        async with service.telemetry.running(), anyio.create_task_group() as tg:
            tg.start_soon(service.run_deadlines)
            try:
                yield service
            finally:
                tg.cancel_scope.cancel()

    kwargs: dict[str, Any] = {}
    if token_verifier is not None:
        kwargs.update(token_verifier=token_verifier, auth=auth)
    mcp: MCPServer[Service] = LumosServer(
        "lumos-mcp", version=__version__, instructions=INSTRUCTIONS, lifespan=lifespan, **kwargs
    )

    @mcp.tool(title="List tunable knobs", annotations=READ_ONLY)
    @domain_errors
    def list_tunables(
        group: Annotated[
            Literal["sched", "vm", "net", "block", "cgroup"] | None, Field(description="Only this group of knobs.")
        ] = None,
        only_allowed: Annotated[bool, Field(description="Only knobs the policy lets change.")] = False,
    ) -> Annotated[CallToolResult, TunableList]:
        """List the knobs that exist on THIS kernel with their current values, units, hard range,
        state (available, locked, not_on_this_kernel) and the active policy's bounds and approval rule.
        Use the ids with stage_sched_params. Knobs the policy does not list cannot change (default-deny)."""
        items = []
        for st in service.tunables(group):
            rule = service.policy_rule(st.ref.id)
            if only_allowed and not rule:
                continue
            spec = st.ref.spec
            items.append(
                Tunable(
                    id=st.ref.id,
                    group=spec.group,
                    kind=spec.kind,
                    unit=spec.unit,
                    state=st.state,
                    value=st.value,
                    hard_min=spec.min,
                    hard_max=spec.max,
                    options=list(st.options),
                    policy=PolicyRuleInfo(allowed=bool(rule), **(rule or {})),
                    description=spec.description,
                    detail=st.detail,
                )
            )
        return ok(
            TunableList(
                mode=service.mode, policy=service.policy.name, kernel=service.host.kernel_release, tunables=items
            )
        )

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
    ) -> Annotated[CallToolResult, StageResult]:
        """Validate a proposed change WITHOUT writing anything: types, units, hard ranges, the policy's bounds,
        step limits, cooldowns and cross-field rules. Returns the exact diff, the verdict (every denial names
        its rule, knob, value and limit), whether approval is needed, and a txid. Next: request_approval(txid)
        if approval_required, else apply(txid)."""
        staged = service.stage(changes, confirm_within_s=confirm_within_s)
        v = staged.verdict
        if not v.allowed:
            nxt = "Denied: change the values to satisfy the denials and stage again."
        elif v.approval_required:
            nxt = f"Call request_approval(txid='{staged.tx.id}'), then apply."
        else:
            nxt = f"Call apply(txid='{staged.tx.id}')."
        return ok(
            StageResult(
                txid=staged.tx.id,
                digest=staged.tx.digest,
                diff=[DiffEntry(knob=c.knob, before=c.before, after=c.after, unit=c.unit) for c in staged.tx.changes],
                allowed=v.allowed,
                denials=[
                    Denial(
                        rule=d.rule,
                        knob=d.knob,
                        value=_json_safe(d.value),
                        limit=_json_safe(d.limit),
                        message=d.message,
                    )
                    for d in v.denials
                ],
                approval_required=v.approval_required,
                approval_reasons=list(v.approval_reasons),
                confirm_within_s=staged.confirm_within_s,
                next=nxt,
            )
        )

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
        return ok(
            _tx_result(
                service,
                tx,
                f"Measure, then commit('{txid}') or revert('{txid}') within "
                f"{(tx.deadline or 0) - service.clock():.0f} s.",
            )
        )

    @mcp.tool(title="Commit an applied change", annotations=WRITING)
    @domain_errors
    def commit(
        txid: Annotated[str, Field(description="An applied txid.", max_length=64)],
    ) -> Annotated[CallToolResult, TxResult]:
        """Keep an applied change: disarms its auto-revert deadline. Refuses (external_change) if a knob no
        longer holds what was written. Next: keep watching read_telemetry."""
        return ok(_tx_result(service, service.commit(txid), "Committed. Keep watching read_telemetry."))

    @mcp.tool(title="Revert an applied change", annotations=WRITING)
    @domain_errors
    def revert(
        txid: Annotated[str, Field(description="An applied txid.", max_length=64)],
        force: Annotated[bool, Field(description="Also overwrite knobs someone else changed since apply.")] = False,
    ) -> Annotated[CallToolResult, TxResult]:
        """Restore the original values of an applied change, in reverse order, and verify them. Refuses
        (external_change) if someone else changed a knob since apply, unless force."""
        tx, results = service.revert(txid, force=force)
        return ok(_tx_result(service, tx, "Reverted.", restored=restored_data(results)))

    @mcp.tool(title="Server status", annotations=READ_ONLY)
    @domain_errors
    def get_status() -> Annotated[CallToolResult, StatusResult]:
        """The mode (observe, sandbox, live), the policy, armed transactions with seconds left before
        auto-revert, staged and recent transactions, and pending approvals."""
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
            )
        )

    register_telemetry(mcp, service)
    register_resources(mcp, service)
    register_speculator(mcp, service)
    register_ranker(mcp, service)
    return mcp


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


def register_telemetry(mcp: MCPServer[Service], service: Service) -> None:
    """The telemetry tools (see lumos_mcp.telemetry)."""
    from lumos_mcp.server_telemetry import register

    register(mcp, service)


def register_ranker(mcp: MCPServer[Service], service: Service) -> None:
    """The zero-mod ranker's tool (see lumos_mcp.ranker)."""
    from lumos_mcp.server_ranker import register

    register(mcp, service)


def register_speculator(mcp: MCPServer[Service], service: Service) -> None:
    """The speculator tools (see lumos_mcp.speculator)."""
    from lumos_mcp.server_speculator import register

    register(mcp, service)


def register_resources(mcp: MCPServer[Service], service: Service) -> None:
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

    @mcp.resource("lumos://audit/tail", mime_type="application/json", description="The last 50 audit records.")
    def audit_tail() -> str:
        from lumos_mcp.audit import tail

        return orjson.dumps(tail(service.audit.path, 50)).decode()

    @mcp.prompt(name="tune-latency", title="Tune this host for tail latency")
    def tune_latency(goal: str = "lower p99 latency of the main service without starving batch jobs") -> str:
        return (
            f"You are tuning a live Linux host through lumos-mcp. Goal: {goal}.\n\n{INSTRUCTIONS}\n\n"
            "Rules of thumb: prefer reversible, small steps (the policy caps step size); change one or two "
            "knobs at a time and measure a full window before deciding; weights (cgroup cpu_weight/cpu_shares, "
            "cpu_idle for batch groups) help latency without throttling; CPU quotas (cpu_max) cut throughput and "
            "often hurt neighbours' latency; on EEVDF kernels (6.6+) the CFS granularity knobs are gone. "
            "Commit only what measurably helped; revert anything else. Never try to bypass a denial."
        )

    _ = (catalog, policy, audit_tail, tune_latency)
