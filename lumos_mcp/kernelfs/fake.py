"""A builder for fake kernel trees: tests, benchmarks, the self-test and demos use it.

```python
fake = FakeKernel(tmp_path, release="5.15.0")
fake.sysctl("vm.swappiness", "60", range=(0, 200))
fake.debugfs_sched("base_slice_ns", "3000000", locked=True)
root = fake.root          # a KernelRoot over the tree
```
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lumos_mcp.kernelfs.root import KernelRoot, makedirs_private, write_private
from lumos_mcp.kernelfs.tasks import SCHED_OTHER, FakeTasks


class FakeKernel:
    """A directory laid out like /proc and /sys, with simulated kernel rules."""

    def __init__(self, base: str | os.PathLike[str], release: str = "6.6.0-fake") -> None:
        self.base = Path(base)
        makedirs_private(self.base)
        self.root = KernelRoot(self.base)
        self._rules: dict[str, dict[str, Any]] = dict(self.root.behaviours)
        self.file("proc/sys/kernel/osrelease", release + "\n")

    # ------------------------------------------------------------------ raw
    def file(self, rel: str, content: str, **rule: Any) -> FakeKernel:
        """Create ``rel`` holding ``content``; keyword arguments become its simulated rule."""
        path = self.base / rel
        makedirs_private(path.parent)
        write_private(path, content if content.endswith("\n") else content + "\n")
        if rule:
            self.rule(rel, **rule)
        return self

    def rule(self, rel: str, **rule: Any) -> FakeKernel:
        """Add simulated kernel behaviour to ``rel`` (locked, write_locked, range, clamp, choice,
        reject, einval_if)."""
        clean = {k: (list(v) if isinstance(v, tuple) else v) for k, v in rule.items() if v is not None}
        self._rules.setdefault(rel, {}).update(clean)
        self.root.set_behaviours(self._rules)
        return self

    def read(self, rel: str) -> str:
        return (self.base / rel).read_text()

    # ------------------------------------------------------------------ shapes
    def sysctl(self, name: str, value: str, **rule: Any) -> FakeKernel:
        """``fake.sysctl("vm.swappiness", "60")`` -> ``proc/sys/vm/swappiness``."""
        return self.file("proc/sys/" + name.replace(".", "/"), value, **rule)

    def debugfs_sched(self, name: str, value: str, **rule: Any) -> FakeKernel:
        return self.file(f"sys/kernel/debug/sched/{name}", value, **rule)

    def thp(self, enabled: str = "always [madvise] never", defrag: str = "always defer [madvise] never") -> FakeKernel:
        self.file("sys/kernel/mm/transparent_hugepage/enabled", enabled, choice=True)
        return self.file("sys/kernel/mm/transparent_hugepage/defrag", defrag, choice=True)

    def block(
        self,
        dev: str,
        scheduler: str = "[mq-deadline] none",
        read_ahead_kb: str = "128",
        nr_requests: str = "256",
    ) -> FakeKernel:
        q = f"sys/block/{dev}/queue"
        self.file(f"{q}/scheduler", scheduler, choice=True)
        self.file(f"{q}/read_ahead_kb", read_ahead_kb, range=(0, 65536))
        return self.file(f"{q}/nr_requests", nr_requests, range=(4, 65536))

    def cgroup_v1(
        self, name: str, shares: str = "1024", quota: str = "-1", period: str = "100000", idle: str = "0"
    ) -> FakeKernel:
        d = f"sys/fs/cgroup/cpu/{name}"
        self.file(f"{d}/cpu.idle", idle, range=(0, 1))
        self.file(f"{d}/cpu.shares", shares, range=(2, 262144), einval_if={f"{d}/cpu.idle": "1"})
        self.file(f"{d}/cpu.cfs_quota_us", quota)
        self.file(f"{d}/cpu.cfs_period_us", period, range=(1000, 1000000))
        self.file(f"{d}/cpuacct.usage", "0")
        return self.file(f"{d}/cpu.stat", "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n")

    def cgroup_v2(self, name: str, weight: str = "100", cpu_max: str = "max 100000", idle: str = "0") -> FakeKernel:
        self.file("sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory pids")
        d = f"sys/fs/cgroup/{name}"
        self.file(f"{d}/cpu.weight", weight, range=(1, 10000))
        self.file(f"{d}/cpu.max", cpu_max)
        self.file(f"{d}/cpu.idle", idle, range=(0, 1))
        return self.file(
            f"{d}/cpu.stat",
            "usage_usec 0\nuser_usec 0\nsystem_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n",
        )

    def cgroup_v1_hierarchies(self, cpu_usage_ns: str = "0") -> FakeKernel:
        """Separately mounted v1 ``cpu`` and ``cpuacct`` hierarchies (as on the reference host) where
        ``mkdir`` makes groups with their files, ``rmdir`` refuses busy groups and pids move."""
        cpu, acct = "sys/fs/cgroup/cpu", "sys/fs/cgroup/cpuacct"
        self.file(f"{cpu}/cgroup.procs", "")
        self.file(f"{cpu}/cpu.shares", "1024")
        self.rule(
            cpu, cgroup_files={"cgroup.procs": "", "cpu.shares": "1024", "cpu.idle": "0", "cpu.cfs_quota_us": "-1"}
        )
        self.file(f"{acct}/cgroup.procs", "")
        self.file(f"{acct}/cpuacct.usage", cpu_usage_ns)
        return self.rule(acct, cgroup_files={"cgroup.procs": "", "cpuacct.usage": "0"})

    def cgroup_v2_hierarchy(self, controllers: str = "cpuset cpu io memory pids", usage_usec: str = "0") -> FakeKernel:
        """A unified hierarchy at ``sys/fs/cgroup`` whose root lists ``controllers``."""
        top = "sys/fs/cgroup"
        self.file(f"{top}/cgroup.controllers", controllers)
        self.file(f"{top}/cgroup.subtree_control", "")
        self.file(f"{top}/cgroup.procs", "")
        self.file(f"{top}/cpu.stat", f"usage_usec {usage_usec}\nuser_usec 0\nsystem_usec 0\n")
        files = {
            "cgroup.procs": "",
            "cgroup.controllers": "cpu",
            "cgroup.subtree_control": "",
            "cpu.weight": "100",
            "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n",
        }
        return self.rule(top, cgroup_files=files)

    # ------------------------------------------------------------------ tasks
    @property
    def tasks(self) -> FakeTasks:
        """The fake task table (``sched_getattr``/``sched_setattr``, affinity, nice)."""
        return FakeTasks(self.root)

    def task(
        self,
        tid: int,
        comm: str = "worker",
        cgroup: str = "",
        tgid: int | None = None,
        start: int | None = None,
        policy: int = SCHED_OTHER,
        prio: int = 0,
        nice: int = 0,
        slice_ns: int = 1_400_000,
        cpus: tuple[int, ...] = (0, 1),
        **rules: Any,
    ) -> FakeKernel:
        """Add a task (a thread; ``tgid`` defaults to itself: a process). ``rules``: ``eperm``,
        ``exits_on_write``, ``kthread``."""
        data = self.tasks.load()
        data["tasks"][str(tid)] = {
            "tid": tid,
            "tgid": tid if tgid is None else tgid,
            "comm": comm,
            "cgroup": cgroup,
            "start": 1000 + tid if start is None else start,
            "policy": policy,
            "prio": prio,
            "nice": nice,
            "slice_ns": slice_ns,
            "cpus": list(cpus),
            "flags": 0,
            **rules,
        }
        self.tasks.save(data)
        return self

    def fork(self, parent: int, tid: int, start: int | None = None, thread: bool = False) -> FakeKernel:
        """A task born from ``parent``: it inherits its comm, cgroup and every attribute."""
        data = self.tasks.load()
        child = dict(data["tasks"][str(parent)], tid=tid, start=1000 + tid if start is None else start)
        child["tgid"] = child["tgid"] if thread else tid
        for rule in ("eperm", "exits_on_write"):
            child.pop(rule, None)
        data["tasks"][str(tid)] = child
        self.tasks.save(data)
        return self

    def exit(self, tid: int) -> FakeKernel:
        data = self.tasks.load()
        data["tasks"].pop(str(tid), None)
        self.tasks.save(data)
        return self

    def task_config(self, **settings: Any) -> FakeKernel:
        """Kernel-wide task settings: ``honours_slice`` (False: a kernel before 6.12),
        ``ncpus``, ``base_slice_ns``."""
        data = self.tasks.load()
        data.update(settings)
        self.tasks.save(data)
        return self

    def task_value(self, tid: int, key: str) -> Any:
        return self.tasks.load()["tasks"][str(tid)][key]


def typical_host(base: str | os.PathLike[str], release: str = "6.18.44-fake") -> FakeKernel:
    """A fake of this project's reference machine: EEVDF with debugfs locked, cgroup v1, one disk."""
    fake = FakeKernel(base, release=release)
    for name, value in [
        ("vm.swappiness", "60"),
        ("vm.dirty_ratio", "20"),
        ("vm.dirty_background_ratio", "10"),
        ("vm.dirty_expire_centisecs", "3000"),
        ("vm.dirty_writeback_centisecs", "500"),
        ("vm.vfs_cache_pressure", "100"),
        ("vm.min_free_kbytes", "67584"),
        ("vm.watermark_scale_factor", "10"),
    ]:
        fake.sysctl(name, value)
    for name, value in [
        ("kernel.sched_autogroup_enabled", "1"),
        ("kernel.sched_rr_timeslice_ms", "100"),
        ("kernel.sched_cfs_bandwidth_slice_us", "5000"),
        ("kernel.sched_rt_runtime_us", "950000"),
        ("kernel.numa_balancing", "0"),
    ]:
        fake.sysctl(name, value)
    for name, value in [
        ("net.core.somaxconn", "4096"),
        ("net.core.netdev_max_backlog", "1000"),
        ("net.core.busy_poll", "0"),
        ("net.core.busy_read", "0"),
    ]:
        fake.sysctl(name, value)
    for name, value in [("base_slice_ns", "1400000"), ("migration_cost_ns", "500000"), ("nr_migrate", "32")]:
        fake.debugfs_sched(name, value, locked=True)
    fake.thp()
    fake.block("vda")
    fake.cgroup_v1("batch")
    return fake
