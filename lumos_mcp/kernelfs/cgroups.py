"""Create and remove cgroups, move processes into them and read their exact CPU usage.

Everything goes through a `KernelRoot`, so the same code runs on the host and on a fake tree
(`FakeKernel.cgroup_v1_hierarchies` / `cgroup_v2_hierarchy`)::

    cg = CgroupManager(KernelRoot("/"))
    cg.create("lumos-arena/batch")
    cg.attach("lumos-arena/batch", pid)
    used = cg.usage_ns("lumos-arena/batch")
    cg.remove("lumos-arena")          # children first, pids back to the parent, idempotent

Version 1 (the reference host): the cpu controller is mounted at ``sys/fs/cgroup/cpu`` and,
separately or co-mounted, cpuacct at ``sys/fs/cgroup/cpuacct``; a group is made in each.
Version 2: ``sys/fs/cgroup/cgroup.controllers`` lists ``cpu``; ancestors get ``+cpu`` in
their ``cgroup.subtree_control``.
"""

from __future__ import annotations

import errno as errno_mod
import re
import time
from typing import Literal

from lumos_mcp.errors import (
    CgroupError,
    InvalidParameterError,
    InvalidValueError,
    KernelIOError,
    KnobError,
    KnobUnavailableError,
)
from lumos_mcp.kernelfs.root import KernelRoot

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}){0,3}$")
TOP = "sys/fs/cgroup"
V1_CPU = f"{TOP}/cpu"
V1_CPUACCT = f"{TOP}/cpuacct"

CgroupVersion = Literal[1, 2]


def validate_name(name: str) -> str:
    """Return ``name`` if it is a safe relative cgroup name (``"lumos-arena/batch"``).

    Raises:
        InvalidParameterError: the name breaks the pattern (absolute, ``..``, too deep, odd characters).
    """
    if not NAME_RE.match(name):
        raise InvalidParameterError(f"must match {NAME_RE.pattern}", parameter=name, knob="cgroup")
    return name


def parse_cpu_stat_usage_ns(text: str) -> int:
    """``usage_usec`` of a cgroup2 ``cpu.stat``, in nanoseconds.

    Raises:
        ValueError: the text has no ``usage_usec`` line.
    """
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) * 1000
    raise ValueError("cpu.stat has no usage_usec")


