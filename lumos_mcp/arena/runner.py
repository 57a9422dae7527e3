"""Run arena trials on the live host, every write through lumos-mcp's own MCP tools.

A trial: ``stage_sched_params`` -> ``apply`` -> settle -> measure a window (probe tail,
batch throughput, noise; the host's counter signature over the same span) -> ``commit`` when
it is the run's best feasible configuration so far, else ``revert``. A strategy with a
``judge`` hook (`Judge`) decides commit or revert itself, from what it chooses to read of the
record (the zero-mod ranker reads the signature only). A sweep is the same with an
unconditional revert. At the end, and on
any exception including Ctrl-C, every knob the run may have touched is put back to the value
it had at the start by one more journaled transaction (stage, apply, commit) through the
Service; the originals are also written to ``originals.json`` in the state directory first,
so a run killed with -9 is repaired by the next run's start (uncommitted trials are already
restored by the journal's recovery).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import statistics
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import anyio
import numpy as np
from mcp import Client

from lumos_mcp.agents.tools import ToolCallError, ToolClient
from lumos_mcp.arena.problems import Config, Problem, Value
from lumos_mcp.arena.stats import FloatArray, TailStats, median_of_repeats, tail_stats, throughput_floor_ok
from lumos_mcp.arena.workloads import (
    ArenaCgroups,
    BatchWorkload,
    NeighbourWorkload,
    PgbenchWorkload,
    ProbeWorkload,
    noise_cpu,
)
from lumos_mcp.errors import LumosError, TelemetryNotReadyError, WorkloadError
from lumos_mcp.kernelfs.cgroups import CgroupManager
from lumos_mcp.privfs import atomic_write_private, read_private
from lumos_mcp.resources import policy_path
from lumos_mcp.service import Service, ServiceConfig
from lumos_mcp.telemetry.facade import Telemetry
from lumos_mcp.txn import TxState

log = logging.getLogger(__name__)

NOISE_THRESHOLD_CPUS = 0.1
SETTLE_S = 0.5
TELEMETRY_INTERVAL_S = 0.5
"""The arena service's sampling (and perf) interval: a 3 s window then holds 6 samples (about
2.5 s covered) and 5-6 perf intervals; at 1 s it would hold 3 samples covering as little as 2 s.
500 ms perf intervals are what the ranker's training data had. Cost measured here: about 2 ms
of CPU per sample (0.4% of one CPU at 2 Hz), plus perf stat's software counters."""
SUB_WINDOW_S = 0.25
"""Each window's requests are cut into runs of about this long for `Measurement.sub_frac_over_slo`
(12 samples from a 3 s window, about 250 requests each at 1 kHz), in the order the workload logged
them: the probe's by send time, pgbench's client by client."""


@dataclass(frozen=True)
class Measurement:
    """One configuration's measured window(s)."""

    frac_over_slo: float
    p99_us: float
    p95_us: float
    batch_eps: float
    noise_cpus: tuple[float, ...]
    noisy_repeated: int
    repeats: tuple[dict[str, float], ...]
    span_unix_s: tuple[float, float] | None = None
    """Wall-clock start of the first window and end of the last (noisy repeats included)."""
    sub_frac_over_slo: tuple[float, ...] = ()
    """The fraction over the SLO in each sub-window of `SUB_WINDOW_S` (kept windows only, in order): the
    samples a statistical keep rule compares (`lumos_mcp.compare`), not one scalar per window."""
    sub_p99_us: tuple[float, ...] = ()
    """The p99 of each of those sub-windows (inf when one holds a timed-out request in its top 1%)."""
    victim_rate: float = math.nan
    """The victim's answered requests (or transactions) per second, median over the kept windows."""

    @property
    def noise_max(self) -> float:
        return max(self.noise_cpus) if self.noise_cpus else 0.0


@dataclass
class TrialRecord:
    index: int
    config: Config
    phase: int
    measurement: Measurement
    objective: float
    feasible: bool
    action: str
    """``commit``, ``revert`` or ``unchanged`` (nothing to write: measured in place)."""
    txid: str | None
    t_s: float
    error: str | None = None
    signature: dict[str, Any] | None = None
    """The host's counter signature over the measurement span (``Signature.model_dump(mode="json")``)."""
    signature_error: str | None = None
    """Why there is no signature (telemetry not ready, no telemetry in the context)."""
    decided_by: str | None = None
    """Who chose commit or revert: ``strategy`` (its judge hook), ``metric`` (the runner's true-metric
    rule), ``sweep`` (an unconditional revert), None when nothing was written."""

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["config"] = {k: _plain(v) for k, v in self.config.items()}
        return d


