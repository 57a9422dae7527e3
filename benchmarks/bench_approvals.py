"""``lumos-mcp approvals list`` over a store that has seen 3,000 approvals.

Method: a store file is written with 3,000 approvals as two busy days leave them (10
pending, the rest used, denied or expired, one every 57 s). ``approvals list`` and
``approvals list --all`` are run in-process through ``lumos_mcp.cli.main`` (interpreter start
not counted), stdout captured, 5 times each; the median is shown. Then one approval is
requested (a write, which prunes closed approvals beyond the retention rules) and both are
timed again.

Run from the worktree root: ``python -m benchmarks.bench_approvals``.
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from lumos_mcp import cli
from lumos_mcp.approvals import ApprovalStore

TOTAL = 3000
LIVE = 10
RUNS = 5


def write_history(state: Path, now: float) -> None:
    approvals = []
    for i in range(TOTAL):
        t = now - 2 * 86400 + i * 57.0
        live = i >= TOTAL - LIVE
        status = "pending" if live else ("used", "denied", "expired")[i % 3]
        decided = status in ("used", "denied")
        approvals.append(
            {
                "id": f"ap-{i:08x}",
                "txid": f"tx-{i:08x}",
                "digest": "sha256:" + "ab" * 32,
                "summary": f"[sandbox] vm.swappiness: 60 -> {i % 90 + 10}",
                "requested_by": "agent",
                "created_at": t,
                "expires_at": now + 600 if live else t + 600,
                "status": status,
                "decided_by": "operator" if decided else None,
                "decided_at": t + 30 if decided else None,
                "note": "",
                "used_at": t + 60 if status == "used" else None,
            }
        )
    path = state / "approvals.json"
    path.write_bytes(orjson.dumps({"version": 1, "approvals": approvals}))
    os.chmod(path, 0o600)


def median_ms(state: Path, *args: str) -> float:
    runs = []
    for _ in range(RUNS):
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            cli.main(["approvals", "--state-dir", str(state), "list", *args])
        runs.append(time.perf_counter() - start)
    return statistics.median(runs) * 1000


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        state.mkdir(mode=0o700)
        write_history(state, time.time())
        store = ApprovalStore(state)
        rows = [("3,000 in the file (no write yet)", len(store.list()), median_ms(state), median_ms(state, "--all"))]
        store.request("tx-new", "sha256:" + "cd" * 32, "[sandbox] vm.swappiness: 60 -> 50", lifetime_s=600)
        rows.append(("after one write (pruned)", len(store.list()), median_ms(state), median_ms(state, "--all")))
    print("| store | approvals kept | `list` median (ms) | `list --all` median (ms) |")
    print("|---|---|---|---|")
    for name, kept, pending, everything in rows:
        print(f"| {name} | {kept} | {pending:.0f} | {everything:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
