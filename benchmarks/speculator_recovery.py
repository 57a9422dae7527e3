"""Speculator recovery scenario: an antagonist arrives; who brings the tail back, and how fast?

A 1 kHz request/response probe (20 us of work a request) runs in ``lumos-speculate/victim``.
At ``--arrive-at`` seconds a CPU-bound batch job (2 threads, sysbench cpu when installed)
starts in the sibling group ``lumos-speculate/batch``: the antagonist arriving. The knob is
the batch group's ``cpu.shares`` (default 1024), moved only through a live lumos-mcp service
with ``policies/speculate.toml``. Strategies:

* untuned: nobody moves it.
* agent: a slow actor standing in for an LLM (a fixed rule, not a model): every 10-15 s
  (uniform, seeded) it looks at the median of the per-second p95 since its last decision;
  above the target (+10%) it quarters the batch weight (floor 2), else it confirms the live
  value; it applies and commits at once (last write wins over any speculative move).
* agent+speculator: both; the speculator (lumos_mcp.speculator) steps every second.
* speculator: the speculator alone.

Per second the probe client reports p95 and p99; per run we report the mean per-second p95
in the 30 s after arrival (the seed's "p95 during recovery"), and the time after arrival
until the 5 s rolling median p95 is within 10% of the settled value (median of the last
20 s). Every knob is restored through the service and every cgroup removed at the end, also
on Ctrl-C.

    PYTHONPATH=. python benchmarks/speculator_recovery.py run --seed 1
    PYTHONPATH=. python benchmarks/speculator_recovery.py report

A second scenario, the weight jump (``jump`` / ``jump-report``): the batch job's weight jumps
from 128 to 2048 beside the probe; recovery is measured from every request's timestamp; agent
only, speculator only and both run in interleaved rounds and are compared with bootstrap
intervals (docs/speculator.md, "A perturbation that always hurts"):

    PYTHONPATH=. python benchmarks/speculator_recovery.py jump --rounds 10
    PYTHONPATH=. python benchmarks/speculator_recovery.py jump-report
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lumos_mcp.arena import procs
from lumos_mcp.arena.evaluation import bootstrap_median, prob_beats
from lumos_mcp.arena.probe import run_client
from lumos_mcp.arena.stats import FloatArray
from lumos_mcp.arena.workloads import ArenaCgroups, BatchWorkload, ProbeWorkload
from lumos_mcp.errors import LumosError
from lumos_mcp.kernelfs.cgroups import CgroupManager
from lumos_mcp.kernelfs.root import KernelRoot
from lumos_mcp.service import Service, ServiceConfig
from lumos_mcp.speculator import Signal, Speculator, envelope_for
from lumos_mcp.txn import TxState

ROOT = Path(__file__).resolve().parent.parent
PARENT = "lumos-speculate"
STRATEGIES = ("untuned", "agent", "agent+speculator", "speculator")


# ---------------------------------------------------------------------------- probe stream
def stream(address: str, rate_hz: float, seconds: int) -> int:
    """Child mode: one 1 s client window after another, one JSON line per second."""
    for _ in range(seconds):
        result = run_client(address, rate_hz, 1.0, timeout_s=2.0)
        lat = np.sort(result.latencies_us)
        # requests that timed out count as the slowest (no coordinated omission)
        n = result.scheduled
        pad = np.concatenate([lat, np.full(n - lat.size, 2e6)]) if lat.size < n else lat
        p95, p99 = (float(np.percentile(pad, q)) for q in (95, 99))
        print(json.dumps({"t": time.time(), "p95_us": p95, "p99_us": p99, "n": n, "lost": n - lat.size}), flush=True)
    return 0


class _ChildLines:
    """A child process of this script writing one JSON object per line; each line is handed to
    ``_take`` under ``lock`` by a reader thread (lines that are not such objects are skipped)."""

    def __init__(self, argv: list[str], workload: str, **spawn: Any) -> None:
        self.lock = threading.Lock()
        self.proc = procs.spawn(argv, workload=workload, env=procs.python_env(), **spawn)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _take(self, d: dict[str, Any]) -> None:
        raise NotImplementedError

    def _read(self) -> None:
        assert self.proc.stdout is not None
        # ValueError/OSError around the loop: the pipe closed under the read (stop() gave up waiting)
        with contextlib.suppress(ValueError, OSError):
            for raw in self.proc.stdout:
                with contextlib.suppress(ValueError, KeyError):
                    d = json.loads(raw)
                    with self.lock:
                        self._take(d)

    def stop(self) -> None:
        """End the child, let the reader drain its pipe to EOF, then sweep the group and close the
        pipes (closing them while the reader reads raised in its thread)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        self.thread.join(timeout=5.0)
        procs.stop(self.proc, grace_s=2.0)
        self.thread.join(timeout=1.0)