def _plain(v: Value) -> int | bool:
    return v


# ------------------------------------------------------------------------------------ environment
class Arena:
    """The victim (the probe or pgbench), the batch job and the neighbour in
    ``PARENT/{victim,batch,neighbour}``."""

    def __init__(self, problem: Problem, cgroups: CgroupManager) -> None:
        self.problem = problem
        self.cg = cgroups
        self.phase = 0
        self._stack = contextlib.ExitStack()
        self.groups: ArenaCgroups | None = None
        self.victim: ProbeWorkload | PgbenchWorkload | None = None
        self.batch: BatchWorkload | None = None
        self.neighbour: NeighbourWorkload | None = None

    def __enter__(self) -> Arena:
        try:
            p = self.problem
            self.groups = self._stack.enter_context(
                ArenaCgroups(self.cg, ["victim", "batch", "neighbour"], parent=self.problem.parent)
            )
            victim = self.groups["victim"]
            if p.victim == "pgbench":
                self.victim = self._stack.enter_context(
                    PgbenchWorkload(p.scenario.rate_hz[0], p.pgbench_clients, cgroup=victim, cgroups=self.cg,
                                    slo_us=p.slo_us)
                )  # fmt: skip
            else:
                self.victim = self._stack.enter_context(
                    ProbeWorkload(p.scenario.rate_hz[0], p.work_us, cgroup=victim, client_cgroup=victim,
                                  cgroups=self.cg, slo_us=p.slo_us)
                )  # fmt: skip
            self.batch = self._stack.enter_context(
                BatchWorkload(p.batch_threads, cgroup=self.groups["batch"], cgroups=self.cg)
            )
            self._set_neighbour(p.scenario.neighbour[0])
            time.sleep(1.0)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.neighbour is not None:
            self.neighbour.stop()
        self._stack.close()

    def _set_neighbour(self, on: bool) -> None:
        assert self.groups is not None
        if on and self.neighbour is None:
            self.neighbour = NeighbourWorkload(
                self.problem.neighbour_cpus, cgroup=self.groups["neighbour"], cgroups=self.cg
            )
            self.neighbour.start()
        elif not on and self.neighbour is not None:
            self.neighbour.stop()
            self.neighbour = None

    def set_phase(self, phase: int) -> None:
        """Apply the scenario's phase (0 before the change, 1 after)."""
        assert self.victim is not None
        self.phase = phase
        rate = self.problem.scenario.rate_hz[phase]
        if isinstance(self.victim, PgbenchWorkload):
            self.victim.rate_tps = rate
        else:
            self.victim.rate_hz = rate
        self._set_neighbour(self.problem.scenario.neighbour[phase])
        time.sleep(1.0)

    def measure(self, repeats: int | None = None, window_s: float | None = None) -> Measurement:
        """``repeats`` windows of ``window_s`` (the problem's by default); a window whose outside CPU
        exceeds 0.1 CPU is measured once more.

        Raises:
            WorkloadError, CgroupError: from the workloads.
        """
        assert self.victim is not None and self.batch is not None and self.groups is not None
        tails: list[TailStats] = []
        eps: list[float] = []
        noise: list[float] = []
        reps: list[dict[str, float]] = []
        sub_frac: list[float] = []
        sub_p99: list[float] = []
        rates: list[float] = []
        extra = 0
        wanted = repeats or self.problem.repeats
        start_unix_s = time.time()
        while len(tails) < wanted:
            mark = self.batch.mark()
            with noise_cpu(self.cg, [self.groups.parent]) as window:
                tail = self.victim.measure(window_s or self.problem.window_s)
            rate = self.batch.events_per_s(mark)
            report = window.report
            noise.append(report.noise_cpus)
            reps.append(
                {
                    "frac_over_slo": tail.frac_over_slo,
                    "p99_us": tail.p99_us,
                    "batch_eps": rate,
                    "noise_cpus": report.noise_cpus,
                }
            )
            if report.noisy(NOISE_THRESHOLD_CPUS) and extra < wanted:
                extra += 1  # flagged: measured again, the noisy window is kept in `repeats` only
                continue
            tails.append(tail)
            eps.append(rate)
            if tail.throughput is not None:
                rates.append(tail.throughput)
            for part in sub_windows(self._latencies(), tail.timed_out, self.problem.slo_us,
                                    max(1, round((window_s or self.problem.window_s) / SUB_WINDOW_S))):  # fmt: skip
                sub_frac.append(part.frac_over_slo)
                sub_p99.append(part.p99_us)
        med = median_of_repeats(tails)
        finite = [e for e in eps if math.isfinite(e)]
        return Measurement(
            frac_over_slo=med.frac_over_slo,
            p99_us=med.p99_us,
            p95_us=med.p95_us,
            batch_eps=float(statistics.median(finite)) if finite else math.nan,
            noise_cpus=tuple(noise),
            noisy_repeated=extra,
            repeats=tuple(reps),
            span_unix_s=(start_unix_s, time.time()),
            sub_frac_over_slo=tuple(sub_frac),
            sub_p99_us=tuple(sub_p99),
            victim_rate=float(statistics.median(rates)) if rates else math.nan,
        )

    def _latencies(self) -> FloatArray:
        """The last window's answered latencies (us), in the order the workload logged them."""
        if isinstance(self.victim, PgbenchWorkload):
            run = self.victim.last_run
            return run.log.latencies_us if run is not None else np.empty(0)
        result = self.victim.last_result if self.victim is not None else None
        return result.latencies_us if result is not None else np.empty(0)


