"""Wall time of a good canary rollout to N simulated hosts, and where it goes.

    python -m benchmarks.bench_fleet --hosts 8 32

Each host is a lumos-mcp server in sandbox mode on its own loopback port (benchmarks/fleet_sim.py);
the playbook is the collection's canary (waves [1, "25%", "100%"], a 1 s measuring window, the
simulated app probe and its regression check). A callback (benchmarks/fleet_callbacks) records
each task's wall time per host and the time its module spent in calls to the server. Printed per
fleet size:

- wall_s: the playbook's wall time (servers already running);
- host_task_s: the sum over hosts and tasks of each task's wall time (tasks of one wave run in
  parallel, so this exceeds wall_s);
- lumos_call_s: the part of it the modules spent in calls to lumos-mcp (connect, MCP session, the
  tool: stage, apply, read_telemetry, commit...), of which window_s is the measuring window the
  playbook asks for (1 s per host; a wait, not work);
- ansible_s: the rest: Ansible's own work per task (templating, building and starting the module
  process, the module's imports), and tasks with no call to a server.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.fleet_sim import PROBE_TASKS, Fleet

MEASURE_S = 1


def rollout(n: int, root: Path) -> dict[str, Any]:
    fleet = Fleet(root, n)
    timing = root / "timing.jsonl"
    try:
        started = time.monotonic()
        fleet.start(timeout_s=max(120.0, 20.0 * n))  # 32 servers starting at once took over 120 s here
        start_s = time.monotonic() - started
        fleet.wait_for_telemetry(60)  # each server's buffer covers lumos_app_window_s (not timed)
        extra = {
            "lumos_changes": {"vm.swappiness": 31},
            "lumos_measure_s": MEASURE_S,
            "lumos_app_window_s": 60,
            "lumos_app_metric": "app.p99_ms",
            "lumos_measure_tasks": str(PROBE_TASKS),
            "lumos_confirm_within_s": 600,
        }
        t0 = time.monotonic()
        run = fleet.run_playbook(extra, timing_log=timing, timeout_s=3600)
        wall = time.monotonic() - t0
        failures = [line for line in run.stdout.splitlines() if line.startswith("fatal: ")]
        committed = sum(fleet.value(h, "vm.swappiness") == 31 for h in fleet.hosts)
    finally:
        fleet.stop()
    rows = [json.loads(line) for line in timing.read_text().splitlines()]
    task_s = sum(r["wall_s"] or 0 for r in rows)
    call_s = sum(r["lumos_call_s"] or 0 for r in rows)
    window_s = n * MEASURE_S
    return {
        "hosts": n,
        "committed": committed,
        "returncode": run.returncode,
        "failures": [f[:300] for f in failures],
        "servers_start_s": round(start_s, 1),
        "wall_s": round(wall, 1),
        "wall_per_host_s": round(wall / n, 2),
        "host_task_s": round(task_s, 1),
        "lumos_call_s": round(call_s, 1),
        "window_s": window_s,
        "ansible_s": round(task_s - call_s, 1),
        "lumos_share": round(call_s / task_s, 3),
        "lumos_share_without_window": round((call_s - window_s) / (task_s - window_s), 3),
        "module_runs": sum(1 for r in rows if r["lumos_call_s"] is not None),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hosts", type=int, nargs="+", default=[8, 32])
    args = p.parse_args()
    for n in args.hosts:
        root = Path(tempfile.mkdtemp(prefix=f"lumos-fleet-{n}-"))
        try:
            print(json.dumps(rollout(n, root)), flush=True)
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
