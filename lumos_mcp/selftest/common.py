"""What every part of the self-test shares: a fake kernel, a permissive-but-bounded policy,
a service over them, and a snapshot of the tree to prove what was (not) written."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lumos_mcp.kernelfs.fake import typical_host
from lumos_mcp.kernelfs.root import TMP_PREFIX
from lumos_mcp.service import Service, ServiceConfig

# The knobs the self-test moves, with the bounds its policy sets (writes outside them are bugs).
BOUNDS: dict[str, tuple[int, int]] = {
    "vm.swappiness": (0, 100),
    "vm.dirty_ratio": (5, 50),
    "vm.dirty_background_ratio": (1, 40),
    "cgroup.batch.cpu_shares": (2, 10240),
    "kernel.sched_rr_timeslice_ms": (10, 1000),
}
# Task knobs (the crash test moves them too): they have no listing, their selector is the
# caller's, so the self-test reads them by name; their state lives in the fake's task table.
TASK_BOUNDS: dict[str, tuple[int, int]] = {
    "task.cgroup:batch.slice_us": (100, 5000),
    "task.comm:cruncher.nice": (0, 19),
}
APPROVAL_ALWAYS = frozenset({"kernel.sched_rr_timeslice_ms"})

POLICY = """\
# The self-test's policy: a few knobs, wide steps, no cooldowns, one knob needing approval.
name = "selftest"
description = "policy of lumos-mcp selftest"

[global]
confirm_within_s = 60
max_confirm_within_s = 86400
approval_lifetime_s = 300
commits_per_hour = 1000000

[knobs."vm.swappiness"]
min = 0
max = 100
approval = "never"

[knobs."vm.dirty_ratio"]
min = 5
max = 50
approval = "never"

[knobs."vm.dirty_background_ratio"]
min = 1
max = 40
approval = "never"

[knobs."cgroup.*.cpu_shares"]
min = 2
max = 10240
approval = "never"

[knobs."kernel.sched_rr_timeslice_ms"]
min = 10
max = 1000
approval = "always"

[knobs."task.*.slice_us"]
min = 100
max = 5000
approval = "never"

[knobs."task.*.nice"]
min = 0
max = 19
approval = "never"

[[cross]]
rule = "less_than"
left = "vm.dirty_background_ratio"
right = "vm.dirty_ratio"
"""


@dataclass
class Bed:
    """A test bed: fake kernel tree, state directory and policy file under ``base``."""

    base: Path
    tree: Path
    state_dir: Path
    policy: Path

    def config(self, **kw: Any) -> ServiceConfig:
        return ServiceConfig(
            mode="live",  # live on a fake host_root: writes go to the fake tree, never the host
            state_dir=kw.pop("state_dir", self.state_dir),
            policy=self.policy,
            host_root=self.tree,
            telemetry_root=self.tree,
            cgroups=("batch",),
            perf=False,
            telemetry_interval_s=0.2,
            **kw,
        )

    def service(
        self,
        *,
        clock: Callable[[], float] = time.time,
        probe: Callable[[str], None] | None = None,
        start: bool = True,
        **kw: Any,
    ) -> Service:
        service = Service(self.config(**kw), clock=clock, probe=probe)
        if start:
            service.start()
        return service


def make_bed(base: Path) -> Bed:
    """A fresh bed: the reference host's fake tree, an empty state dir, the self-test policy."""
    base.mkdir(parents=True, exist_ok=True)
    fake = typical_host(base / "kernel")
    # tasks for the task knobs: a process with two threads (one with its own slice) in batch
    fake.task(100, comm="cruncher", cgroup="batch")
    fake.task(101, comm="cruncher", cgroup="batch", tgid=100, slice_ns=3_000_000, nice=2)
    fake.task(110, comm="cruncher", cgroup="")
    fake.task(120, comm="probe-srv", cgroup="batch", slice_ns=700_000)
    policy = base / "selftest-policy.toml"
    policy.write_text(POLICY)
    return Bed(base=base, tree=fake.base, state_dir=base / "state", policy=policy)


def snapshot(tree: Path) -> dict[str, bytes]:
    """Every regular file under ``tree`` (relative path -> bytes)."""
    out: dict[str, bytes] = {}
    for dirpath, _dirs, files in os.walk(tree):
        for name in files:
            if name.startswith(TMP_PREFIX):  # a write in flight (the server's auto-revert thread)
                continue
            p = Path(dirpath) / name
            with contextlib.suppress(FileNotFoundError):
                out[str(p.relative_to(tree))] = p.read_bytes()
    return out


def changed(before: dict[str, bytes], after: dict[str, bytes]) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def knob_values(service: Service) -> dict[str, Any]:
    """Every available knob's logical value, as the service reads it (and the task knobs)."""
    values = {st.ref.id: st.value for st in service.tunables() if st.state == "available"}
    for knob in TASK_BOUNDS:
        values[knob] = service.backend.read(knob).value
    return values


@dataclass
class Outcome:
    """One part's figures plus the problems that make it fail (an empty list passes)."""

    name: str
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, problem: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(problem)