def sub_windows(latencies_us: FloatArray, timed_out: int, slo_us: float, parts: int) -> list[TailStats]:
    """One window's requests cut into ``parts`` consecutive runs of equal count (timed-out requests,
    infinitely slow, spread evenly among them), each run's tail: samples for a keep rule. Fewer parts
    when there are fewer requests than parts; none when there are no requests."""
    answered = np.asarray(latencies_us, dtype=np.float64)
    total = len(answered) + timed_out
    if total == 0:
        return []
    n = max(1, min(parts, total))
    out: list[TailStats] = []
    for i, chunk in enumerate(np.array_split(answered, n)):
        lost = timed_out * (i + 1) // n - timed_out * i // n
        if len(chunk) + lost:
            out.append(tail_stats(chunk, slo_us, timed_out=lost))
    return out


# ------------------------------------------------------------------------------------ service + tools
ArenaTools = ToolClient
"""The MCP tools a strategy and the runner use (an in-memory client over ``build_server``)."""
ArenaToolError = ToolCallError


def arena_service_config(state_dir: Path, problem: Problem) -> ServiceConfig:
    """The arena service's configuration: live on the real host, the arena policy, the problem's cgroups.

    Its telemetry also reads the victim's and the batch job's cgroups (the victim's knobs are not
    listed) and runs perf's software events, sampling every `TELEMETRY_INTERVAL_S`, so each trial's
    signature has what the ranker was trained on: the app's (victim's) and the co-runner's (batch's)
    cgroup CPU, and perf's context switches, migrations and page faults.
    """
    return ServiceConfig(
        mode="live",
        state_dir=state_dir,
        policy=policy_path("arena"),
        host_root=Path("/"),
        cgroups=problem.cgroups,
        telemetry_cgroups=(f"{problem.parent}/victim", f"{problem.parent}/batch"),
        telemetry_interval_s=TELEMETRY_INTERVAL_S,
        perf=True,
    )


def arena_service(state_dir: Path, problem: Problem) -> Service:
    """A started live Service with `arena_service_config`.

    Raises:
        ModeError: not root; StateLockedError: another arena run holds ``state_dir``.
    """
    service = Service(arena_service_config(state_dir, problem))
    service.start()
    return service


@contextlib.asynccontextmanager
async def mcp_tools(service: Service) -> AsyncIterator[ArenaTools]:
    from lumos_mcp.server import build_server

    async with Client(build_server(service)) as client:
        yield ArenaTools(client)


