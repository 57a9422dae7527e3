"""CPU cost of the telemetry sampler (with perf stat) at 1 Hz and 10 Hz, and read_telemetry latency.

Method: each condition runs in a fresh subprocess of this module (``--child``) that does
nothing but the condition: ``idle`` imports the same modules and waits on stdin; ``1 Hz``
and ``10 Hz`` run ``Telemetry.running()`` over the real host (as ``Service`` builds it:
no cgroups, ``PerfStat`` with the same interval when perf is installed). Once the child
says it is running, and after a settling pause, the parent reads the CPU time (user +
system, psutil) of the child and of its descendants (the ``perf stat`` process) at the
start and end of ``--seconds`` of wall time. CPU seconds / wall seconds x 100 is the cost
as % of one core; the idle harness's figure is subtracted. Start-up (imports, the first
snapshot, forking perf) is outside the measured span.

Not counted: work the kernel does on behalf of perf's system-wide counters in other tasks'
context (software events are counted in the scheduler's own paths, on every CPU).

Then ``read_telemetry`` latency as a ratio to a no-op tool call on the same in-memory
server in the same run (bench_tools' loop), at both sampling rates.

Run from the worktree root: ``python -m benchmarks.bench_sampler`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import psutil

from benchmarks import bench_tools
from benchmarks.report import ROOT, command_line, conditions, percentile, table, write_section
from lumos_mcp.kernelfs import KernelRoot
from lumos_mcp.telemetry.facade import Telemetry
from lumos_mcp.telemetry.perf import PerfStat

SECTION = "Telemetry cost"
TARGET_PCT_AT_1HZ = 0.5
CONDITIONS: dict[str, float | None] = {"idle (sampler off)": None, "1 Hz": 1.0, "10 Hz": 0.1}


# --------------------------------------------------------------------------- the child
async def _child(interval_s: float | None, use_perf: bool) -> dict[str, object]:
    if interval_s is None:
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        return {"samples": 0, "perf_intervals": 0, "perf_unavailable": {}}
    perf = PerfStat(interval_ms=int(interval_s * 1000)) if use_perf and shutil.which("perf") else None
    telemetry = Telemetry(KernelRoot(Path("/")), interval_s=interval_s, perf=perf)
    async with telemetry.running():
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        return {
            "samples": len(telemetry.sampler.samples()),
            "perf_intervals": len(perf.intervals()) if perf is not None else 0,
            "perf_unavailable": perf.unavailable if perf is not None else {"perf": "disabled or not installed"},
        }


def child_main(interval_s: float | None, use_perf: bool) -> int:
    print(json.dumps(anyio.run(_child, interval_s, use_perf)), flush=True)
    return 0


# --------------------------------------------------------------------------- the parent
@dataclass(frozen=True)
class Cost:
    condition: str
    interval_s: float | None
    wall_s: float
    python_cpu_s: float
    perf_cpu_s: float
    samples: int
    perf_intervals: int

    @property
    def total_pct(self) -> float:
        return 100.0 * (self.python_cpu_s + self.perf_cpu_s) / self.wall_s


def _cpu(proc: psutil.Process) -> tuple[float, dict[tuple[int, float], float]]:
    """CPU seconds of ``proc`` and of each live descendant (keyed by pid and start time)."""
    t = proc.cpu_times()
    own = t.user + t.system
    kids = {}
    for child in proc.children(recursive=True):
        try:
            ct = child.cpu_times()
            kids[(child.pid, child.create_time())] = ct.user + ct.system
        except psutil.NoSuchProcess:
            continue
    return own, kids


def measure_condition(name: str, interval_s: float | None, seconds: float, settle_s: float, use_perf: bool) -> Cost:
    args = [sys.executable, "-m", "benchmarks.bench_sampler", "--child"]
    if interval_s is not None:
        args += ["--interval-s", str(interval_s)]
    if not use_perf:
        args.append("--no-perf")
    with psutil.Popen(args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the {name} child did not start")
            time.sleep(settle_s)
            own0, kids0 = _cpu(proc)
            t0 = time.monotonic()
            time.sleep(seconds)
            own1, kids1 = _cpu(proc)
            wall = time.monotonic() - t0
            proc.stdin.write("stop\n")
            proc.stdin.flush()
            report = json.loads(proc.stdout.readline())
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    perf = sum(v - kids0[k] for k, v in kids1.items() if k in kids0)
    return Cost(name, interval_s, wall, own1 - own0, perf, int(report["samples"]), int(report["perf_intervals"]))


HEADER = (
    "condition",
    "wall s",
    "samples",
    "perf intervals",
    "python % of a core",
    "perf % of a core",
    "total % of a core",
    "minus idle",
)


def render(
    costs: list[Cost],
    latency: dict[float, dict[str, list[int]]],
    argv: Sequence[str],
    args: argparse.Namespace,
    perf_used: bool,
) -> str:
    idle = next(c for c in costs if c.interval_s is None)
    rows = []
    for c in costs:
        rows.append(
            [
                c.condition,
                f"{c.wall_s:.1f}",
                str(c.samples),
                str(c.perf_intervals),
                f"{100 * c.python_cpu_s / c.wall_s:.3f}",
                f"{100 * c.perf_cpu_s / c.wall_s:.3f}",
                f"{c.total_pct:.3f}",
                "" if c.interval_s is None else f"{c.total_pct - idle.total_pct:.3f}",
            ]
        )
    one_hz = next(c for c in costs if c.interval_s == 1.0)
    net = one_hz.total_pct - idle.total_pct
    verdict = (
        f"**Target (at most {TARGET_PCT_AT_1HZ}% of one core at 1 Hz): "
        f"{'met' if net <= TARGET_PCT_AT_1HZ else 'NOT met'}** ({net:.3f}% net of the idle harness)."
    )
    lat_rows = []
    for interval_s, times in latency.items():
        base50, base99 = percentile(times["noop"], 50), percentile(times["noop"], 99)
        for row in ("noop", "read_telemetry", bench_tools.UNVALIDATED):
            p50, p99 = percentile(times[row], 50), percentile(times[row], 99)
            lat_rows.append(
                [
                    row,
                    f"{1 / interval_s:g} Hz",
                    str(len(times[row])),
                    f"{p50 / 1e6:.3f}",
                    f"{p99 / 1e6:.3f}",
                    f"{p50 / base50:.1f}",
                    f"{p99 / base99:.1f}",
                ]
            )
    command = command_line("benchmarks.bench_sampler", argv)
    return "\n\n".join(
        [
            f"Command (from the worktree root):\n\n```\n{command}\n```",
            conditions(),
            f"- Settings: {args.seconds:g} s measured per condition after {args.settle_s:g} s of settling, "
            f"each in a fresh subprocess; perf stat {'on (software events count here)' if perf_used else 'off'}; "
            "telemetry over the real host, no cgroups (as in sandbox mode).",
            "- Method: psutil CPU time (user + system) of the harness process and, separately, of its "
            "descendants (the perf stat child), over the measured wall time; `minus idle` subtracts the "
            "same harness with the sampler off. Kernel work for perf's system-wide counters done in "
            "other tasks' context is not attributed to any of these processes.",
            table(HEADER, rows),
            verdict,
            f"read_telemetry(window_s={args.window_s:g}) against a no-op tool on the same in-memory server, "
            f"same run ({args.calls} calls each after {args.warmup} warm-up calls, interleaved; buffer warm, "
            "trends included):",
            table(("operation", "sampling", "calls", "p50 ms", "p99 ms", "p50 / noop p50", "p99 / noop p99"), lat_rows),
        ]
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--seconds", type=float, default=60.0, help="measured wall time per condition (default 60)")
    p.add_argument("--settle-s", type=float, default=3.0, help="pause after start-up before measuring (default 3)")
    p.add_argument("--calls", type=int, default=300, help="timed read_telemetry and noop calls per rate (default 300)")
    p.add_argument("--warmup", type=int, default=30, help="untimed calls of each first (default 30)")
    p.add_argument("--window-s", type=float, default=2.0, help="read_telemetry window in seconds (default 2)")
    p.add_argument("--no-perf", action="store_true", help="sample without perf stat")
    p.add_argument("--quick", action="store_true", help="2 s per condition, a few calls, no doc update")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="a markdown file whose section this run rewrites, e.g. docs/benchmarks.md (default: print only)",
    )
    p.add_argument("--no-doc", action="store_true", help=argparse.SUPPRESS)  # the default now: print only
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--interval-s", type=float, default=None, help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.child:
        return child_main(args.interval_s, not args.no_perf)
    if args.quick:
        args.seconds, args.settle_s, args.calls, args.warmup = 2.0, 0.5, 6, 2
    use_perf = not args.no_perf
    costs = [measure_condition(name, iv, args.seconds, args.settle_s, use_perf) for name, iv in CONDITIONS.items()]
    latency = {}
    for interval_s in (1.0, 0.1):
        latency[interval_s] = anyio.run(
            bench_tools.run_transport,
            "memory",
            args.calls,
            args.warmup,
            1 if args.quick else 10,
            args.window_s,
            ("noop", "read_telemetry", bench_tools.UNVALIDATED),
            interval_s,
        )
    body = render(costs, latency, argv, args, use_perf and shutil.which("perf") is not None)
    print(f"## {SECTION}\n\n{body}")
    if args.out is not None and not (args.quick or args.no_doc):
        write_section(SECTION, body, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
