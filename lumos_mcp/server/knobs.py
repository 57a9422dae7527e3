"""The inventory tool: which knobs exist on this kernel and what the policy allows."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult
from pydantic import Field

from lumos_mcp.api import PolicyRuleInfo, Tunable, TunableList
from lumos_mcp.server.common import READ_ONLY, domain_errors, ok
from lumos_mcp.service import Service


def tunable_list(service: Service, group: str | None, only_allowed: bool) -> TunableList:
    """The knobs of ``group`` (all if None) with their state and the policy's rule."""
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
    return TunableList(
        mode=service.mode, policy=service.policy.name, kernel=service.host.kernel_release, tunables=items
    )


def register(mcp: MCPServer[Service], service: Service) -> None:
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
        return ok(tunable_list(service, group, only_allowed))

    _ = list_tunables
