"""Pydantic models at the MCP edge: tool inputs and structured outputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

if TYPE_CHECKING:
    from mcp.types import CallToolResult

KnobValue = int | bool | str


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable error code: act on this, not on the message.")
    message: str
    fields: dict[str, Any] = Field(default_factory=dict, description="The error's data (knob, value, limit, ...).")


class ErrorBody(BaseModel):
    """The JSON text of an ``is_error`` result: ``{"error": {"code", "message", "fields"}}``.

    Error results carry no ``structuredContent``: the TypeScript SDK client validates any
    structured content against the tool's output schema, error or not (see the README).
    """

    error: ErrorInfo


def tool_error(result: CallToolResult) -> ErrorInfo | None:
    """The typed error an ``is_error`` result carries in its text, or None when the result is
    not an error or its text is not ``{"error": {...}}`` (an untyped error)."""
    if not result.is_error:
        return None
    text = "".join(c.text for c in result.content if c.type == "text")
    try:
        return ErrorBody.model_validate_json(text).error
    except ValidationError:
        return None


class PolicyRuleInfo(BaseModel):
    allowed: bool = Field(description="False: the policy does not let this knob change (default-deny).")
    min: int | None = None
    max: int | None = None
    allow: list[str | bool] | None = Field(None, description="Values allowed for choice/bool knobs.")
    max_step_ratio: float | None = Field(None, description="Largest |after-before|/|before| per change.")
    approval: str | None = Field(None, description="always | never | above_step")
    approval_above_step_ratio: float | None = None
    cooldown_s: float | None = None


class Tunable(BaseModel):
    id: str = Field(description="Knob id to pass to stage_sched_params.")
    group: str
    kind: str = Field(description="int | bool | choice | cpulist | cpu_max")
    unit: str | None = None
    state: str = Field(description="available | locked | not_on_this_kernel | permission_denied | error")
    value: KnobValue | None = Field(None, description="Current value (canonical form).")
    hard_min: int | None = None
    hard_max: int | None = None
    options: list[str] = Field(default_factory=list, description="Choices this kernel offers (choice knobs).")
    policy: PolicyRuleInfo
    description: str
    detail: str = Field("", description="Why the knob is not available, when it is not.")


class TunableList(BaseModel):
    mode: str
    policy: str
    kernel: str
    tunables: list[Tunable]


class Denial(BaseModel):
    rule: str
    knob: str | None
    value: Any = None
    limit: Any = None
    message: str


class DiffEntry(BaseModel):
    knob: str
    before: KnobValue
    after: KnobValue
    unit: str | None = None


class GuardInput(BaseModel):
    """A guard on one change: the server reverts it at once when ``metric`` breaks the rule for
    ``hold_samples`` samples in a row. It may only tighten the policy's guards (see lumos://policy/guards);
    on a metric the policy guards, what it leaves unset (slack, hold) is the policy's."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(
        max_length=300,
        description="Dotted numeric path of the full telemetry signature, e.g. 'app.p99_ms.last' (an app metric "
        "you report), 'psi.cpu.some.avg10_pct', 'cgroups.web.throttled_pct', 'memory.available_mib'.",
    )
    op: Literal["<=", "<", ">=", ">"] = Field("<=", description="The metric must stay op the limit.")
    value: float | None = Field(None, description="Absolute limit in the metric's unit (or give ratio).")
    ratio: float | None = Field(
        None, gt=0, description="Relative limit: ratio x the metric's median just before apply (or give value)."
    )
    slack: float | None = Field(
        None, ge=0, description="Added to a relative limit (room when the baseline is near 0); default 0."
    )
    hold_samples: int | None = Field(
        None, ge=1, le=3600, description="Breaching samples in a row (1 Hz) that revert; default 3."
    )
    hold_s: float | None = Field(
        None, ge=0, description="And at least this many seconds from first to last of them; default 0."
    )


class StageResult(BaseModel):
    txid: str
    digest: str = Field(description="sha256 of the exact change; approvals bind to it.")
    diff: list[DiffEntry]
    allowed: bool = Field(description="False: the policy denies this change; see denials.")
    denials: list[Denial]
    approval_required: bool
    approval_reasons: list[str]
    confirm_within_s: float = Field(description="After apply, commit within this many seconds or it reverts.")
    guards: list[str] = Field(
        default_factory=list,
        description="The guards that will watch it once applied (the policy's, tightened by yours): a breach "
        "reverts it at once.",
    )
    next: str = Field(description="What to call next.")


class ApprovalResult(BaseModel):
    txid: str
    status: Literal["granted", "denied", "pending", "not_required", "expired", "used"]
    approval_id: str | None = None
    via: Literal["elicitation", "operator", "policy"] = "operator"
    expires_in_s: float | None = None
    next: str


class TxResult(BaseModel):
    txid: str
    state: str = Field(description="staged | applied | committed | reverted | failed")
    values: dict[str, KnobValue] = Field(description="Values the kernel holds for the transaction's knobs.")
    deadline_in_s: float | None = Field(None, description="Seconds left before the server reverts it by itself.")
    restored: list[dict[str, str]] = Field(
        default_factory=list, description="Per knob: restored, unchanged, external_change (left as found) or error."
    )
    next: str


class TxSummary(BaseModel):
    txid: str
    state: str
    speculative: bool
    changes: list[DiffEntry]
    digest: str
    deadline_in_s: float | None
    outcome: str
    reverted_by: str | None = Field(None, description="guard, deadline, requested, server_exit... (when reverted)")
    guard: dict[str, Any] | None = Field(
        None, description="When a guard reverted it: the guard, baseline, limit, breaching samples, reaction_s."
    )
    guards: list[str] = Field(default_factory=list, description="Guards watching it while armed.")
    probation_ends_in_s: float | None = Field(None, description="Commit requested: recorded after this probation.")


class StatusResult(BaseModel):
    mode: str
    policy: dict[str, str]
    kernel: str
    state_dir: str
    armed: list[TxSummary]
    staged: list[TxSummary]
    recent: list[TxSummary]
    pending_approvals: list[str]
    journal_problem: str | None = Field(description="Why new writes are refused, if they are (null: none).")
    recording_problem: dict[str, Any] | None = Field(
        None, description="Reverts done on the host that the journal or audit log has not recorded yet."
    )
    deadline_loop_error: str | None = Field(None, description="The last error the auto-revert loop survived.")
    compaction_problem: str | None = Field(None, description="Why the journal's last compaction failed.")
    drift: dict[str, Any] | None = Field(
        None,
        description="Committed knobs the host no longer runs: lost (back at its old value), changed (someone "
        "else wrote it), clash (a sysctl.d file or the TuneD profile sets another value at boot).",
    )
    extra: dict[str, Any] = Field(default_factory=dict)