class Stream(_ChildLines):
    """The probe client in a child process; per-second p95 kept here."""

    def __init__(self, address: str, seconds: int) -> None:
        self.points: list[tuple[float, float, float]] = []  # (wall t, p95 ms, p99 ms)
        argv = [sys.executable, str(Path(__file__).resolve()), "stream", address, str(seconds)]
        super().__init__(argv, "probe-stream")

    def _take(self, d: dict[str, Any]) -> None:
        self.points.append((d["t"], d["p95_us"] / 1000, d["p99_us"] / 1000))

    def latest(self, max_age_s: float = 2.5) -> float | None:
        with self.lock:
            if not self.points or time.time() - self.points[-1][0] > max_age_s:
                return None
            return self.points[-1][1]

    def since(self, t: float) -> list[float]:
        with self.lock:
            return [p for (ts, p, _) in self.points if ts > t]


# ---------------------------------------------------------------------------- actors
def every(period: Callable[[], float], stop: threading.Event, body: Callable[[], object]) -> threading.Thread:
    def loop() -> None:
        while not stop.wait(period()):
            body()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def agent_decision(
    service: Service, knob: str, stream: Stream, since: list[float], target_ms: float, log: list[Any]
) -> None:
    window = stream.since(since[0])
    since[0] = time.time()
    if not window:
        return
    p95 = statistics.median(window)
    live = service.backend.read(knob).value
    assert isinstance(live, int)
    value = max(2, live // 4) if p95 > target_ms * 1.1 else live
    try:
        staged = service.stage({knob: value}, actor="agent")
        service.apply(staged.tx.id, actor="agent")
        service.commit(staged.tx.id, actor="agent")
        log.append({"t": time.time(), "who": "agent", "value": value, "p95_ms": p95})
    except LumosError as e:
        log.append({"t": time.time(), "who": "agent", "error": e.code, "p95_ms": p95})


def restore(service: Service, knob: str, original: int) -> None:
    """Close every applied transaction and put the knob back, all through the service."""
    for tx in service.txns.transactions():
        if tx.state is TxState.APPLIED:
            with contextlib.suppress(LumosError):
                service.revert(tx.id, force=True, actor="benchmark")
    if service.backend.read(knob).value != original:
        staged = service.stage({knob: original}, actor="benchmark")
        service.apply(staged.tx.id, actor="benchmark")
        service.commit(staged.tx.id, actor="benchmark")


# ---------------------------------------------------------------------------- one run
def one_run(
    service: Service, cg: CgroupManager, groups: ArenaCgroups, probe: ProbeWorkload, strategy: str, args: Any, seed: int
) -> dict[str, Any]:
    knob = f"cgroup.{groups['batch']}.cpu_shares"
    original = service.backend.read(knob).value
    assert isinstance(original, int)
    rng = random.Random(seed)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    events: list[Any] = []
    spec: Speculator | None = None
    s = Stream(probe.address, args.duration + 2)
    t0 = time.time()
    try:
        if "speculator" in strategy:

            def signal() -> Signal | None:
                v = s.latest()
                return None if v is None else Signal("probe_p95_ms", v, args.target_ms, "ms")

            spec = Speculator(service, {knob: envelope_for(service, knob)}, signal, interval_s=1.0)

            def spec_tick() -> None:
                assert spec is not None
                service.expire_due()
                move = spec.step()
                if move is not None:
                    events.append({"t": time.time(), "who": "speculator", "value": move.after})

            threads.append(every(lambda: 1.0, stop, spec_tick))
        else:
            threads.append(every(lambda: 0.5, stop, service.expire_due))
        if strategy.startswith("agent"):
            since = [t0]
            threads.append(
                every(
                    lambda: rng.uniform(10.0, 15.0),
                    stop,
                    lambda: agent_decision(service, knob, s, since, args.target_ms, events),
                )
            )
        shares: list[tuple[float, int]] = []
        with contextlib.ExitStack() as batch_scope:
            while time.time() - t0 < args.duration:
                time.sleep(0.25)
                live = service.backend.read(knob).value
                shares.append((time.time() - t0, int(live)))  # type: ignore[call-overload]
                if not batch_scope._exit_callbacks and time.time() - t0 >= args.arrive_at:
                    batch = BatchWorkload(2, groups["batch"], cgroups=cg)
                    batch_scope.enter_context(batch)
                    events.append({"t": time.time(), "who": "antagonist", "value": "arrives"})
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=10.0)
        status = spec.status() if spec is not None else None
        if spec is not None:
            spec.stop(revert=True)
        s.stop()
        restore(service, knob, original)
    points = [(ts - t0, p95, p99) for ts, p95, p99 in s.points]
    return {
        "strategy": strategy,
        "seed": seed,
        "arrive_at": args.arrive_at,
        "duration": args.duration,
        "target_ms": args.target_ms,
        "points": points,
        "shares": shares,
        "events": [{**e, "t": e["t"] - t0} for e in events],
        "speculator": status,
    }