class CgroupManager:
    """Cgroups with the cpu controller under a kernel root (v1 or v2, detected once)."""

    def __init__(self, root: KernelRoot, *, settle_s: float = 2.0) -> None:
        """Detect the cgroup layout under ``root``.

        ``settle_s`` bounds how long `remove` retries while a group is still busy.

        Raises:
            CgroupError: no cpu controller is mounted (neither v2 with ``cpu`` nor v1 ``cpu``).
        """
        self.root = root
        self.settle_s = settle_s
        self.version: CgroupVersion = self._detect()
        self._acct_top = self._find_cpuacct()

    def __repr__(self) -> str:
        return f"CgroupManager({self.root!r}, v{self.version})"

    def _detect(self) -> CgroupVersion:
        if self.root.exists(f"{TOP}/cgroup.controllers"):
            try:
                controllers = self.root.read_text(f"{TOP}/cgroup.controllers").split()
            except KnobError as e:
                raise CgroupError(f"cannot read cgroup.controllers: {e}", cgroup="") from e
            if "cpu" in controllers:
                return 2
        if self.root.is_dir(V1_CPU):
            return 1
        raise CgroupError("no cpu controller: neither cgroup2 with cpu nor a v1 cpu hierarchy", cgroup="")

    def _find_cpuacct(self) -> str | None:
        if self.version == 2:
            return None
        if self.root.exists(f"{V1_CPUACCT}/cpuacct.usage"):
            return V1_CPUACCT
        if self.root.exists(f"{V1_CPU}/cpuacct.usage"):
            return V1_CPU
        return None

    @property
    def hierarchies(self) -> list[str]:
        """Hierarchy roots a group is made in (``["sys/fs/cgroup/cpu", "sys/fs/cgroup/cpuacct"]`` on v1)."""
        if self.version == 2:
            return [TOP]
        tops = [V1_CPU]
        if self._acct_top is not None and self._acct_top != V1_CPU:
            same = self.root.path(V1_CPU).resolve() == self.root.path(self._acct_top).resolve()
            if not same:
                tops.append(self._acct_top)
        return tops

    def rel(self, name: str, filename: str | None = None) -> str:
        """Path under the root of the group in the cpu controller's hierarchy, or of one of its files
        (``rel("lumos-arena/batch", "cpu.shares")``): what a knob catalog or transaction writes.

        Raises:
            InvalidParameterError: a bad name.
        """
        top = TOP if self.version == 2 else V1_CPU
        base = f"{top}/{validate_name(name)}"
        return base if filename is None else f"{base}/{filename}"

    def exists(self, name: str) -> bool:
        """Whether the group exists in the cpu controller's hierarchy.

        Raises:
            InvalidParameterError: a bad name.
        """
        return self.root.is_dir(self.rel(name))

    def create(self, name: str) -> str:
        """Create the group (and missing ancestors) in every hierarchy; existing groups are kept.

        Returns the group's path in the cpu hierarchy (see `rel`).

        Raises:
            InvalidParameterError: a bad name.
            CgroupError: the kernel refused (not root, hierarchy missing, ...).
        """
        validate_name(name)
        parts = name.split("/")
        try:
            for top in self.hierarchies:
                for depth in range(1, len(parts) + 1):
                    if self.version == 2:
                        self._enable_cpu(f"{top}/{'/'.join(parts[: depth - 1])}".rstrip("/"))
                    self.root.mkdir(f"{top}/{'/'.join(parts[:depth])}")
        except KnobError as e:
            raise CgroupError(f"cannot create: {e}", cgroup=name) from e
        return self.rel(name)

    def _enable_cpu(self, parent: str) -> None:
        control = f"{parent}/cgroup.subtree_control"
        enabled = {w.lstrip("+") for w in self.root.read_text(control).split()}
        if "cpu" not in enabled:
            self.root.write_text(control, "+cpu")

    def attach(self, name: str, pid: int) -> None:
        """Move process ``pid`` (all its threads) into the group, in every hierarchy.

        Raises:
            InvalidParameterError: a bad name.
            CgroupError: the group does not exist, or the process is gone or cannot be moved.
        """
        validate_name(name)
        for top in self.hierarchies:
            try:
                self.root.write_text(f"{top}/{name}/cgroup.procs", str(int(pid)))
            except KnobUnavailableError as e:
                raise CgroupError(f"does not exist in {top}: call create first", cgroup=name) from e
            except KnobError as e:
                raise CgroupError(f"cannot attach pid {pid}: {e}", cgroup=name, pid=pid) from e

    def pids(self, name: str) -> list[int]:
        """Processes in the group (cpu hierarchy); ``[]`` when it does not exist.

        Raises:
            InvalidParameterError: a bad name.
            CgroupError: the list cannot be read.
        """
        rel = self.rel(name, "cgroup.procs")
        if not self.root.exists(rel):
            return []
        try:
            return [int(p) for p in self.root.read_text(rel).split()]
        except KnobError as e:
            raise CgroupError(f"cannot read cgroup.procs: {e}", cgroup=name) from e

    def usage_ns(self, name: str | None = None) -> int:
        """Exact CPU time used by the group's tasks since it was made, in ns (``None``: the whole host).

        v1: ``cpuacct.usage``; v2: ``cpu.stat`` ``usage_usec`` * 1000.

        Raises:
            InvalidParameterError: a bad name.
            CgroupError: no cpuacct hierarchy, or the group does not exist.
        """
        if name is not None:
            validate_name(name)
        try:
            if self.version == 2:
                rel = f"{TOP}/cpu.stat" if name is None else f"{TOP}/{name}/cpu.stat"
                return parse_cpu_stat_usage_ns(self.root.read_text(rel))
            if self._acct_top is None:
                raise CgroupError("no cpuacct hierarchy: per-group CPU usage is unavailable", cgroup=name or "")
            rel = f"{self._acct_top}/cpuacct.usage" if name is None else f"{self._acct_top}/{name}/cpuacct.usage"
            return int(self.root.read_text(rel).strip())
        except (KnobError, ValueError) as e:
            raise CgroupError(f"cannot read CPU usage: {e}", cgroup=name or "") from e

    def remove(self, name: str) -> None:
        """Remove the group and its children from every hierarchy; absent groups are fine.

        Remaining processes move to the parent first (to the hierarchy root on v2, whose
        inner groups may not hold processes), so nothing is killed.

        Raises:
            InvalidParameterError: a bad name.
            CgroupError: the group stayed busy for ``settle_s`` or the kernel refused.
        """
        validate_name(name)
        for top in self.hierarchies:
            self._remove_tree(top, name)

    def _remove_tree(self, top: str, name: str) -> None:
        rel = f"{top}/{name}"
        if not self.root.is_dir(rel):
            return
        for child in self.root.listdir(rel):
            if self.root.is_dir(f"{rel}/{child}"):
                self._remove_tree(top, f"{name}/{child}")
        target = top if self.version == 2 else rel.rsplit("/", 1)[0]
        deadline = time.monotonic() + self.settle_s
        while True:
            try:
                self._move_all(f"{rel}/cgroup.procs", f"{target}/cgroup.procs")
                self.root.rmdir(rel)
                return
            except KernelIOError as e:
                if e.fields.get("errno") != errno_mod.EBUSY or time.monotonic() > deadline:
                    raise CgroupError(f"cannot remove {rel}: {e}", cgroup=name) from e
            except KnobError as e:
                raise CgroupError(f"cannot remove {rel}: {e}", cgroup=name) from e
            time.sleep(0.02)

    def _move_all(self, source: str, target: str) -> None:
        if not self.root.exists(source):
            return
        for pid in self.root.read_text(source).split():
            try:
                self.root.write_text(target, pid)
            except InvalidValueError:
                continue  # EINVAL: a task that cannot move; rmdir then answers EBUSY
            except KernelIOError as e:
                if e.fields.get("errno") != errno_mod.ESRCH:  # ESRCH: it exited meanwhile
                    raise


__all__ = ["NAME_RE", "CgroupManager", "CgroupVersion", "parse_cpu_stat_usage_ns", "validate_name"]
