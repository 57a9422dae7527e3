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
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lumos_mcp.arena import procs
from lumos_mcp.arena.probe import run_client
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


class Stream:
    """The probe client in a child process; per-second p95 kept here."""

    def __init__(self, address: str, seconds: int) -> None:
        argv = [sys.executable, str(Path(__file__).resolve()), "stream", address, str(seconds)]
        self.proc = procs.spawn(argv, workload="probe-stream", env=procs.python_env())
        self.points: list[tuple[float, float, float]] = []  # (wall t, p95 ms, p99 ms)
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with contextlib.suppress(ValueError, KeyError):
                d = json.loads(raw)
                with self.lock:
                    self.points.append((d["t"], d["p95_us"] / 1000, d["p99_us"] / 1000))

    def latest(self, max_age_s: float = 2.5) -> float | None:
        with self.lock:
            if not self.points or time.time() - self.points[-1][0] > max_age_s:
                return None
            return self.points[-1][1]

    def since(self, t: float) -> list[float]:
        with self.lock:
            return [p for (ts, p, _) in self.points if ts > t]

    def stop(self) -> None:
        procs.stop(self.proc, grace_s=2.0)
        self.thread.join(timeout=5.0)


# ---------------------------------------------------------------------------- actors
def every(period: Callable[[], float], stop: threading.Event, body: Callable[[], None]) -> threading.Thread:
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
    st = sub.add_parser("stream")
    st.add_argument("address")
    st.add_argument("seconds", type=int)
    args = p.parse_args(argv)
    if args.cmd == "stream":
        return stream(args.address, 1000.0, args.seconds)
    if args.cmd == "report":
        return cmd_report(args)
    if os.geteuid() != 0:
        print("needs root (live cgroup writes)", file=sys.stderr)
        return 2
    return cmd_run(args)


if __name__ == "__main__":
    sys.exit(main())
