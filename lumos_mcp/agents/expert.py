"""The built-in expert agent: explicit rules of thumb, driving the whole loop through a real
MCP client session (observe, propose, stage, approval, apply, measure, commit or revert).
It keeps a change only when repeated windows before and after show it helped (:class:`Evidence`).

It is deliberately simple and readable: every proposal carries the rule that made it.
Approval goes through MCP elicitation: in sandbox the agent's client answers yes itself
(recorded as such in the audit log); in live mode the operator is asked at the terminal.
"""

from __future__ import annotations

import math
import statistics
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
from rich.live import Live
from rich.panel import Panel
from rich.text import Text

from lumos_mcp.agents.tools import ToolCallError, ToolClient
from lumos_mcp.compare import Comparison, Verdict, compare
from lumos_mcp.service import Service, ServiceConfig
from lumos_mcp.txn import TxState


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
    before_windows: list[float] = field(default_factory=list)
    after_windows: list[float] = field(default_factory=list)
    evidence: Evidence | None = None
    why: str = ""
    """Why the change was kept or reverted, with the numbers, for the summary."""


@dataclass(frozen=True)
class Evidence:
    """The keep rule's inputs and answer: `lumos_mcp.compare.compare` over the per-window objective values
    before and after the change (lower is better), the same statistics as the ``compare_windows`` tool.

    The effect is median(after) - median(before), with a 95% bootstrap interval that resamples each side's
    windows. "better" only when the whole interval is below ``-min_effect``, "worse" when it is wholly
    above ``+min_effect``, "no evidence" otherwise (including fewer than 3 windows on a side).
    ``min_effect`` is `MIN_EFFECT_RATIO` of the baseline, at least `MIN_EFFECT_ABS`: a baseline whose
    few windows happen to agree exactly must not make a tiny move count as evidence.
    """

    comparison: Comparison

    @property
    def verdict(self) -> Verdict:
        return self.comparison.verdict

    @property
    def before(self) -> float:
        return self.comparison.before

    @property
    def after(self) -> float:
        return self.comparison.after

    @classmethod
    def judge(cls, before: list[float], after: list[float]) -> Evidence:
        """Raises: ValueError: either side has no window."""
        if not before or not after:
            raise ValueError("the keep rule needs at least one window before and after")
        min_effect = max(MIN_EFFECT_RATIO * abs(statistics.median(before)), MIN_EFFECT_ABS)
        return cls(compare(before, after, lower_is_better=True, statistic="median", min_effect=min_effect))

    def sentence(self) -> str:
        """The rule applied, with rounded numbers:
        ``median 4.87 -> 5.97, change +1.10 [+1.00, +1.20] (95%), wholly above +0.24``."""
        c = self.comparison
        head = f"median {human(c.before)} -> {human(c.after)}, change {signed(c.effect)}"
        if not math.isfinite(c.low):
            return f"{head}: {c.reason}"
        interval = f"{head} [{signed(c.low)}, {signed(c.high)}] ({c.level:.0%})"
        if c.verdict == "better":
            return f"{interval}, wholly below -{human(c.min_effect)}"
        if c.verdict == "worse":
            return f"{interval}, wholly above +{human(c.min_effect)}"
        return f"{interval} reaches within {human(c.min_effect)} of no change"


MIN_EFFECT_RATIO = 0.02
"""The smallest change the keep rule acts on, relative to the baseline (2%)."""
MIN_EFFECT_ABS = 0.05
"""The smallest change in objective units (PSI percentage points, or the app metric's unit)."""


NOT_READY_RETRIES = 3
NOT_READY_WAIT_S = 1.0
"""How often and how long the agent waits for a sampler that has not caught up (``telemetry_not_ready``)."""


def signed(value: float) -> str:
    """`human` with an explicit sign: ``+1.10``, ``-0.30``."""
    return ("+" if value >= 0 else "-") + human(abs(value))


