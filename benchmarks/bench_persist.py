"""The committed state's costs: journal size over many commits, and one drift check.

Method: on a fake reference host (``typical_host``), a transaction manager with the default
compaction threshold (256 KiB) applies and commits 2,000 changes, one knob each, cycling over 6
knobs (4 sysctls, THP, a block queue's read-ahead); the largest journal size seen and the size
after a final compaction are printed. Then the committed state is read from that journal and
drift is detected against the tree, 100 times; the mean is printed.

Run from the worktree root: ``python -m benchmarks.bench_persist``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from lumos_mcp.kernelfs.backend import Backend
from lumos_mcp.kernelfs.fake import typical_host
from lumos_mcp.knobs import default_catalog
from lumos_mcp.persist.drift import detect
from lumos_mcp.persist.state import committed_state
from lumos_mcp.txn import TransactionManager

COMMITS = 2000
CHECKS = 100
VALUES: dict[str, list[object]] = {
    "vm.swappiness": [10, 11],
    "vm.dirty_ratio": [30, 31],
    "vm.dirty_background_ratio": [5, 6],
    "kernel.sched_rr_timeslice_ms": [90, 92],
    "thp.enabled": ["never", "always"],
    "block.vda.read_ahead_kb": [256, 512],
}


def main() -> int:
    knobs = list(VALUES)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        fake = typical_host(base / "kernel")
        backend = Backend(fake.root, default_catalog())
        journal = base / "journal-live.jsonl"
        manager = TransactionManager(backend, journal)
        largest = 0
        for i in range(COMMITS):
            knob = knobs[i % len(knobs)]
            value = VALUES[knob][(i // len(knobs)) % 2]
            manager.commit(manager.apply(manager.stage({knob: value}).id, 60).id)
            largest = max(largest, journal.stat().st_size)
        manager.compact()
        manager.close()
        size = journal.stat().st_size
        start = time.perf_counter()
        for _ in range(CHECKS):
            report = detect(committed_state(base, "live", backend), backend, fake.base)
        mean_ms = (time.perf_counter() - start) * 1000 / CHECKS
    print(f"{COMMITS} commits over {len(knobs)} knobs: largest journal {largest:,} B, after compaction {size:,} B")
    print(f"committed state + drift check of {report.checked} knobs: {mean_ms:.2f} ms (mean of {CHECKS})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
