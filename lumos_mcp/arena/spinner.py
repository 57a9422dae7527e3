"""Built-in CPU consumers that need nothing installed.

    python -m lumos_mcp.arena.spinner batch --threads 2
        N worker processes spin and count work units in shared memory; every second the
        parent prints ``[ Ks ] thds: N eps: X`` (sysbench's format, so one parser reads both).
        One event is ``EVENT_ITERATIONS`` loop iterations.
    python -m lumos_mcp.arena.spinner neighbour --fraction 0.9 --period-ms 20
        an untuned best-effort consumer: each process spins for its share of every period
        and sleeps the rest (``ceil(fraction)`` processes).

Workers stop when their parent is gone, so a killed parent leaves nothing behind.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import multiprocessing.sharedctypes
import os
import sys
import time
from typing import Any

EVENT_ITERATIONS = 10_000


def _batch_worker(counts: Any, index: int, parent: int) -> None:
    while os.getppid() == parent:
        for _ in range(64):
            x = 0
            for i in range(EVENT_ITERATIONS):
                x += i
            counts[index] += 1


def _duty_worker(fraction: float, period_s: float, parent: int) -> None:
    busy_ns = int(fraction * period_s * 1e9)
    period_ns = int(period_s * 1e9)
    start = time.perf_counter_ns()
    while os.getppid() == parent:
        spin_end = start + busy_ns
        while time.perf_counter_ns() < spin_end:
            pass
        start += period_ns
        now = time.perf_counter_ns()
        if start > now:
            time.sleep((start - now) / 1e9)
        else:
            start = now  # fell behind (starved): do not try to catch up


def run_batch(threads: int) -> None:
    """Spin ``threads`` processes forever, printing events per second each second.

    Raises:
        ValueError: ``threads`` < 1.
    """
    if threads < 1:
        raise ValueError("threads must be >= 1")
    ctx = multiprocessing.get_context("fork")
    counts = multiprocessing.sharedctypes.RawArray("Q", threads)
    me = os.getpid()
    workers = [ctx.Process(target=_batch_worker, args=(counts, i, me), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    last_total = 0
    last_t = time.monotonic()
    second = 0
    while True:
        time.sleep(max(0.0, last_t + 1.0 - time.monotonic()))
        now = time.monotonic()
        total = sum(counts)
        second += 1
        print(f"[ {second}s ] thds: {threads} eps: {(total - last_total) / (now - last_t):.2f}", flush=True)
        last_total, last_t = total, now


def run_neighbour(fraction: float, period_ms: float) -> None:
    """Consume ``fraction`` CPUs in duty cycles of ``period_ms`` until killed.

    Raises:
        ValueError: ``fraction`` not in (0, 64] or ``period_ms`` not positive.
    """
    if not 0 < fraction <= 64 or period_ms <= 0:
        raise ValueError("fraction must be in (0, 64] and period_ms > 0")
    n = math.ceil(fraction)
    ctx = multiprocessing.get_context("fork")
    me = os.getpid()
    workers = [
        ctx.Process(target=_duty_worker, args=(fraction / n, period_ms / 1000.0, me), daemon=True) for _ in range(n)
    ]
    for w in workers:
        w.start()
    print("ready", flush=True)
    while all(w.is_alive() for w in workers):
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring).

    Raises:
        SystemExit: bad arguments.
    """
    parser = argparse.ArgumentParser(prog="python -m lumos_mcp.arena.spinner")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("batch")
    b.add_argument("--threads", type=int, default=2)
    n = sub.add_parser("neighbour")
    n.add_argument("--fraction", type=float, default=0.9)
    n.add_argument("--period-ms", type=float, default=20.0)
    args = parser.parse_args(argv)
    if args.cmd == "batch":
        run_batch(args.threads)
    else:
        run_neighbour(args.fraction, args.period_ms)
    return 0


__all__ = ["EVENT_ITERATIONS", "main", "run_batch", "run_neighbour"]

if __name__ == "__main__":
    sys.exit(main())