def human(value: float | None) -> str:
    """A number rounded for people: 3 significant figures at most, no exponent for usual sizes."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def metric(signature: dict[str, Any], path: str) -> float | None:
    """A number from a signature by dotted path (``"psi.cpu.some_avg10"``), or None."""
    node: Any = signature
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else None


def has_app_metric(signature: dict[str, Any]) -> bool:
    """Whether an application metric was reported into this window (report_app_metric)."""
    return bool(signature.get("app"))


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


GUARD_RATIO = 1.5
GUARD_HOLD_SAMPLES = 3
PSI_GUARD_SLACK = 5.0
"""Percentage points of CPU pressure a guard on PSI allows above 1.5x its baseline (which may be 0)."""


def objective_guard(signature: dict[str, Any]) -> dict[str, Any] | None:
    """A guard on the objective `objective` reads, per sample: worse than 1.5x its pre-apply median
    (plus a little) for 3 samples in a row, and the server reverts the change at once, without
    waiting for this agent's windows. None when the signature has no objective."""
    for summary in signature.get("app") or []:
        name = str(summary.get("name", ""))
        if ("latency" in name or "p99" in name) and metric(summary, "last") is not None:
            return {
                "metric": f"app.{name}.last",
                "ratio": GUARD_RATIO,
                "slack": MIN_EFFECT_ABS,
                "hold_samples": GUARD_HOLD_SAMPLES,
            }
    if metric(signature, "psi.cpu.some.avg10_pct") is not None:
        return {
            "metric": "psi.cpu.some.avg10_pct",
            "ratio": GUARD_RATIO,
            "slack": PSI_GUARD_SLACK,
            "hold_samples": GUARD_HOLD_SAMPLES,
        }
    return None


def _group(knob: str) -> str:
    """``cgroup.web.cpu_weight`` -> ``web``."""
    return knob.split(".", 1)[1].rsplit(".", 1)[0] if knob.startswith("cgroup.") else ""


def _step(current: int, target: int, max_ratio: float | None) -> int:
    """Move from current toward target by at most the policy's step ratio."""
    if max_ratio is None:
        return target
    limit = max(1, int(abs(current) * max_ratio)) if current else 1
    delta = max(-limit, min(limit, target - current))
    return current + delta


CPU_PRESSURE_PCT = 5.0
"""PSI cpu some (share of time a task waited for CPU) above which CPU contention is real."""
MEMORY_PRESSURE_PCT = 1.0
LATENCY_BASELINE = {"vm.swappiness": 10, "vm.dirty_background_ratio": 3, "vm.dirty_ratio": 10}
"""TuneD's latency-performance profile values for these sysctls (its published baseline), in an
order that keeps dirty_background_ratio below dirty_ratio at every step."""


SHORT_SLICE_US = 300
"""Where the slice rule moves a latency group's tasks (EEVDF default 1400 us; kernel floor 100)."""


