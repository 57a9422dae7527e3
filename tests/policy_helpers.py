"""What the policy engine's tests share: a fixed clock, a history to fill by hand, one call."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from lumos_mcp.policy import Change, Policy, Verdict, evaluate
from lumos_mcp.policy.engine import Value

NOW = 100_000.0


@dataclass
class FakeHistory:
    last: dict[str, float] = field(default_factory=dict)
    commits: list[float] = field(default_factory=list)

    def last_change_at(self, knob: str) -> float | None:
        return self.last.get(knob)

    def commits_since(self, ts: float) -> int:
        return sum(1 for t in self.commits if t >= ts)


def run(
    policy: Policy,
    *changes: Change,
    current: Mapping[str, Value] | None = None,
    history: FakeHistory | None = None,
    confirm_within_s: float | None = None,
    speculative: bool = False,
) -> Verdict:
    return evaluate(
        policy,
        changes,
        current=current or {},
        history=history or FakeHistory(),
        now=NOW,
        confirm_within_s=confirm_within_s,
        speculative=speculative,
    )
