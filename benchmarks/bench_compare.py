"""CPU time of one ``compare_windows`` comparison (``compare_app_windows``: window samples
gathered, then the bootstrap of ``lumos_mcp.compare``) for windows of n samples a side.

Method: lognormal latencies (the same distribution on both sides, seed 1) reported as two
batches 60 s apart on a fake clock; each comparison is timed with ``time.process_time`` (CPU
of this process, so a loaded machine changes the figure less than wall time would), the
median of ``--repeats`` runs per row. Past ``MAX_COMPARED`` samples a side the comparison
thins the window, so larger windows cost the same.

Run from the worktree root: ``python -m benchmarks.bench_compare`` (``--quick``: small windows).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import numpy as np

from lumos_mcp.telemetry.app import MAX_BATCH, AppMetrics, compare_app_windows

HEADER = ("n a side", "statistic", "CPU s (median)", "verdict")


class _Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


def _app(n: int) -> AppMetrics:
    app = AppMetrics(_Clock())
    rng = np.random.default_rng(1)
    for age in (90.0, 30.0):
        for start in range(0, n, MAX_BATCH):
            size = min(MAX_BATCH, n - start)
            app.report_samples("lat", rng.lognormal(1, 0.5, size).tolist(), "ms", ages_s=[age] * size)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="windows of 100 and 1,000 samples, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    sizes = (100, 1_000) if args.quick else (1_000, 10_000, 50_000)
    repeats = 1 if args.quick else args.repeats
    print("## compare_windows CPU time\n")
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for n in sizes:
        app = _app(n)
        for stat in ("median", "p99"):
            times, verdict = [], ""
            for _ in range(repeats):
                t0 = time.process_time()
                found = compare_app_windows(app, "lat", (120.0, 60.0), (60.0, 0.0), statistic=stat)
                times.append(time.process_time() - t0)
                verdict = found.comparison.verdict
            print(f"| {n:,} | {stat} | {statistics.median(times):.2f} | {verdict} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
