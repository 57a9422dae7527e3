"""The built-in expert agent: explicit rules of thumb, driving the whole loop through a real
MCP client session (observe, propose, stage, approval, apply, measure, commit or revert).

It is deliberately simple and readable: every proposal carries the rule that made it.
Approval goes through MCP elicitation: in sandbox the agent's client answers yes itself
(recorded as such in the audit log); in live mode the operator is asked at the terminal.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.client.session import ElicitationFnT
from mcp.types import ElicitRequestParams, ElicitResult, ErrorData

from lumos_mcp.service import Service, ServiceConfig


@dataclass(frozen=True)
class Proposal:
    changes: dict[str, int | bool | str]
    rule: str
    why: str


@dataclass
class RoundLog:
    round: int
    proposal: Proposal | None
    txid: str | None = None
    verdict: str = ""
    before: float | None = None
    after: float | None = None
    outcome: str = ""
    notes: list[str] = field(default_factory=list)


def metric(signature: dict[str, Any], path: str) -> float | None:
    """A number from a signature by dotted path (``"psi.cpu.some_avg10"``), or None."""
    node: Any = signature
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else None


OBJECTIVE_PATHS = ("psi.cpu.some.window_pct", "psi.cpu.some.avg10_pct")


def objective(signature: dict[str, Any]) -> float | None:
    """Lower is better: the app's p99 when reported, else CPU pressure (PSI some %)."""
    for summary in signature.get("app") or []:
        name = str(summary.get("name", ""))
        if "latency" in name or "p99" in name:
            value = metric(summary, "mean")
            if value is not None:
                return value
    for path in OBJECTIVE_PATHS:
        value = metric(signature, path)
        if value is not None:
            return value
    return None


def _step(current: int, target: int, max_ratio: float | None) -> int:
    """Move from current toward target by at most the policy's step ratio."""
    if max_ratio is None:
        return target
    limit = max(1, int(abs(current) * max_ratio)) if current else 1
    delta = max(-limit, min(limit, target - current))
    return current + delta