def propose(
    signature: dict[str, Any],
    tunables: list[dict[str, Any]],
    tried: set[str],
    latency_groups: frozenset[str] = frozenset(),
) -> Proposal | None:
    """Rules of thumb for tail latency, most specific first, each firing only on its evidence.
    Only knobs the policy allows; every step is capped by the policy's step ratio and bounds.

    ``latency_groups``: the cgroups whose tasks are the latency-sensitive ones (the operator
    says so; the agent cannot tell a service from a batch job). Their weights are never lowered,
    and once no batch weight is left to lower, their tasks' EEVDF slice is shortened."""
    knobs = {t["id"]: t for t in tunables if t["state"] == "available" and t["policy"]["allowed"]}
    cpu_pressure = metric(signature, "psi.cpu.some.avg10_pct") or 0.0
    memory_pressure = metric(signature, "psi.memory.some.avg10_pct") or 0.0
    major_faults = metric(signature, "memory.major_faults_per_s") or 0.0

    def bounded(knob: str, target: int) -> int | None:
        t = knobs[knob]
        current = t["value"]
        if not isinstance(current, int) or isinstance(current, bool):
            return None
        p = t["policy"]
        low, high = p.get("min"), p.get("max")
        target = min(max(target, low if low is not None else target), high if high is not None else target)
        new = _step(current, target, p.get("max_step_ratio"))
        return new if new != current else None

    # 1. CPU contention: batch groups yield the CPU to latency-sensitive work (weights are
    #    work-conserving; quotas are not, and measured here they hurt latency too).
    if cpu_pressure >= CPU_PRESSURE_PCT:
        for knob in sorted(knobs):
            if (
                knob.endswith((".cpu_weight", ".cpu_shares"))
                and knob not in tried
                and _group(knob) not in latency_groups
            ):
                new = bounded(knob, max(1, int(knobs[knob]["value"]) // 4))
                if new is not None:
                    return Proposal(
                        {knob: new},
                        "cpu-contention",
                        f"CPU pressure {cpu_pressure:.1f}% >= {CPU_PRESSURE_PCT}%: lower the batch "
                        "group's weight so latency-sensitive tasks win wake-ups",
                    )
        # 1b. Weights are spent: shorten the latency group's own slice. A shorter slice gives its
        #     tasks an earlier EEVDF deadline when they wake, so they preempt CPU-bound peers
        #     sooner. A second-line knob: measured here it moved the tail less than weights did
        #     (README "Task knobs"), so it comes only after them, and never for a batch group
        #     (a batch job with short slices would win wake-ups against the service).
        for group in sorted(latency_groups):
            knob = f"task.cgroup:{group}.slice_us"
            if knob in knobs and knob not in tried:
                new = bounded(knob, SHORT_SLICE_US)
                if new is not None and new < int(knobs[knob]["value"]):
                    return Proposal(
                        {knob: new},
                        "cpu-contention-slice",
                        f"CPU pressure {cpu_pressure:.1f}% and no batch weight left to lower: shorten "
                        f"{group}'s EEVDF slice so its tasks preempt CPU-bound peers sooner on wake-up",
                    )
    # 2. Memory pressure: keep application pages resident.
    if (
        (memory_pressure >= MEMORY_PRESSURE_PCT or major_faults >= 10)
        and "vm.swappiness" in knobs
        and "vm.swappiness" not in tried
    ):
        new = bounded("vm.swappiness", 10)
        if new is not None:
            return Proposal(
                {"vm.swappiness": new},
                "memory-pressure",
                f"memory pressure {memory_pressure:.1f}%, {major_faults:.0f} major faults/s: "
                "favour application memory over page cache",
            )
    # 3. Baseline: TuneD's latency-performance values, one knob per round, step-capped.
    for knob, target in LATENCY_BASELINE.items():
        if knob in knobs and knob not in tried:
            goal = target
            background = knobs.get("vm.dirty_background_ratio", {}).get("value")
            if knob == "vm.dirty_ratio" and isinstance(background, int):
                goal = max(target, background + 1)  # the policy's cross rule: background < dirty_ratio
            new = bounded(knob, goal)
            if new is not None:
                return Proposal(
                    {knob: new}, "latency-baseline", f"TuneD latency-performance sets {knob}={target}; step toward it"
                )
    return None


class ExpertAgent:
    """Drives one MCP client session through a few tuning rounds.

    Each round measures ``repeats`` windows before the change and ``repeats`` after it, and keeps
    the change only on evidence (:class:`Evidence`, `lumos_mcp.compare`'s verdict on the windows):
    "better" is committed (when the ranker is available and no app metric is reported, only if the
    ranker agrees too); "worse" is reverted. "no evidence" measures ``repeats`` more windows once when
    the change looked better and the apply deadline leaves time (a real gain hidden by too few
    windows gets its chance), and is reverted otherwise or if the verdict is still "no evidence":
    a change that cannot be shown to help is not worth the risk of keeping. A knob the agent
    changed is not proposed again while its policy cooldown runs, so the next round tries another.
    """

    def __init__(
        self,
        client: Client,
        window_s: float,
        on_event: Callable[[str], None],
        sandbox: bool = False,
        use_ranker: bool = True,
        repeats: int = 3,
        clock: Callable[[], float] = time.monotonic,
        latency_groups: frozenset[str] = frozenset(),
    ) -> None:
        if repeats < 1:
            raise ValueError("repeats must be at least 1")
        self.client = client
        self.tools = ToolClient(client)
        self.sandbox = sandbox
        self.window_s = window_s
        self.on_event = on_event
        self.use_ranker = use_ranker
        self.repeats = repeats
        self.clock = clock
        self.latency_groups = latency_groups
        """Cgroups holding the latency-sensitive tasks (`propose`)."""
        self.rounds: list[RoundLog] = []
        self.changed_at: dict[str, float] = {}
        """When this agent last applied each knob (for the policy's cooldown)."""

    async def call(self, tool: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Raises: AgentToolError (the tool answered with an error)."""
        return await self.tools.call(tool, args)

    def cooling(self, tunables: list[dict[str, Any]]) -> set[str]:
        """Knobs this agent changed whose policy cooldown has not run out yet."""
        now = self.clock()
        cooldowns = {t["id"]: float(t["policy"].get("cooldown_s") or 0.0) for t in tunables}
        return {k for k, at in self.changed_at.items() if now - at < cooldowns.get(k, 0.0)}

    async def measure(self, label: str) -> tuple[list[float], dict[str, Any] | None]:
        """``repeats`` windows back to back, all after this call: each one's objective, and the last
        signature. The first is a fresh window; each next one is the window_s the sampler kept
        after it (read once that much time has passed), so consecutive windows share at most one sample."""
        values: list[float] = []
        signature: dict[str, Any] | None = None
        for i in range(1, self.repeats + 1):
            self.on_event(f"measuring {label}: window {i}/{self.repeats} ({self.window_s:g} s)")
            if i > 1:
                await anyio.sleep(self.window_s)
            # full, not the brief: the last window goes to rank_configs, whose features read every section
            args = {"window_s": self.window_s, "fresh": i == 1, "detail": "full"}
            signature = (await self._read_telemetry(args))["signature"]
            value = objective(signature)
            if value is not None:
                values.append(value)
        return values, signature

    async def _read_telemetry(self, args: dict[str, Any]) -> dict[str, Any]:
        """``read_telemetry``, asked again after a short wait (at most `NOT_READY_RETRIES` times) when the
        sampler has not caught up yet (``telemetry_not_ready``: a loaded host can delay a sample)."""
        attempt = 0
        while True:
            try:
                return await self.call("read_telemetry", args)
            except AgentToolError as e:
                if e.code != "telemetry_not_ready" or attempt >= NOT_READY_RETRIES:
                    raise
            attempt += 1
            await anyio.sleep(NOT_READY_WAIT_S)

    async def run(self, rounds: int) -> list[RoundLog]:
        tried: set[str] = set()  # proposals that were reverted or refused: not again in this run
        for n in range(1, rounds + 1):
            log = RoundLog(round=n, proposal=None)
            self.rounds.append(log)
            log.before_windows, sig = await self.measure(f"round {n}, before")
            log.before = statistics.median(log.before_windows) if log.before_windows else None
            tunables = (await self.call("list_tunables", {"only_allowed": True}))["tunables"]
            proposal = propose(sig or {}, tunables, tried | self.cooling(tunables), self.latency_groups)
            log.proposal = proposal
            if proposal is None:
                log.outcome = "nothing to do"
                log.why = "no rule fires on what was measured (or every candidate knob is cooling down)"
                self.on_event("no rule fires: the host looks fine for now")
                break
            self.on_event(f"propose {proposal.changes} ({proposal.rule}): {proposal.why}")
            try:
                await self._try(proposal, log, sig)
            except AgentToolError as e:
                log.outcome = f"refused: {e.code}"
                log.why = str(e)
                log.notes.append(str(e))
                self.on_event(f"refused by the server: {e}")
                await self._revert_after_error(log)
            if log.outcome != "committed":
                tried.update(proposal.changes)
        return self.rounds

    async def _revert_after_error(self, log: RoundLog) -> None:
        """A tool failed mid-round (after apply, say): revert what this round applied rather than leave it
        armed until its deadline. Nothing to do when nothing was applied or it is already closed."""
        if log.txid is None:
            return
        try:
            await self.call("revert", {"txid": log.txid})
        except AgentToolError as e:
            log.notes.append(f"revert after the error: {e.code}")
            return
        log.notes.append("reverted what this round had applied")
        self.on_event(f"reverted {log.txid} after the error")

    async def _ranker_says_worse(self, before: dict[str, Any], after: dict[str, Any], log: RoundLog) -> bool | None:
        """With no application metric: ask rank_configs whether the new window fails to beat the old one by
        the margin rule (then revert). None when the ranker is unavailable (no model): PSI decides then."""
        try:
            ranked = await self.call(
                "rank_configs",
                {
                    "candidates": [
                        {"label": "before", "signature": before},
                        {"label": "after", "signature": after},
                    ],
                    "incumbent": 0,
                },
            )
        except AgentToolError as e:
            log.notes.append(f"ranker unavailable: {e.code}")
            return None
        margin = next(c["margin_vs_incumbent"] for c in ranked["order"] if c["label"] == "after")
        log.notes.append(f"ranker ({ranked['archetype']}): margin {margin:+.2f}, delta {ranked['delta']}")
        return bool(ranked["keep_incumbent"])  # the margin rule: keep the old setting unless margin >= delta

    async def _stage(self, proposal: Proposal, log: RoundLog, before_sig: dict[str, Any] | None) -> dict[str, Any]:
        """Stage with a guard on the objective; without it (the policy's guards still watch) when the
        metric is missing here or the policy already guards it more strictly."""
        guard = objective_guard(before_sig or {})
        if guard is not None:
            try:
                return await self.call("stage_sched_params", {"changes": proposal.changes, "guards": [guard]})
            except AgentToolError as e:
                if e.code not in ("guard_metric_missing", "guard_loosens"):
                    raise
                log.notes.append(f"staged without its own guard: {e.code}")
        return await self.call("stage_sched_params", {"changes": proposal.changes})

    async def _close(self, tool: str, log: RoundLog) -> bool:
        """Commit or revert; False when a guard already reverted the change (its evidence is noted)."""
        try:
            await self.call(tool, {"txid": log.txid})
        except AgentToolError as e:
            if e.fields.get("reverted_by") != "guard":
                raise
            evidence = e.fields.get("guard") or {}
            rule = (evidence.get("guard") or {}).get("text", "a guard")
            values = [human(s.get("value")) for s in evidence.get("samples", [])]
            log.outcome = "reverted by a guard"
            baseline = human(evidence.get("baseline"))
            log.why = f"the server reverted it: {rule} breached ({', '.join(values)}; baseline {baseline})"
            return False
        return True

    async def _try(self, proposal: Proposal, log: RoundLog, before_sig: dict[str, Any] | None = None) -> None:
        staged = await self._stage(proposal, log, before_sig)
        log.txid = staged["txid"]
        if not staged["allowed"]:
            log.verdict = "denied"
            log.outcome = "denied: " + "; ".join(d["message"] for d in staged["denials"])
            log.why = "the policy refused it"
            self.on_event(log.outcome)
            return
        log.verdict = "allowed" + (" (approval needed)" if staged["approval_required"] else "")
        if staged["approval_required"]:
            answer = await self.call("request_approval", {"txid": log.txid})
            self.on_event(
                f"approval: {answer['status']} via {answer['via']}"
                + (
                    " (sandbox: the agent's client answers yes)"
                    if answer["via"] == "elicitation" and self.sandbox
                    else ""
                )
            )
            if answer["status"] != "granted":
                log.outcome = f"not approved ({answer['status']})"
                log.why = "nobody approved it"
                return
        applied = await self.call("apply", {"txid": log.txid})
        for knob in proposal.changes:
            self.changed_at[knob] = self.clock()
        self.on_event(f"applied {applied['values']}; auto-revert in {applied['deadline_in_s']:.0f} s")
        deadline = self.clock() + float(applied["deadline_in_s"])
        log.after_windows, sig = await self.measure("after")
        if self._measure_again(log, deadline):
            more, more_sig = await self.measure("after, again")
            log.after_windows += more
            sig = more_sig or sig
            log.notes.append(f"no evidence after {len(log.after_windows) - len(more)} windows, but the change "
                             f"looked better: measured {len(more)} more")  # fmt: skip
        log.after = statistics.median(log.after_windows) if log.after_windows else None
        keep, log.why = await self._decide(log, before_sig, sig)
        if await self._close("commit" if keep else "revert", log):
            log.outcome = "committed" if keep else "reverted"
        self.on_event(f"{log.outcome}: {log.why}")

    def _measure_again(self, log: RoundLog, deadline: float) -> bool:
        """On "no evidence": measure once more (``repeats`` windows, pooled with the first) only when the
        point estimate already favours the change and the apply deadline leaves time for it. A change
        that looks no better, or a second "no evidence", is reverted: the host goes back to the state it
        was measured in, and a change that cannot be shown to help is not worth the risk of keeping."""
        if not log.before_windows or not log.after_windows:
            return False
        first = Evidence.judge(log.before_windows, log.after_windows)
        if first.verdict != "no evidence" or not first.comparison.effect < 0:
            return False
        return deadline - self.clock() >= (self.repeats + 1) * self.window_s

    async def _decide(
        self, log: RoundLog, before_sig: dict[str, Any] | None, after_sig: dict[str, Any] | None
    ) -> tuple[bool, str]:
        """Keep (True) only on evidence; the reason, with rounded numbers."""
        if not log.before_windows or not log.after_windows:
            return False, "no objective could be measured, so nothing shows it helps"
        log.evidence = evidence = Evidence.judge(log.before_windows, log.after_windows)
        medians = f"{len(log.before_windows)} windows before, {len(log.after_windows)} after: {evidence.sentence()}"
        if evidence.verdict == "worse":
            return False, f"worse ({medians})"
        if evidence.verdict == "no evidence":
            return False, f"no evidence it helps ({medians}); reverted to the measured state"
        if (
            self.use_ranker
            and before_sig is not None
            and after_sig is not None
            and not (has_app_metric(before_sig) or has_app_metric(after_sig))
        ):
            ranker_worse = await self._ranker_says_worse(before_sig, after_sig, log)
            if ranker_worse:
                return False, f"better ({medians}) but the ranker sees no clear win ({log.notes[-1]})"
            if ranker_worse is None:
                return True, f"better ({medians}); ranker not installed, so the measurement alone decided"
            return True, f"better ({medians}), and the ranker agrees ({log.notes[-1]})"
        return True, f"better ({medians})"


AgentToolError = ToolCallError


class TuneView:
    """The live panel under the event log: what the agent does now, and armed changes counting down."""

    def __init__(self, service: Service, started: float) -> None:
        self.service = service
        self.started = started
        self.phase = "starting"

    def render(self) -> Panel:
        now = self.service.clock()
        lines = Text()
        lines.append(f"{time.monotonic() - self.started:6.1f}s  ", style="dim")
        lines.append(self.phase[:160])
        for tx in self.service.txns.transactions():
            if tx.state is TxState.APPLIED and tx.deadline is not None:
                knobs = ", ".join(f"{c.knob}={c.after}" for c in tx.changes)
                lines.append(f"\n  armed {tx.id}: {knobs} - auto-revert in {tx.deadline - now:5.1f} s", style="yellow")
        return Panel(lines, title=f"lumos-mcp tune · {self.service.mode}", border_style="cyan")


def approval_callback(mode: str, pause: Live | None = None) -> ElicitationFnT:
    """The agent's answer to the server's approval question: yes in sandbox, the operator in live."""

    async def answer(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult | ErrorData:
        if mode == "sandbox":
            return ElicitResult(action="accept", content={"approve": True, "note": "auto-approved (sandbox)"})
        if not sys.stdin.isatty():
            return ElicitResult(action="decline")  # nobody to ask: no

        def ask() -> bool:
            if pause is not None:
                pause.stop()  # the prompt needs the terminal to itself
            try:
                reply = input(f"\n{params.message} [y/N] ")
            finally:
                if pause is not None:
                    pause.start()
            return reply.strip().lower() in ("y", "yes")

        granted = await anyio.to_thread.run_sync(ask)
        return ElicitResult(action="accept", content={"approve": granted, "note": "operator at the terminal"})

    return answer


async def run_tune(config: ServiceConfig, rounds: int, window_s: float, live_view: bool, repeats: int = 3) -> int:
    """``lumos-mcp tune``: start the service, connect a real MCP client, run the agent, summarise."""
    from rich.table import Table

    from lumos_mcp.audit import verify
    from lumos_mcp.console import console as wide_console
    from lumos_mcp.server import build_server

    console = wide_console()
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
    view = TuneView(service, started)

    def event(text: str) -> None:
        view.phase = text
        if live_view:
            console.print(f"  [dim]{time.monotonic() - started:6.1f}s[/] {text}")
        else:
            print(f"{time.monotonic() - started:6.1f}s {text}", flush=True)

    try:
        server = build_server(service)
        live = (
            Live(get_renderable=view.render, console=console, refresh_per_second=4, transient=True)
            if live_view
            else None
        )
        callback = approval_callback(service.mode, pause=live)
        async with Client(server, elicitation_callback=callback) as client:
            agent = ExpertAgent(client, window_s, event, sandbox=service.mode == "sandbox", repeats=repeats)
            if live is None:
                logs = await agent.run(rounds)
            else:
                with live:
                    logs = await agent.run(rounds)
    finally:
        # stopped mid-round (Ctrl-C, an error): nobody is left to commit what is armed
        for tx in service.shutdown():
            print(f"lumos-mcp: reverted {tx.id}, left uncommitted when tune stopped", file=sys.stderr)
        service.close()
    table = Table(
        title="tuning summary (objective: app p99 if reported, else CPU PSI some %; lower is better;"
        f" medians of {repeats} windows of {window_s:g} s)"
    )
    for col in ("#", "change", "rule", "before", "after", "outcome", "why"):
        table.add_column(col, overflow="fold")
    for log in logs:
        p = log.proposal
        change = ", ".join(f"{k}={v}" for k, v in p.changes.items()) if p else "-"
        table.add_row(
            str(log.round), change, p.rule if p else "-", human(log.before), human(log.after), log.outcome, log.why
        )
    console.print(table)
    audit = verify(service.audit.path)
    console.print(
        f"audit log: {'[green]verified[/]' if audit.ok else '[red]BROKEN[/]'} "
        f"({audit.records} records) at {service.audit.path}"
    )
    return 0 if audit.ok else 1
