"""Re-apply the committed state through the ordinary path: stage (the policy judges it), approval
where the policy asks for one, the journaled apply, commit, and the audit log of each step.

A knob the policy no longer allows is reported, not written; so is one this kernel no longer
takes. Knobs already at their committed value are left alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from lumos_mcp.errors import KnobError, LumosError, PolicyDeniedError
from lumos_mcp.knobs.spec import Value
from lumos_mcp.service import Service

Outcome = Literal["in_place", "reapplied", "refused", "unavailable", "needs_approval", "failed"]


@dataclass(frozen=True)
class KnobOutcome:
    knob: str
    outcome: Outcome
    value: Value
    detail: str = ""


@dataclass
class ReapplyReport:
    knobs: list[KnobOutcome] = field(default_factory=list)
    tx: str | None = None
    approval: str | None = None

    @property
    def complete(self) -> bool:
        """Every committed knob holds its committed value now."""
        return all(k.outcome in ("in_place", "reapplied") for k in self.knobs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "complete": self.complete,
            "tx": self.tx,
            "approval": self.approval,
            "knobs": [{"knob": k.knob, "outcome": k.outcome, "value": k.value, "detail": k.detail} for k in self.knobs],
        }


def reapply(
    service: Service,
    *,
    actor: str = "reapply",
    approval_wait_s: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> ReapplyReport:
    """Put every committed knob that no longer holds its committed value back, as one change.

    Where the policy asks for approval, an approval is requested and waited for up to
    ``approval_wait_s`` (an operator grants it with ``lumos-mcp approvals approve``); without it
    nothing is written and the knobs are reported ``needs_approval``.

    Raises:
        JournalError, AuditError: the committed state cannot be read.
        ModeError: observe mode.
    """
    report = ReapplyReport()
    todo: dict[str, Value] = {}
    for k in service.committed():
        try:
            live = service.backend.read(k.knob).value
        except KnobError as e:
            report.knobs.append(KnobOutcome(k.knob, "unavailable", k.value, f"{e.code}: {e}"))
            continue
        if live == k.value:
            report.knobs.append(KnobOutcome(k.knob, "in_place", k.value))
        else:
            todo[k.knob] = k.value
    while todo:
        try:
            staged = service.stage(todo, actor=actor)
        except KnobError as e:  # a value this kernel no longer takes: report that knob, go on with the rest
            knob = str(e.fields.get("knob", ""))
            if knob not in todo:
                raise
            report.knobs.append(KnobOutcome(knob, "unavailable", todo.pop(knob), f"{e.code}: {e}"))
            continue
        verdict = staged.verdict
        if verdict.allowed:
            break
        named = {d.knob for d in verdict.denials if d.knob in todo}
        for knob in named or set(todo):  # a denial of the whole change refuses every knob
            why = "; ".join(d.message for d in verdict.denials if d.knob in (knob, None))
            report.knobs.append(KnobOutcome(knob, "refused", todo.pop(knob), why))
    if not todo:
        return report
    txid = staged.tx.id
    report.tx = txid
    approval_id = None
    if staged.verdict.approval_required:
        approval = service.request_approval(txid, requested_by=actor)
        report.approval = approval.id
        waited = 0.0
        while approval.status == "pending" and waited < approval_wait_s:
            sleep(min(0.5, approval_wait_s - waited))
            waited += 0.5
            approval = service.approvals.get(approval.id)
        if approval.status != "granted":
            why = f"approval {approval.id} is {approval.status}: lumos-mcp approvals approve {approval.id}"
            report.knobs += [KnobOutcome(k, "needs_approval", v, why) for k, v in todo.items()]
            return report
        approval_id = approval.id
    try:
        service.apply(txid, approval_id, actor=actor)
    except LumosError as e:
        report.knobs += [KnobOutcome(k, "failed", v, f"{e.code}: {e}") for k, v in todo.items()]
        return report
    try:
        service.commit(txid, actor=actor)
    except PolicyDeniedError as e:  # commits_per_hour: undo now rather than leave it armed
        service.revert(txid, force=True, actor=actor)
        report.knobs += [KnobOutcome(k, "refused", v, f"{e.code}: {e}") for k, v in todo.items()]
        return report
    except LumosError as e:  # left armed: its deadline (or the server's stop) reverts it
        report.knobs += [KnobOutcome(k, "failed", v, f"{e.code}: {e}") for k, v in todo.items()]
        return report
    report.knobs += [KnobOutcome(k, "reapplied", v) for k, v in todo.items()]
    report.knobs.sort(key=lambda k: k.knob)
    return report