def read_values(service: Service, knob_ids: Sequence[str]) -> Config:
    out: Config = {}
    for k in knob_ids:
        v = service.backend.read(k).value
        out[k] = v if isinstance(v, bool) else int(str(v))
    return out


def restore(service: Service, originals: Config, actor: str = "arena-restore") -> list[str]:
    """Revert whatever is still armed, then write ``originals`` back as one committed transaction.

    Returns what it did, for the log. Never raises a domain error (it is a ``finally`` path):
    failures are logged and returned.
    """
    done: list[str] = []
    for tx in service.txns.transactions():
        if tx.state is TxState.APPLIED:
            try:
                service.revert(tx.id, force=True, actor=actor)
                done.append(f"reverted {tx.id}")
            except LumosError as e:
                done.append(f"revert {tx.id} failed: {e}")
    try:
        current = {k: service.backend.read(k).value for k in originals if _exists(service, k)}
        changes = {k: v for k, v in originals.items() if k in current and current[k] != v}
        if changes:
            staged = service.stage(changes, actor=actor)
            service.apply(staged.tx.id, actor=actor)
            service.commit(staged.tx.id, actor=actor)
            done.append(f"restored {changes}")
    except LumosError as e:
        done.append(f"restore failed: {e}")
        log.error("arena restore failed: %s", e)
    return done


def _exists(service: Service, knob: str) -> bool:
    try:
        service.backend.read(knob)
    except LumosError:
        return False
    return True


@contextlib.contextmanager
def guarded_originals(service: Service, problem: Problem, state_dir: Path) -> Iterator[Config]:
    """Record the problem's knobs' current values (durably), restore them on exit, whatever happens.

    A leftover ``originals.json`` from a killed run is restored first.
    """
    path = state_dir / "originals.json"
    if path.exists():
        left = {k: v for k, v in json.loads(read_private(path)).items() if _exists(service, k)}
        log.warning("restoring knobs a previous arena run left behind: %s", restore(service, left))
        path.unlink()
    originals = read_values(service, problem.knob_ids)
    atomic_write_private(path, json.dumps(originals).encode())  # state dir file: 0600, never through a link
    try:
        yield originals
    finally:
        with anyio.CancelScope(shield=True):
            log.info("arena restore: %s", restore(service, originals))
        path.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------ trials
@dataclass
class TrialContext:
    """What a running strategy run knows: the problem, the arena, the tools, the baseline."""

    problem: Problem
    arena: Arena
    tools: ArenaTools
    baseline_eps: list[float]
    """Batch events/s at default settings, per phase: the floor's reference."""
    current: Config
    """What runs now: the last committed (or measured-in-place) configuration."""
    incumbent_objective: float = math.inf
    """The metric rule: the best feasible objective so far. With a judge: the objective of ``current``'s
    latest window (the runner's bookkeeping; the strategy is not told)."""
    started: float = field(default_factory=time.monotonic)
    records: list[TrialRecord] = field(default_factory=list)
    telemetry: Telemetry | None = None
    """Where each trial's signature is cut from (the service's telemetry); None: no signatures."""


@runtime_checkable
class Judge(Protocol):
    """A strategy that decides keep or revert itself (the runner's true-metric rule otherwise)."""

    async def judge(self, record: TrialRecord, tools: ArenaTools) -> bool:
        """True: commit the trial's configuration (it becomes the incumbent); False: revert it.

        Called after the window is measured, before the commit or revert, only when the trial
        wrote something; ``record.action`` is still ``pending``. The strategy reads what it
        chooses of the record (its signature, or the true metric) and should say in its notes why.
        """
        ...


def feasible(problem: Problem, m: Measurement, baseline: float) -> bool:
    return math.isfinite(m.batch_eps) and throughput_floor_ok(m.batch_eps, baseline, problem.floor_fraction)


def window_signature(telemetry: Telemetry | None, m: Measurement) -> tuple[dict[str, Any] | None, str | None]:
    """The signature over ``m``'s span as JSON data, or None and the reason."""
    if telemetry is None:
        return None, "no telemetry in this trial context"
    if m.span_unix_s is None:
        return None, "the measurement has no wall-clock span"
    try:
        sig = telemetry.signature_between(*m.span_unix_s)
    except TelemetryNotReadyError as e:
        return None, f"{e.code}: {e}"
    data: dict[str, Any] = sig.model_dump(mode="json")
    return data, None