def propose(signature: dict[str, Any], tunables: list[dict[str, Any]], tried: set[str]) -> Proposal | None:
    """Rules of thumb for tail latency, most specific first. Only knobs the policy allows."""
    knobs = {t["id"]: t for t in tunables if t["state"] == "available" and t["policy"]["allowed"]}
    cpu_pressure = objective(signature) or 0.0

    def bounded(knob: str, target: int) -> int | None:
        t = knobs[knob]
        current = t["value"]
        if not isinstance(current, int) or isinstance(current, bool):
            return None
        p = t["policy"]
        target = (
            max(p.get("min") or target, min(p.get("max") or target, target)) if p.get("min") is not None else target
        )
        new = _step(current, target, p.get("max_step_ratio"))
        return new if new != current else None

    # 1. CPU contention: give latency-sensitive work the CPU before batch groups.
    for knob in sorted(knobs):
        if knob.endswith((".cpu_weight", ".cpu_shares")) and knob not in tried:
            new = bounded(knob, max(1, int(knobs[knob]["value"]) // 4))
            if new is not None:
                return Proposal(
                    {knob: new},
                    "batch-weight",
                    f"CPU pressure {cpu_pressure:.1f}%: lower the batch group's weight so latency-"
                    f"sensitive tasks win wake-ups (work-conserving: batch keeps idle CPU)",
                )
    # 2. Memory: keep application pages resident.
    if "vm.swappiness" in knobs and "vm.swappiness" not in tried:
        new = bounded("vm.swappiness", 10)
        if new is not None:
            return Proposal(
                {"vm.swappiness": new},
                "swappiness",
                "favour keeping application memory resident over page cache (fewer major faults)",
            )
    # 3. Writeback: start background flushing earlier for smoother I/O latency.
    if "vm.dirty_background_ratio" in knobs and "vm.dirty_background_ratio" not in tried:
        new = bounded("vm.dirty_background_ratio", 5)
        if new is not None:
            return Proposal(
                {"vm.dirty_background_ratio": new}, "writeback", "flush dirty pages earlier to avoid write stalls"
            )
    return None


class ExpertAgent:
    """Drives one MCP client session through a few tuning rounds."""

    def __init__(
        self, client: Client, window_s: float, on_event: Callable[[str], None], worse_tolerance: float = 0.10
    ) -> None:
        self.client = client
        self.window_s = window_s
        self.on_event = on_event
        self.worse_tolerance = worse_tolerance
        self.rounds: list[RoundLog] = []

    async def call(self, tool: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        result = await self.client.call_tool(tool, args or {})
        data = result.structured_content or {}
        if result.is_error:
            error = data.get("error", {})
            raise AgentToolError(tool, error.get("code", "error"), error.get("message", str(result.content)))
        return data

    async def run(self, rounds: int) -> list[RoundLog]:
        tried: set[str] = set()
        for n in range(1, rounds + 1):
            log = RoundLog(round=n, proposal=None)
            self.rounds.append(log)
            self.on_event(f"round {n}: observing for {self.window_s:.0f} s")
            sig = (await self.call("read_telemetry", {"window_s": self.window_s}))["signature"]
            log.before = objective(sig)
            tunables = (await self.call("list_tunables", {"only_allowed": True}))["tunables"]
            proposal = propose(sig, tunables, tried)
            log.proposal = proposal
            if proposal is None:
                log.outcome = "nothing to do"
                self.on_event("no rule fires: the host looks fine for now")
                break
            tried.update(proposal.changes)
            self.on_event(f"propose {proposal.changes} ({proposal.rule}): {proposal.why}")
            try:
                await self._try(proposal, log)
            except AgentToolError as e:
                log.outcome = f"refused: {e.code}"
                log.notes.append(str(e))
                self.on_event(f"refused by the server: {e}")
        return self.rounds

    async def _try(self, proposal: Proposal, log: RoundLog) -> None:
        staged = await self.call("stage_sched_params", {"changes": proposal.changes})
        log.txid = staged["txid"]
        if not staged["allowed"]:
            log.verdict = "denied"
            log.outcome = "denied: " + "; ".join(d["message"] for d in staged["denials"])
            self.on_event(log.outcome)
            return
        log.verdict = "allowed" + (" (approval needed)" if staged["approval_required"] else "")
        if staged["approval_required"]:
            answer = await self.call("request_approval", {"txid": log.txid})
            self.on_event(f"approval: {answer['status']} via {answer['via']}")
            if answer["status"] != "granted":
                log.outcome = f"not approved ({answer['status']})"
                return
        applied = await self.call("apply", {"txid": log.txid})
        self.on_event(f"applied {applied['values']}; auto-revert in {applied['deadline_in_s']:.0f} s; measuring")
        sig = (await self.call("read_telemetry", {"window_s": self.window_s, "fresh": True}))["signature"]
        log.after = objective(sig)
        if (
            log.before is not None
            and log.after is not None
            and log.after > log.before * (1 + self.worse_tolerance) + 0.5
        ):
            await self.call("revert", {"txid": log.txid})
            log.outcome = "reverted (worse)"
        else:
            await self.call("commit", {"txid": log.txid})
            log.outcome = "committed"
        self.on_event(f"{log.outcome}: objective {log.before} -> {log.after}")


class AgentToolError(Exception):
    def __init__(self, tool: str, code: str, message: str) -> None:
        super().__init__(f"{tool}: {code}: {message}")
        self.tool = tool
        self.code = code


def approval_callback(mode: str) -> ElicitationFnT:
    """The agent's answer to the server's approval question: yes in sandbox, the operator in live."""

    async def answer(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult | ErrorData:
        if mode == "sandbox":
            return ElicitResult(action="accept", content={"approve": True, "note": "auto-approved (sandbox)"})
        if not sys.stdin.isatty():
            return ElicitResult(action="decline")  # nobody to ask: no

        def ask() -> bool:
            reply = input(f"\n{params.message} [y/N] ")
            return reply.strip().lower() in ("y", "yes")

        granted = await anyio.to_thread.run_sync(ask)
        return ElicitResult(action="accept", content={"approve": granted, "note": "operator at the terminal"})

    return answer


async def run_tune(config: ServiceConfig, rounds: int, window_s: float, live_view: bool) -> int:
    """``lumos-mcp tune``: start the service, connect a real MCP client, run the agent, summarise."""
    from rich.console import Console
    from rich.table import Table

    from lumos_mcp.audit import verify
    from lumos_mcp.server import build_server

    console = Console(stderr=False)
    service = Service(config)
    report = service.start()
    console.print(
        f"[bold]lumos-mcp tune[/] · mode [cyan]{service.mode}[/] · policy [cyan]{service.policy.name}[/]"
        f" · kernel {service.host.kernel_release}"
    )
    if service.mode == "sandbox":
        console.print(
            f"  sandbox: writes go to {service.kernel.base}; the host is not touched "
            "(telemetry is the real host's, so it cannot show the sandbox's effect)"
        )
    if report.transactions:
        console.print(f"  recovered {len(report.transactions)} unfinished transaction(s) from the journal")
    started = time.monotonic()

    def event(text: str) -> None:
        console.print(f"  [dim]{time.monotonic() - started:6.1f}s[/] {text}") if live_view else print(text)

    try:
        server = build_server(service)
        async with Client(server, elicitation_callback=approval_callback(service.mode)) as client:
            agent = ExpertAgent(client, window_s, event)
            logs = await agent.run(rounds)
    finally:
        service.close()
    table = Table(title="tuning summary", show_lines=False)
    for col in ("round", "proposal", "rule", "verdict", "objective before", "after", "outcome"):
        table.add_column(col)
    for log in logs:
        p = log.proposal
        table.add_row(
            str(log.round),
            str(p.changes) if p else "-",
            p.rule if p else "-",
            log.verdict,
            _fmt(log.before),
            _fmt(log.after),
            log.outcome,
        )
    console.print(table)
    audit = verify(service.audit.path)
    console.print(
        f"audit log: {'[green]verified[/]' if audit.ok else '[red]BROKEN[/]'} "
        f"({audit.records} records) at {service.audit.path}"
    )
    return 0 if audit.ok else 1


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
