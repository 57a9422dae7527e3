"""Crash worker for tests/test_crash.py: runs one transaction scenario on a fake kernel tree and
sends itself SIGKILL at the N-th probe call.

    python crash_worker.py DIR SCENARIO KILL_AT

``DIR`` holds ``kernel/`` (a fake tree the test built) and ``journal``. ``KILL_AT`` counts probe
calls from 1; 0 never kills. Just before dying the worker writes the probe's label to
``DIR/killed-at``. A scenario that completes prints the JSON list of labels it passed and exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the worktree, whatever the cwd

from lumos_mcp.errors import ApplyFailedError
from lumos_mcp.kernelfs import KernelRoot
from lumos_mcp.kernelfs.backend import Backend
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.knobs import default_catalog
from lumos_mcp.txn import TransactionManager

# five knobs: two sysctls, a bracketed choice file, cpu_max written as two files on cgroup v1, and
# the slice of every task of cgroup batch (three tasks, one with its own slice: see add_tasks)
CHANGE: dict[str, object] = {
    "vm.swappiness": 10,
    "cgroup.batch.cpu_max": "50000 200000",
    "thp.enabled": "never",
    "kernel.sched_rr_timeslice_ms": 25,
    "task.cgroup:batch.slice_us": 300,
}


def add_tasks(fake: FakeKernel) -> None:
    """The tasks CHANGE's task knob selects (and one it must never touch)."""
    fake.task(100, comm="cruncher", cgroup="batch")
    fake.task(101, comm="cruncher", cgroup="batch", tgid=100, slice_ns=3_000_000)
    fake.task(110, comm="cruncher", cgroup="batch", nice=3)
    fake.task(200, comm="probe-srv", cgroup="")


FAILING_FILE = "proc/sys/kernel/sched_rr_timeslice_ms"  # the "fail" scenario makes it reject 25
SCENARIOS = ("apply", "commit", "revert", "fail", "expire", "compact", "guard")
OTHER = {"vm.dirty_ratio": 30}  # "compact": committed while CHANGE is open; its commit compacts the journal


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def main(directory: Path, scenario: str, kill_at: int) -> None:
    seen: list[str] = []

    def probe(label: str) -> None:
        seen.append(label)
        if len(seen) == kill_at:
            (directory / "killed-at").write_text(label)
            os.kill(os.getpid(), signal.SIGKILL)

    clock = Clock()
    backend = Backend(KernelRoot(directory / "kernel"), default_catalog())
    manager = TransactionManager(
        backend,
        directory / "journal",
        clock=clock,
        probe=probe,
        compact_after_bytes=1 if scenario == "compact" else 1 << 20,
    )
    backend.tasks.probe = lambda label: manager.probe(label)  # kill points between tasks too
    if scenario == "recover":
        manager.recover()
    elif scenario == "compact":
        manager.probe = lambda label: None  # CHANGE's apply is the "apply" scenario's: kill only from here on
        tx = manager.stage(CHANGE)
        manager.apply(tx.id, confirm_within_s=30)
        manager.probe = probe
        other = manager.stage(OTHER)
        manager.commit(manager.apply(other.id, confirm_within_s=30).id)
    else:
        tx = manager.stage(CHANGE)
        try:
            manager.apply(tx.id, confirm_within_s=30)
        except ApplyFailedError:
            if scenario != "fail":
                raise
        if scenario == "commit":
            manager.commit(tx.id)
        elif scenario == "revert":
            manager.revert(tx.id)
        elif scenario == "expire":
            clock.now += 31
            manager.expire_due()
        elif scenario == "guard":  # the service's guard revert: the deadline's path, now, for one txid
            manager.revert_armed("guard", only={tx.id})
    manager.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