def cmd_run(args: Any) -> int:
    cg = CgroupManager(KernelRoot("/"))
    state = Path(tempfile.mkdtemp(prefix="lumos-spec-bench-"))
    strategies = list(args.strategies.split(","))
    random.Random(args.seed).shuffle(strategies)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with ArenaCgroups(cg, ["victim", "batch"], parent=PARENT) as groups:
        config = ServiceConfig(
            mode="live",
            state_dir=state,
            policy=ROOT / "policies" / "speculate.toml",
            host_root=Path("/"),
            cgroups=(groups["batch"],),
            perf=False,
        )
        service = Service(config)
        service.start()
        try:
            with ProbeWorkload(1000, 20, groups["victim"], cgroups=cg) as probe:
                for strategy in strategies:
                    print(f"[seed {args.seed}] {strategy} ...", file=sys.stderr, flush=True)
                    run = one_run(service, cg, groups, probe, strategy, args, args.seed)
                    with out.open("a") as f:
                        f.write(json.dumps(run) + "\n")
                    print(f"  {summarise(run)}", file=sys.stderr, flush=True)
                    time.sleep(2.0)
        finally:
            service.close()
    return 0


# ---------------------------------------------------------------------------- analysis
def summarise(run: dict[str, Any]) -> dict[str, Any]:
    arrive = run["arrive_at"]
    pts = [(t, p95) for t, p95, _ in run["points"]]
    recovery = [p for t, p in pts if arrive <= t < arrive + 30]
    settled_pts = [p for t, p in pts if t >= run["duration"] - 20]
    settled = statistics.median(settled_pts) if settled_pts else float("nan")
    before = [p for t, p in pts if t < arrive]
    recover_s = None
    after = [(t, p) for t, p in pts if t >= arrive]
    for i in range(len(after)):
        window = [p for _, p in after[max(0, i - 4) : i + 1]]
        if i >= 4 and statistics.median(window) <= settled * 1.1:
            recover_s = round(after[i][0] - arrive, 1)
            break
    return {
        "strategy": run["strategy"],
        "seed": run["seed"],
        "before_p95_ms": round(statistics.median(before), 3) if before else None,
        "recovery_mean_p95_ms": round(statistics.fmean(recovery), 3) if recovery else None,
        "settled_p95_ms": round(settled, 3),
        "recover_s": recover_s,
        "moves": (run["speculator"] or {}).get("moves"),
        "final_shares": run["shares"][-1][1] if run["shares"] else None,
    }


