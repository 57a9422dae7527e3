"""The inventory tool: which knobs exist on this kernel and what the policy allows."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Literal

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from lumos_mcp.api import PolicyRuleInfo, Tunable, TunableList
from lumos_mcp.server.common import READ_ONLY, domain_errors, ok
from lumos_mcp.service import Service


class OtherKnobs(BaseModel):
    """The knobs a compact list leaves out: they cannot change now, so they are counted, not described."""

    outside_policy: list[str] = Field(description="available here, but the policy does not let them change")
    unavailable: dict[str, int] = Field(description="state (locked, not_on_this_kernel, ...) -> knobs (count)")


class CompactTunableList(TunableList):
    others: OtherKnobs | None = Field(
        description="detail=false: what is left out of `tunables`; null with detail=true (everything is listed)"
    )


def tunable_list(service: Service, group: str | None, only_allowed: bool, detail: bool = True) -> CompactTunableList:
    """The knobs of ``group`` (all if None) with their state and the policy's rule.

    ``detail=False`` lists only the knobs that can change now (available and allowed by the policy),
    and counts the others in ``others``.
    """
    items = []
    outside: list[str] = []
    unavailable: Counter[str] = Counter()
    for st in service.tunables(group):
        rule = service.policy_rule(st.ref.id)
        if only_allowed and not rule:
            continue
        if not detail and (st.state != "available" or not rule):
            if st.state != "available":
                unavailable[st.state] += 1
            else:
                outside.append(st.ref.id)
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
    return CompactTunableList(
        mode=service.mode,
        policy=service.policy.name,
        kernel=service.host.kernel_release,
        tunables=items,
        others=None if detail else OtherKnobs(outside_policy=outside, unavailable=dict(sorted(unavailable.items()))),
    )


def register(mcp: MCPServer[Service], service: Service) -> None:
    @mcp.tool(title="List tunable knobs", annotations=READ_ONLY)
    @domain_errors
    def list_tunables(
        group: Annotated[
            Literal["sched", "vm", "net", "block", "cgroup"] | None, Field(description="Only this group of knobs.")
        ] = None,
        only_allowed: Annotated[bool, Field(description="Only knobs the policy lets change.")] = False,
        detail: Annotated[
            bool, Field(description="Also describe knobs that cannot change now (locked, absent, outside the policy).")
        ] = False,
    ) -> Annotated[CallToolResult, CompactTunableList]:
        """The knobs you can change now on THIS kernel: id (for stage_sched_params), current value, unit, hard
        range and the policy's bounds, step cap, approval rule and cooldown. Knobs that cannot change are only
        counted in `others` unless detail=true. Knobs the policy does not list cannot change (default-deny)."""
        return ok(tunable_list(service, group, only_allowed, detail))

    _ = list_tunables
