"""CPU cost of evaluating guards once per telemetry sample, as ratios within one run.

Method: an in-process ``Service`` in sandbox mode (it reads this host's /proc, writes only its
sandbox tree) with a policy of N guards that never trip, one change applied and armed, and
an app metric whose ring is full (3600 points, two a second, as after half an hour of a client
reporting at 2 Hz). Telemetry runs on a fake clock: each round reads one real snapshot of the
host (``Sampler.read``; ``--gap-ms`` of real time after the previous one, so its counters
moved) stamped one second after the previous one and pushes it, then times, in CPU
time of the calling thread (``time.thread_time``):

- ``check_guards``: what the server does per new sample (the guard path of ``Service``: the
  armed changes' watches, the new sample pair, the guards' paths read, the rule engine);
- ``full signature``: what it did before (``signature_between`` over the same pair and the
  same paths looked up in it);
- ``sampler read``: the sampler's own per-sample work (reading /proc), for scale.

The three run interleaved, round after round, so load from neighbours falls on all alike;
the ratios are the figures to compare across machines, and ``% of a core at 1 Hz`` is the
check's CPU seconds per evaluation x 1 sample per second x 100.

Run from the worktree root: ``python -m benchmarks.bench_guard_cost`` (``--rounds``,
``--guards``, about 2 minutes; ``--json`` to write the figures).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.report import command_line, conditions, table
from lumos_mcp.guards import lookup
from lumos_mcp.service import Service, ServiceConfig
from lumos_mcp.txn import TxState

SECTION = "Guard evaluation cost"
GOAL_PCT_AT_1HZ = 0.05
APP_POINTS = 3600
# the guards, in the order N of them are used: the first is bench_guards' (an app metric's tail),
# the others one per /proc section a guard is likely to watch
GUARD_PATHS = (
    "app.probe_p99_ms.last",
    "psi.cpu.some.avg10_pct",
    "cpu.total.util_pct",
    "memory.available_mib",
    "sched.procs_running",
)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def policy_text(paths: tuple[str, ...]) -> str:
    rules = "".join(f'[[guards.rules]]\nmetric = "{p}"\nop = "<="\nvalue = 1e15\nhold_samples = 2\n' for p in paths)
    return f"""name = "bench-guard-cost"
[global]
confirm_within_s = 3600
[knobs."vm.swappiness"]
min = 0
max = 100
approval = "never"
[guards]
baseline_samples = 5
{rules}"""


def cpu_s(fn: Callable[[], Any]) -> float:
    t0 = time.thread_time()
    fn()
    return time.thread_time() - t0


def measure(n_guards: int, rounds: int, state: Path, gap_s: float) -> dict[str, Any]:
    paths = GUARD_PATHS[:n_guards]
    policy = state / f"policy-{n_guards}.toml"
    policy.write_text(policy_text(paths))
    service = Service(
        ServiceConfig(mode="sandbox", state_dir=state / f"state-{n_guards}", policy=policy, perf=False),
    )
    service.start()
    try:
        telemetry = service.telemetry
        clock = Clock(1_000_000.0)
        telemetry.clock = telemetry.app.clock = telemetry.sampler.clock = telemetry.sampler.wall_clock = clock
        for _ in range(APP_POINTS):  # the app metric's ring, full: two reports a second
            clock.now += 0.5
            telemetry.report_app_metric("probe_p99_ms", 1.0 + (clock.now % 7) / 10, "ms")
        for _ in range(6):  # the baseline's samples
            clock.now += 1.0
            telemetry.report_app_metric("probe_p99_ms", 1.0, "ms")
            time.sleep(gap_s)
            telemetry.sampler.sample_once()
        tx = service.apply(service.stage({"vm.swappiness": 59}).tx.id)
        watch = service._watches[tx.id]
        cost: dict[str, list[float]] = {"check_guards": [], "full signature": [], "sampler read": []}
        for _ in range(rounds):
            clock.now += 0.5
            telemetry.report_app_metric("probe_p99_ms", 1.0, "ms")
            clock.now += 0.5
            telemetry.report_app_metric("probe_p99_ms", 1.0, "ms")
            time.sleep(gap_s)  # real counters move between the reads (a CPU tick is 10 ms)
            snap: list[Any] = []
            cost["sampler read"].append(cpu_s(lambda snap=snap: snap.append(telemetry.sampler.read())))
            telemetry.sampler.push(snap[0])
            before = watch.samples_seen
            cost["check_guards"].append(cpu_s(service.check_guards))
            assert watch.samples_seen == before + 1, "one new sample per round, evaluated once"
            a, b = telemetry.sampler.newest(2)
            cost["full signature"].append(
                cpu_s(lambda a=a, b=b: [lookup(telemetry.signature_between(a.wall, b.wall), p) for p in paths])
            )
        assert tx.state is TxState.APPLIED
    finally:
        service.shutdown("benchmark_end")
        service.close()
    mean = {k: statistics.fmean(v) for k, v in cost.items()}
    return {
        "guards": n_guards,
        "paths": list(paths),
        "rounds": rounds,
        "cpu_s_per_eval": mean["check_guards"],
        "cpu_s_per_eval_p50": statistics.median(cost["check_guards"]),
        "full_signature_cpu_s": mean["full signature"],
        "sampler_read_cpu_s": mean["sampler read"],
        "ratio_to_full_signature": mean["check_guards"] / mean["full signature"],
        "ratio_to_sampler_read": mean["check_guards"] / mean["sampler read"],
        "pct_of_core_at_1hz": 100.0 * mean["check_guards"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_guard_cost")
    parser.add_argument("--rounds", type=int, default=2000, help="evaluations per guard count (default 2000)")
    parser.add_argument("--guards", type=int, nargs="+", default=[1, 5], help="guard counts (1..5; default 1 5)")
    parser.add_argument("--gap-ms", type=float, default=20.0, help="real time between two reads (default 20)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if any(not 1 <= n <= len(GUARD_PATHS) for n in args.guards):
        parser.error(f"--guards takes 1..{len(GUARD_PATHS)}")
    with tempfile.TemporaryDirectory(prefix="lumos-bench-guard-cost-") as tmp:
        results = [measure(n, args.rounds, Path(tmp), args.gap_ms / 1000) for n in args.guards]
    rows = [
        [
            str(r["guards"]),
            f"{r['cpu_s_per_eval'] * 1e6:.1f} µs",
            f"{r['cpu_s_per_eval_p50'] * 1e6:.1f} µs",
            f"{r['pct_of_core_at_1hz']:.4f}%",
            f"{r['ratio_to_full_signature']:.3f}",
            f"{r['ratio_to_sampler_read']:.3f}",
        ]
        for r in results
    ]
    header = ("guards", "CPU per evaluation (mean)", "p50", "% of a core at 1 Hz", "/ full signature", "/ sampler read")
    command = command_line("benchmarks.bench_guard_cost", sys.argv[1:] if argv is None else argv)
    print(f"## {SECTION}\n\n{conditions()}\n- Command: `{command}`")
    print(f"- Goal: under {GOAL_PCT_AT_1HZ}% of a core at 1 Hz\n")
    print(table(header, rows))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