def cmd_report(args: Any) -> int:
    runs = [json.loads(line) for line in Path(args.runs).read_text().splitlines() if line.strip()]
    out = Path(args.out)
    rows = [summarise(r) for r in runs]
    table = []
    for strategy in STRATEGIES:
        mine = [r for r in rows if r["strategy"] == strategy]
        if not mine:
            continue

        def med(key: str, rows: list[dict[str, Any]] = mine) -> float | None:
            vals = [r[key] for r in rows if r[key] is not None]
            return round(statistics.median(vals), 3) if vals else None

        table.append(
            {
                "strategy": strategy,
                "runs": len(mine),
                "recovery_mean_p95_ms": med("recovery_mean_p95_ms"),
                "settled_p95_ms": med("settled_p95_ms"),
                "recover_s": med("recover_s"),
                "recovered_runs": sum(r["recover_s"] is not None for r in mine),
                "final_shares": med("final_shares"),
                "per_run_recovery_p95_ms": [r["recovery_mean_p95_ms"] for r in mine],
                "per_run_recover_s": [r["recover_s"] for r in mine],
            }
        )
    (out / "summary.json").write_text(json.dumps({"table": table, "runs": rows}, indent=1) + "\n")
    for row in table:
        print(row)
    plot(runs, out / "recovery.png")
    return 0


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7, 5), sharex=True, height_ratios=[2, 1])
    colours = {"untuned": "tab:gray", "agent": "tab:blue", "agent+speculator": "tab:green", "speculator": "tab:orange"}
    seed = min(r["seed"] for r in runs)
    for r in runs:
        if r["seed"] != seed:
            continue
        t = [p[0] for p in r["points"]]
        ax.plot(t, [p[1] for p in r["points"]], label=r["strategy"], color=colours[r["strategy"]], lw=1.2)
        ax2.step(
            [s[0] for s in r["shares"]], [s[1] for s in r["shares"]], color=colours[r["strategy"]], lw=1.2, where="post"
        )
    arrive = runs[0]["arrive_at"]
    for a in (ax, ax2):
        a.axvline(arrive, color="k", ls=":", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylabel("probe p95 per second (ms)")
    ax.legend(fontsize=8, ncol=2)
    ax.set_title(f"antagonist arrives at t={arrive:g} s (seed {seed})", fontsize=9)
    ax2.set_yscale("log")
    ax2.set_ylabel("batch cpu.shares")
    ax2.set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ============================================================================ weight jump
# The second scenario (issue 17 item 5): a perturbation that always hurts, recovery measured
# from every request's own timestamp. See docs/speculator.md, "A perturbation that always hurts".
ARMS = ("agent", "speculator", "both")


@dataclass(frozen=True)
class JumpConfig:
    """One weight-jump run's parameters (the defaults are the documented scenario)."""

    low: int = 128
    """The batch job's cpu.shares before the jump, and the fix the agent knows."""
    high: int = 2048
    """The weight after the jump (the speculator's envelope ceiling in policies/speculate.toml)."""
    perturb_at_s: float = 4.0
    after_s: float = 35.0
    """How long each run goes on after the jump."""
    rate_hz: float = 1000.0
    work_us: float = 20.0
    batch_threads: int = 2
    slo_ms: float = 1.0
    """The speculator's target (rolling p99) and the recovery measure's SLO."""
    allowed: float = 0.01
    """Recovered = at most this share of requests over the SLO in the rolling window ..."""
    window_s: float = 1.0
    hold_s: float = 3.0
    """... at every step of a hold this long."""
    step_s: float = 0.1
    deliberate_s: tuple[float, float] = (10.0, 15.0)
    """The agent's deliberation per decision (uniform, seeded per round)."""
    spec_interval_s: float = 1.0


def rolling_share_over(
    times_s: Sequence[float] | FloatArray,
    lat_ms: Sequence[float] | FloatArray,
    grid_s: FloatArray,
    *,
    slo_ms: float,
    window_s: float,
) -> FloatArray:
    """At each grid time g, the share of requests scheduled in ``(g - window_s, g]`` whose latency is
    above ``slo_ms`` (timed-out requests carry inf); NaN where the window holds no request.
    ``times_s`` must be sorted."""
    t = np.asarray(times_s, dtype=float)
    over = np.concatenate([[0], np.cumsum(np.asarray(lat_ms, dtype=float) > slo_ms)])
    lo = np.searchsorted(t, grid_s - window_s, side="right")
    hi = np.searchsorted(t, grid_s, side="right")
    n = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (over[hi] - over[lo]) / n
    return np.where(n > 0, share, np.nan)


def _grid(start: float, stop: float, step_s: float) -> FloatArray:
    """``start, start + step_s, ...`` up to ``stop`` (included when it falls on the grid)."""
    grid: FloatArray = start + np.arange(math.floor((stop - start) / step_s + 1e-9) + 1, dtype=np.float64) * step_s
    return grid


def recovery_time(
    times_s: Sequence[float] | FloatArray,
    lat_ms: Sequence[float] | FloatArray,
    *,
    perturb_at: float,
    end: float,
    slo_ms: float,
    allowed: float = 0.01,
    window_s: float = 1.0,
    hold_s: float = 3.0,
    step_s: float = 0.1,
) -> float | None:
    """Seconds from ``perturb_at`` until the tail is back under the SLO for good: the first grid
    time T (``perturb_at + k * step_s``) such that at every grid time in ``[T, T + hold_s]`` the
    share of requests over ``slo_ms`` in the rolling ``window_s`` is at most ``allowed`` (for
    ``allowed=0.01``: the rolling p99 is within the SLO). None when that never happens with the hold
    complete by ``end`` (censored). A window with no request does not count as recovered.
    Resolution ``step_s``; the rolling window adds a lag of at most ``window_s``."""
    grid = _grid(perturb_at, end, step_s)
    steps = len(grid) - 1
    share = rolling_share_over(times_s, lat_ms, grid, slo_ms=slo_ms, window_s=window_s)
    ok = np.nan_to_num(share, nan=math.inf) <= allowed
    hold = round(hold_s / step_s)
    for k in range(0, steps - hold + 1):
        if ok[k : k + hold + 1].all():
            return round(k * step_s, 9)
    return None


def peak_share(
    times_s: Sequence[float] | FloatArray,
    lat_ms: Sequence[float] | FloatArray,
    *,
    start: float,
    stop: float,
    slo_ms: float,
    window_s: float = 1.0,
    step_s: float = 0.1,
) -> float:
    """The largest rolling share over the SLO at grid times in ``[start, stop]`` (did it hurt?)."""
    share = rolling_share_over(times_s, lat_ms, _grid(start, stop, step_s), slo_ms=slo_ms, window_s=window_s)
    return float(np.nanmax(share)) if np.isfinite(share).any() else math.nan


class RequestStream(_ChildLines):
    """The probe client in a child process (one open-loop run for the whole window); every
    request's scheduled wall time and latency, kept here as they arrive (timed out: inf)."""

    def __init__(
        self,
        address: str,
        seconds: float,
        rate_hz: float,
        *,
        cgroups: CgroupManager | None = None,
        cgroup: str | None = None,
    ) -> None:
        self.times: list[float] = []
        self.lat_ms: list[float] = []
        argv = [sys.executable, str(Path(__file__).resolve()), "requests", address, str(seconds), str(rate_hz)]
        super().__init__(argv, "probe-requests", cgroups=cgroups, cgroup=cgroup)

    def _take(self, d: dict[str, Any]) -> None:
        times, lat_us = d["t"], d["l"]  # both read before either list grows
        self.times.extend(times)
        self.lat_ms.extend(v / 1000 for v in lat_us)

    def wait_for_data(self, timeout_s: float) -> bool:
        """Wait (bounded) until the first requests are in; False when none came in time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if self.times:
                    return True
            time.sleep(0.02)
        return False

    def p99_since(self, start: float, stop: float) -> float | None:
        """p99 (ms) of the requests scheduled in ``(start, stop]`` answered so far."""
        with self.lock:
            lat = [v for t, v in zip(self.times[-5000:], self.lat_ms[-5000:], strict=True) if start < t <= stop]
        return float(np.percentile(lat, 99)) if len(lat) >= 50 else None

    def recent_p99(self, window_s: float = 1.0, lag_s: float = 0.15) -> float | None:
        now = time.time()
        return self.p99_since(now - lag_s - window_s, now - lag_s)

    def arrays(self) -> tuple[FloatArray, FloatArray]:
        with self.lock:
            t = np.asarray(self.times, dtype=float)
            lat = np.asarray(self.lat_ms, dtype=float)
        order = np.argsort(t, kind="stable")
        return t[order], lat[order]


def stream_requests(address: str, seconds: float, rate_hz: float) -> int:
    """Child mode: one open-loop client run; every 0.1 s a JSON line of the answered requests'
    scheduled wall times (``t``) and latencies in us (``l``, inf when timed out)."""
    wall0, perf0 = time.time(), time.perf_counter_ns()
    buf_t: list[float] = []
    buf_l: list[float] = []
    last = [time.monotonic()]

    def flush() -> None:
        print(json.dumps({"t": buf_t, "l": buf_l}), flush=True)
        buf_t.clear()
        buf_l.clear()
        last[0] = time.monotonic()

    def on_answer(seq: int, scheduled_ns: int, latency_us: float) -> None:
        buf_t.append(round(wall0 + (scheduled_ns - perf0) / 1e9, 6))
        buf_l.append(latency_us)
        if time.monotonic() - last[0] >= 0.1:
            flush()

    run_client(address, rate_hz, seconds, timeout_s=2.0, on_answer=on_answer)
    flush()
    return 0


def set_committed(service: Service, knob: str, value: int, actor: str) -> None:
    """Stage, apply and commit one value (no-op when the knob already shows it)."""
    if service.backend.read(knob).value == value:
        return
    staged = service.stage({knob: value}, actor=actor)
    service.apply(staged.tx.id, actor=actor)
    service.commit(staged.tx.id, actor=actor)


def jump_run(
    service: Service,
    knob: str,
    address: str,
    arm: str,
    cfg: JumpConfig,
    seed: int,
    *,
    round_no: int = 0,
    client_cgroup: tuple[CgroupManager, str] | None = None,
) -> dict[str, Any]:
    """One run of one arm: the knob starts at ``cfg.low``; at ``cfg.perturb_at_s`` its weight jumps
    to ``cfg.high`` (a committed write by actor ``perturbation``, through the service); the arm's
    actors react; every transaction is closed and the knob put back to ``cfg.low`` at the end."""
    rng = random.Random(seed)
    phase = rng.uniform(0.0, cfg.deliberate_s[1])
    deliberations = [rng.uniform(*cfg.deliberate_s) for _ in range(20)]
    set_committed(service, knob, cfg.low, "benchmark")
    stop = threading.Event()
    threads: list[threading.Thread] = []
    events: list[dict[str, Any]] = []
    spec: Speculator | None = None
    total = cfg.perturb_at_s + cfg.after_s
    cgroups, cgroup = client_cgroup if client_cgroup is not None else (None, None)
    s = RequestStream(address, total + 6.0, cfg.rate_hz, cgroups=cgroups, cgroup=cgroup)
    s.wait_for_data(5.0)  # the client's start-up (seconds under load) is not part of the run
    t0 = time.time()

    def log(**e: Any) -> None:
        events.append({"t": round(time.time() - t0, 3), **e})

    try:
        if arm in ("speculator", "both"):

            def signal() -> Signal | None:
                v = s.recent_p99()
                return None if v is None else Signal("probe_p99_ms", v, cfg.slo_ms, "ms")

            spec = Speculator(service, {knob: envelope_for(service, knob)}, signal, interval_s=cfg.spec_interval_s)

            def spec_tick() -> None:
                assert spec is not None
                service.expire_due()
                move = spec.step()
                if move is not None:
                    log(who="speculator", value=move.after)

            threads.append(every(lambda: cfg.spec_interval_s, stop, spec_tick))
        else:
            threads.append(every(lambda: 0.5, stop, service.expire_due))
        if arm in ("agent", "both"):

            def agent_loop() -> None:
                # observe, deliberate 10-15 s, act on what was observed; the first observation
                # at a random phase of the agent's cycle
                if stop.wait(phase):
                    return
                for think in deliberations:
                    seen = s.recent_p99()
                    seen_at = round(time.time() - t0, 3)
                    if stop.wait(think):
                        return
                    if seen is not None and seen > cfg.slo_ms:
                        try:
                            set_committed(service, knob, cfg.low, "agent")
                            log(who="agent", value=cfg.low, seen_p99_ms=seen, seen_at=seen_at)
                        except LumosError as e:
                            log(who="agent", error=e.code, seen_p99_ms=seen, seen_at=seen_at)
                    else:
                        log(who="agent", value=None, seen_p99_ms=seen, seen_at=seen_at)

            agent_thread = threading.Thread(target=agent_loop, daemon=True)
            agent_thread.start()
            threads.append(agent_thread)
        shares: list[tuple[float, int]] = []
        perturbed = False
        while (now := time.time() - t0) < total:
            if not perturbed and now >= cfg.perturb_at_s:
                set_committed(service, knob, cfg.high, "perturbation")
                perturbed = True
                log(who="perturbation", value=cfg.high, issued_at=round(now, 3))
            live = service.backend.read(knob).value
            assert isinstance(live, int)
            shares.append((round(now, 3), live))
            time.sleep(0.1)
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=10.0)
        status = spec.status() if spec is not None else None
        if spec is not None:
            spec.stop(revert=True)
        s.stop()
        restore(service, knob, cfg.low)
    times, lat = s.arrays()
    return {
        "scenario": "weight-jump",
        "arm": arm,
        "round": round_no,
        "seed": seed,
        "config": asdict(cfg),
        "perturb_at": perturbed_at(events, shares, cfg),
        "end": round(times[-1] - t0, 3) if times.size else 0.0,
        "agent_phase_s": round(phase, 3),
        "requests": [np.round(times - t0, 4).tolist(), np.round(lat, 4).tolist()],
        "shares": shares,
        "events": events,
        "speculator": status,
    }


def perturbed_at(events: Sequence[dict[str, Any]], shares: Sequence[Sequence[float]], cfg: JumpConfig) -> float:
    """When the jump was issued (the write starts then; under load the commit that follows can take
    a second): the event's ``issued_at``, else the first knob sample showing the high weight (sampled
    in the same loop just before the write), else the configured time."""
    for e in events:
        if e["who"] == "perturbation" and "issued_at" in e:
            return float(e["issued_at"])
    return next((float(t) for t, v in shares if v == cfg.high), cfg.perturb_at_s)


def jump_summary(run: dict[str, Any]) -> dict[str, Any]:
    """The recovery figures of one weight-jump run, from its timestamped requests."""
    cfg = JumpConfig(**{**run["config"], "deliberate_s": tuple(run["config"]["deliberate_s"])})
    t = np.asarray(run["requests"][0], dtype=float)
    lat = np.asarray(run["requests"][1], dtype=float)
    p, end = perturbed_at(run["events"], run["shares"], cfg), run["end"]
    measure = {"slo_ms": cfg.slo_ms, "window_s": cfg.window_s, "step_s": cfg.step_s}
    rec = recovery_time(t, lat, perturb_at=p, end=end, allowed=cfg.allowed, hold_s=cfg.hold_s, **measure)
    before = lat[(t > p - 3.0) & (t <= p)]
    tail = lat[t > end - 10.0]
    return {
        "arm": run["arm"],
        "round": run["round"],
        "recover_s": rec,
        "censored_at_s": round(float(end - p - cfg.hold_s), 3),
        "peak_share_first_s": round(peak_share(t, lat, start=p, stop=p + 1.0, **measure), 4),
        "before_share": round(float(np.mean(before > cfg.slo_ms)), 4) if before.size else None,
        "last10s_share": round(float(np.mean(tail > cfg.slo_ms)), 4) if tail.size else None,
        "requests": int(t.size),
        "agent_writes": sum(1 for e in run["events"] if e["who"] == "agent" and e.get("value") is not None),
        "speculator_moves": (run["speculator"] or {}).get("moves"),
    }


def compare_arms(rows: Sequence[dict[str, Any]], *, noisy_above: float = 0.01) -> dict[str, Any]:
    """Per arm the bootstrap median recovery time with its 95% interval (a censored run counts at its
    censoring time: a lower bound, which favours the slower arm); P(both beats agent) (the
    probability that both's median recovery is shorter); and the per-round speed-up agent/both."""
    by_arm: dict[str, list[float]] = {}
    by_round: dict[int, dict[str, float]] = {}
    for r in rows:
        value = r["recover_s"] if r["recover_s"] is not None else r["censored_at_s"]
        by_arm.setdefault(r["arm"], []).append(value)
        by_round.setdefault(r["round"], {})[r["arm"]] = value
    arms = {
        arm: {
            **asdict(bootstrap_median(values)),
            "censored": sum(1 for r in rows if r["arm"] == arm and r["recover_s"] is None),
            # runs whose 3 s before the jump already had more than 1% over the SLO: the host's own
            # noise, not the jump, set their tail (a loaded host); on a quiet one this is 0
            "noisy_baseline": sum(1 for r in rows if r["arm"] == arm and (r.get("before_share") or 0.0) > noisy_above),
            "per_run": values,
        }
        for arm, values in by_arm.items()
    }
    out: dict[str, Any] = {"arms": arms}
    agent = by_arm.get("agent", [])
    for other in ("both", "speculator"):
        if agent and by_arm.get(other):
            out[f"p_{other}_beats_agent"] = prob_beats(agent, by_arm[other])
            ratios = [d["agent"] / d[other] for d in by_round.values() if "agent" in d and other in d and d[other] > 0]
            out[f"speedup_agent_over_{other}"] = asdict(bootstrap_median(ratios))
    return out


def cmd_jump(args: Any) -> int:
    cfg = JumpConfig(after_s=args.after, perturb_at_s=args.perturb_at, slo_ms=args.slo_ms)
    arms = args.arms.split(",")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cg = CgroupManager(KernelRoot("/"))
    state = Path(args.state_dir) if args.state_dir else Path(tempfile.mkdtemp(prefix="lumos-spec-jump-"))
    with ArenaCgroups(cg, ["victim", "batch", "client"], parent=args.parent) as groups:
        knob = f"cgroup.{groups['batch']}.cpu_shares"
        service = Service(
            ServiceConfig(
                mode="live",
                state_dir=state,
                policy=ROOT / "policies" / "speculate.toml",
                host_root=Path("/"),
                cgroups=(groups["batch"], args.parent),
                perf=False,
            )
        )
        service.start()
        original = service.backend.read(knob).value
        assert isinstance(original, int)
        parent_knob = f"cgroup.{args.parent}.cpu_shares"
        parent_original = service.backend.read(parent_knob).value
        assert isinstance(parent_original, int)
        try:
            if args.parent_shares:
                # a shared host: the experiment's own parent group weighted up, so other users' load
                # (in the root group) moves the probe's tail less; it changes nothing on a quiet host
                set_committed(service, parent_knob, args.parent_shares, "benchmark")
            with (
                ProbeWorkload(cfg.rate_hz, cfg.work_us, groups["victim"], cgroups=cg) as probe,
                BatchWorkload(cfg.batch_threads, groups["batch"], cgroups=cg),
            ):
                time.sleep(args.warmup)
                for r in range(args.rounds):
                    for arm in arms:  # interleaved: A B C A B C ...; one seed per round, shared by its arms
                        print(f"[round {r + 1}/{args.rounds}] {arm} ...", file=sys.stderr, flush=True)
                        run = jump_run(
                            service,
                            knob,
                            probe.address,
                            arm,
                            cfg,
                            args.seed * 1000 + r,
                            round_no=r,
                            client_cgroup=(cg, groups["client"]),
                        )
                        run["loadavg"] = os.getloadavg()
                        with out.open("a") as f:
                            f.write(json.dumps(run) + "\n")
                        print(f"  {jump_summary(run)}", file=sys.stderr, flush=True)
        finally:
            restore(service, knob, original)
            restore(service, parent_knob, parent_original)
            service.close()
    print(f"journal and audit: {state}", file=sys.stderr)
    return 0


def cmd_jump_report(args: Any) -> int:
    runs = [json.loads(line) for line in Path(args.runs).read_text().splitlines() if line.strip()]
    rows = [jump_summary(r) for r in runs]
    compared = compare_arms(rows)
    result: dict[str, Any] = {
        "runs": rows,
        "compare": compared,
        "loadavg": [r.get("loadavg") for r in runs],
    }
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for arm, a in compared["arms"].items():
        print(
            f"{arm:>10}: recovery median {a['median']:.2f} s [{a['low']:.2f}, {a['high']:.2f}] "
            f"n={a['n']} censored={a['censored']} noisy baseline={a['noisy_baseline']} per run {a['per_run']}"
        )
    for key, value in compared.items():
        if key != "arms":
            print(f"{key}: {value}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--duration", type=int, default=70)
    r.add_argument("--arrive-at", type=float, default=10.0)
    r.add_argument("--target-ms", type=float, default=0.3)
    r.add_argument("--strategies", default=",".join(STRATEGIES))
    r.add_argument("--out", default=str(ROOT / "docs" / "speculator" / "runs.jsonl"))
    rep = sub.add_parser("report")
    rep.add_argument("--runs", default=str(ROOT / "docs" / "speculator" / "runs.jsonl"))
    rep.add_argument("--out", default=str(ROOT / "docs" / "speculator"))
    j = sub.add_parser("jump", help="the weight-jump scenario: agent / speculator / both, interleaved rounds")
    j.add_argument("--rounds", type=int, default=5)
    j.add_argument("--seed", type=int, default=1)
    j.add_argument("--arms", default=",".join(ARMS))
    j.add_argument("--after", type=float, default=JumpConfig.after_s, help="seconds each run goes on after the jump")
    j.add_argument("--perturb-at", type=float, default=JumpConfig.perturb_at_s)
    j.add_argument("--parent", default="lumos-speculate-jump")
    j.add_argument("--slo-ms", type=float, default=JumpConfig.slo_ms)
    j.add_argument(
        "--parent-shares", type=int, default=0, help="cpu.shares of the experiment's parent group (0: leave)"
    )
    j.add_argument("--warmup", type=float, default=2.0, help="seconds of probe and batch job before the first run")
    j.add_argument("--state-dir", default=None, help="the service's journal and audit (default: a new temp dir)")
    j.add_argument("--out", default=str(ROOT / "docs" / "speculator" / "jump-runs.jsonl"))
    jr = sub.add_parser("jump-report")
    jr.add_argument("--runs", default=str(ROOT / "docs" / "speculator" / "jump-runs.jsonl"))
    jr.add_argument("--out", default=str(ROOT / "docs" / "speculator" / "jump-summary.json"))
    rq = sub.add_parser("requests")
    rq.add_argument("address")
    rq.add_argument("seconds", type=float)
    rq.add_argument("rate_hz", type=float)
    st = sub.add_parser("stream")
    st.add_argument("address")
    st.add_argument("seconds", type=int)
    args = p.parse_args(argv)
    if args.cmd == "stream":
        return stream(args.address, 1000.0, args.seconds)
    if args.cmd == "report":
        return cmd_report(args)
    if args.cmd == "requests":
        return stream_requests(args.address, args.seconds, args.rate_hz)
    if args.cmd == "jump-report":
        return cmd_jump_report(args)
    if os.geteuid() != 0:
        print("needs root (live cgroup writes)", file=sys.stderr)
        return 2
    return cmd_jump(args) if args.cmd == "jump" else cmd_run(args)


if __name__ == "__main__":
    sys.exit(main())