async def trial(
    ctx: TrialContext, config: Config, *, keep_best: bool = True, strategy: object | None = None
) -> TrialRecord:
    """One trial of ``config`` through the MCP tools (see the module docstring).

    ``strategy``: the strategy that proposed ``config``; if it has a ``judge`` hook (`Judge`),
    that decides commit or revert instead of the true-metric rule.

    Raises:
        ArenaToolError: a tool refused (the trial's write is reverted first when it was applied).
    """
    problem = ctx.problem
    config = {k.knob_id: k.clip(config.get(k.knob_id, k.default)) for k in problem.knobs}
    changes = {k: v for k, v in config.items() if ctx.current.get(k) != v}
    txid: str | None = None
    error: str | None = None
    if changes:
        staged = await ctx.tools.call("stage_sched_params", {"changes": changes})
        txid = str(staged["txid"])
        if not staged["allowed"]:
            raise ArenaToolError("stage_sched_params", "denied", json.dumps(staged["denials"]))
        await ctx.tools.call("apply", {"txid": txid})
    try:
        await anyio.sleep(SETTLE_S)
        m = await anyio.to_thread.run_sync(ctx.arena.measure)
    except BaseException:
        if txid is not None:
            with anyio.CancelScope(shield=True):
                await ctx.tools.call("revert", {"txid": txid})
        raise
    baseline = ctx.baseline_eps[ctx.arena.phase]
    ok = feasible(problem, m, baseline)
    objective = problem.score(m.frac_over_slo, m.p99_us)
    signature, signature_error = await anyio.to_thread.run_sync(window_signature, ctx.telemetry, m)
    record = TrialRecord(
        index=len(ctx.records),
        config=config,
        phase=ctx.arena.phase,
        measurement=m,
        objective=objective,
        feasible=ok,
        action="unchanged" if txid is None else "pending",
        txid=txid,
        t_s=round(time.monotonic() - ctx.started, 2),
        error=error,
        signature=signature,
        signature_error=signature_error,
    )
    judge = strategy if keep_best and isinstance(strategy, Judge) else None
    if txid is not None:
        try:
            if not keep_best:
                keep, record.decided_by = False, "sweep"
            elif judge is not None:
                keep, record.decided_by = bool(await judge.judge(record, ctx.tools)), "strategy"
            else:
                keep, record.decided_by = ok and objective < ctx.incumbent_objective, "metric"
        except BaseException:
            with anyio.CancelScope(shield=True):
                await ctx.tools.call("revert", {"txid": txid})
            raise
        if keep:
            await ctx.tools.call("commit", {"txid": txid})
            record.action = "commit"
            ctx.current = dict(config)
        else:
            await ctx.tools.call("revert", {"txid": txid})
            record.action = "revert"
    if judge is not None:
        if config == ctx.current:
            ctx.incumbent_objective = objective
    elif keep_best and ok and objective < ctx.incumbent_objective and config == ctx.current:
        ctx.incumbent_objective = objective
    ctx.records.append(record)
    return record


async def measure_baseline(ctx: TrialContext, repeats: int = 3) -> Measurement:
    """Measure the current (default) settings with ``repeats`` windows.

    Raises:
        WorkloadError: the batch job's throughput could not be measured (no whole report
            interval fit in any window), so no throughput floor can be set.
    """
    m = await anyio.to_thread.run_sync(ctx.arena.measure, repeats)
    if not math.isfinite(m.batch_eps) or m.batch_eps <= 0:
        raise WorkloadError(
            f"no batch throughput in {repeats} windows of {ctx.problem.window_s:g} s: a window must hold at least "
            "one whole report interval of the batch job (1 s); use a longer window",
            workload="batch",
        )
    return m


__all__ = [
    "Arena",
    "ArenaToolError",
    "ArenaTools",
    "Judge",
    "Measurement",
    "TrialContext",
    "TrialRecord",
    "arena_service",
    "arena_service_config",
    "feasible",
    "guarded_originals",
    "mcp_tools",
    "measure_baseline",
    "read_values",
    "restore",
    "sub_windows",
    "trial",
    "window_signature",
]
