"""Task scheduling attributes: the EEVDF slice, nice, policy and CPU affinity of running tasks.

The only code in lumos-mcp that calls ``sched_getattr``/``sched_setattr`` and the affinity
syscalls, and that lists tasks (``/proc``, the cgroup ``tasks`` files). ``HostTasks`` is the
live kernel; ``FakeTasks`` keeps a task table in a fake tree's ``.lumos-tasks.json`` and
imitates the kernel's answers (EPERM, EINVAL, ESRCH, the slice clamp, the RT-runtime trap).

A task knob acts on the tasks a *selector* picks, read at the moment of the read or write:

- ``cgroup:<path>``: every task (thread) directly in that cpu cgroup (v1 ``tasks``, v2
  ``cgroup.threads``), not its child groups;
- ``comm:<glob>``: every thread of every user-space process whose command name (``comm``,
  at most 15 characters) matches the glob (``*`` and ``?``; at least 3 literal characters).

Its state is one line of text, the form the transaction journal already carries for files::

    1400                               every selected task holds 1400
    1400 except 812/5521=300 813/5521=300

``base`` is the value most selected tasks hold; each exception names a task by ``tid/start``
(its start time in clock ticks, so a recycled tid is never mistaken for the task) and its
value. Writing such a text gives every listed task its own value and every other selected
task the base: this is how a revert puts back what each task had, and what a task born
after the change (it inherited the changed value) gets: the base.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import fnmatch
import os
import platform
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson

from lumos_mcp.errors import (
    InvalidParameterError,
    InvalidValueError,
    KernelIOError,
    KnobError,
    KnobUnavailableError,
    NoTasksMatchError,
    PermissionDeniedError,
    RtRuntimeTrapError,
)
from lumos_mcp.kernelfs.root import TMP_PREFIX, KernelRoot, write_private
from lumos_mcp.knobs.codec import format_cpulist

TASKS_FILE = ".lumos-tasks.json"
TASK_PREFIX = "task/"
"""Pseudo-path prefix of task knobs (``task/<selector>/<attr>``): never a file."""

SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE, SCHED_DEADLINE = 0, 1, 2, 3, 5, 6
FAIR_POLICIES = (SCHED_OTHER, SCHED_BATCH, SCHED_IDLE)
RT_POLICIES = (SCHED_FIFO, SCHED_RR)
POLICY_NAMES = {
    SCHED_OTHER: "other",
    SCHED_FIFO: "fifo",
    SCHED_RR: "rr",
    SCHED_BATCH: "batch",
    SCHED_IDLE: "idle",
    SCHED_DEADLINE: "deadline",
}
POLICY_NUMBERS = {name: number for number, name in POLICY_NAMES.items()}
SCHED_FLAG_RESET_ON_FORK = 0x01
SLICE_CLAMP_NS = (100_000, 100_000_000)
"""The kernel clamps a fair task's ``sched_runtime`` to 0.1..100 ms (kernel/sched/syscalls.c)."""
ATTRS = ("slice_us", "nice", "policy", "affinity")
MAX_TASKS = 4096
MAX_STATE_CHARS = 4000
"""A task knob's state must fit the journal's one-line, 4096-character original."""

_CGROUP_SEL = r"cgroup:[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}){0,3}"
_COMM_SEL = r"comm:[A-Za-z0-9_.*?-]{1,15}"
SELECTOR_PATTERN = f"^({_CGROUP_SEL}|{_COMM_SEL})$"
_TOKEN_RE = re.compile(r"([0-9]{1,10})/([0-9]{1,20})=(\S+)")


class TaskGoneError(Exception):
    """ESRCH: the task exited (internal: callers skip it, it is never reported as an error)."""


@dataclass(frozen=True)
class SchedAttr:
    """The fields of ``struct sched_attr`` a tuner uses (deadline fields kept for write-back)."""

    policy: int
    flags: int = 0
    nice: int = 0
    priority: int = 0
    runtime: int = 0
    deadline: int = 0
    period: int = 0


@dataclass(frozen=True)
class TaskId:
    tid: int
    start: int

    def __str__(self) -> str:
        return f"{self.tid}/{self.start}"


@dataclass(frozen=True)
class Selector:
    kind: str  # "cgroup" | "comm"
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


def parse_selector(text: str) -> Selector:
    """A strict selector.

    Raises:
        InvalidParameterError: not ``cgroup:<path>`` or ``comm:<glob>``, ``..`` in a path, or a
            glob with fewer than 3 literal characters (it would select half the host).
    """
    if not isinstance(text, str) or re.fullmatch(SELECTOR_PATTERN, text) is None:
        raise InvalidParameterError(f"a selector is {SELECTOR_PATTERN}", knob="task", parameter=str(text)[:100])
    kind, _, value = text.partition(":")
    if kind == "cgroup" and any(part in (".", "..") for part in value.split("/")):
        raise InvalidParameterError("no '.' or '..' in a cgroup path", knob="task", parameter=text)
    if kind == "comm" and len(value.replace("*", "").replace("?", "")) < 3:
        raise InvalidParameterError("a command-name glob needs 3 literal characters", knob="task", parameter=text)
    return Selector(kind, value)


def task_path(selector: str, attr: str) -> str:
    return f"{TASK_PREFIX}{selector}/{attr}"


def split_task_path(path: str) -> tuple[Selector, str]:
    """``task/cgroup:batch/slice_us`` -> (selector, attr).

    Raises:
        InvalidParameterError: not a task path of a known attribute.
    """
    if not path.startswith(TASK_PREFIX):
        raise InvalidParameterError("not a task path", knob="task", parameter=path[:100])
    selector, _, attr = path[len(TASK_PREFIX) :].rpartition("/")
    if attr not in ATTRS:
        raise InvalidParameterError(f"task attribute must be one of {list(ATTRS)}", knob="task", parameter=attr[:50])
    return parse_selector(selector), attr


# --------------------------------------------------------------------------- access
class TaskAccess(Protocol):
    """The kernel's task interface, live or fake. Every per-task call raises ``TaskGoneError``
    when the task has exited and ``OSError`` (EPERM, EINVAL...) when the kernel refuses."""

    def cgroup_tids(self, path: str) -> list[int]: ...
    def processes(self) -> Iterable[tuple[int, str]]: ...
    def threads(self, pid: int) -> list[int]: ...
    def identity(self, tid: int) -> TaskId: ...
    def getattr(self, tid: int) -> SchedAttr: ...
    def setattr(self, tid: int, attr: SchedAttr) -> None: ...
    def get_nice(self, tid: int) -> int: ...
    def set_nice(self, tid: int, nice: int) -> None: ...
    def get_affinity(self, tid: int) -> list[int]: ...
    def set_affinity(self, tid: int, cpus: list[int]) -> None: ...
    def cgroup_of(self, tid: int) -> str: ...
    def rt_runtime(self, tid: int) -> int | None: ...
    def honours_slice(self) -> bool: ...


class _SchedAttrStruct(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_uint32),
        ("sched_policy", ctypes.c_uint32),
        ("sched_flags", ctypes.c_uint64),
        ("sched_nice", ctypes.c_int32),
        ("sched_priority", ctypes.c_uint32),
        ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64),
        ("sched_period", ctypes.c_uint64),
        ("sched_util_min", ctypes.c_uint32),
        ("sched_util_max", ctypes.c_uint32),
    ]


_SYSCALLS = {"x86_64": (314, 315), "aarch64": (274, 275)}  # (sched_setattr, sched_getattr)


class HostTasks:
    """The live kernel: syscalls through ctypes, task lists from ``/proc`` and cgroup files."""

    def __init__(self, root: KernelRoot) -> None:
        self.root = root
        numbers = _SYSCALLS.get(platform.machine())
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._nr = numbers

    def _cgroup_dir(self, path: str) -> tuple[str, str]:
        if self.root.is_dir(f"sys/fs/cgroup/cpu/{path}"):
            return f"sys/fs/cgroup/cpu/{path}", "tasks"
        if self.root.exists("sys/fs/cgroup/cgroup.controllers") and self.root.is_dir(f"sys/fs/cgroup/{path}"):
            return f"sys/fs/cgroup/{path}", "cgroup.threads"
        raise InvalidParameterError("no such cpu cgroup", knob="task", parameter=f"cgroup:{path}")

    def cgroup_tids(self, path: str) -> list[int]:
        directory, name = self._cgroup_dir(path)
        return [int(t) for t in self.root.read_text(f"{directory}/{name}").split()]

    def processes(self) -> Iterable[tuple[int, str]]:
        for name in self.root.listdir("proc"):
            if not name.isdigit():
                continue
            try:
                stat = self._stat(int(name))
                if int(stat[6]) & 0x00200000:  # PF_KTHREAD: kernel threads are never selected
                    continue
                yield int(name), self.root.read_text(f"proc/{name}/comm").rstrip("\n")
            except TaskGoneError:
                continue
            except KnobUnavailableError:
                continue

    def threads(self, pid: int) -> list[int]:
        return [int(t) for t in self.root.listdir(f"proc/{pid}/task") if t.isdigit()]

    def _stat(self, tid: int) -> list[str]:
        """Fields of ``/proc/<tid>/stat`` after the command name (field 3 is index 0)."""
        try:
            text = self.root.read_text(f"proc/{tid}/stat")
        except KnobUnavailableError as e:
            raise TaskGoneError(tid) from e
        except KernelIOError as e:
            if e.fields.get("errno") == errno_mod.ESRCH:
                raise TaskGoneError(tid) from e
            raise
        return text[text.rfind(")") + 2 :].split()

    def identity(self, tid: int) -> TaskId:
        return TaskId(tid, int(self._stat(tid)[19]))

    def cgroup_of(self, tid: int) -> str:
        try:
            text = self.root.read_text(f"proc/{tid}/cgroup")
        except KnobUnavailableError as e:
            raise TaskGoneError(tid) from e
        unified = ""
        for line in text.splitlines():
            _, controllers, path = line.split(":", 2)
            if "cpu" in controllers.split(","):
                return path.strip("/")
            if controllers == "":
                unified = path.strip("/")
        return unified

    def rt_runtime(self, tid: int) -> int | None:
        rel = f"sys/fs/cgroup/cpu/{self.cgroup_of(tid)}/cpu.rt_runtime_us".replace("cpu//", "cpu/")
        return int(self.root.read_text(rel)) if self.root.exists(rel) else None

    def _syscall(self, index: int, *args: Any) -> None:
        if self._nr is None:
            raise OSError(errno_mod.ENOSYS, "sched_setattr numbers unknown on " + platform.machine())
        if self._libc.syscall(self._nr[index], *args) != 0:
            number = ctypes.get_errno()
            if number == errno_mod.ESRCH:
                raise TaskGoneError(args[0])
            raise OSError(number, os.strerror(number))

    def getattr(self, tid: int) -> SchedAttr:
        s = _SchedAttrStruct()
        self._syscall(1, ctypes.c_int(tid), ctypes.byref(s), ctypes.c_uint(ctypes.sizeof(s)), ctypes.c_uint(0))
        return SchedAttr(
            policy=s.sched_policy,
            flags=s.sched_flags & SCHED_FLAG_RESET_ON_FORK,
            nice=s.sched_nice,
            priority=s.sched_priority,
            runtime=s.sched_runtime,
            deadline=s.sched_deadline,
            period=s.sched_period,
        )

    def setattr(self, tid: int, attr: SchedAttr) -> None:
        s = _SchedAttrStruct(
            size=ctypes.sizeof(_SchedAttrStruct),
            sched_policy=attr.policy,
            sched_flags=attr.flags,
            sched_nice=attr.nice,
            sched_priority=attr.priority,
            sched_runtime=attr.runtime,
            sched_deadline=attr.deadline,
            sched_period=attr.period,
        )
        self._syscall(0, ctypes.c_int(tid), ctypes.byref(s), ctypes.c_uint(0))

    def get_nice(self, tid: int) -> int:
        try:
            return os.getpriority(os.PRIO_PROCESS, tid)
        except ProcessLookupError as e:
            raise TaskGoneError(tid) from e

    def set_nice(self, tid: int, nice: int) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        except ProcessLookupError as e:
            raise TaskGoneError(tid) from e

    def get_affinity(self, tid: int) -> list[int]:
        try:
            return sorted(os.sched_getaffinity(tid))
        except ProcessLookupError as e:
            raise TaskGoneError(tid) from e

    def set_affinity(self, tid: int, cpus: list[int]) -> None:
        try:
            os.sched_setaffinity(tid, cpus)
        except ProcessLookupError as e:
            raise TaskGoneError(tid) from e

    def honours_slice(self) -> bool:
        """Whether the kernel takes ``sched_runtime`` as a fair task's slice (6.12+): such a
        kernel reports a fair task's slice (never 0) in ``sched_getattr``'s ``sched_runtime``;
        older kernels leave it 0 for every non-deadline task and ignore it on write."""
        try:
            attr = self.getattr(_self_tid())
        except OSError:
            return False
        return attr.policy in FAIR_POLICIES and attr.runtime > 0


def _self_tid() -> int:
    return int(os.gettid()) if hasattr(os, "gettid") else os.getpid()


# --------------------------------------------------------------------------- fake
class FakeTasks:
    """A task table in a fake tree, imitating the kernel's answers. Per-task rules:
    ``eperm`` (every write EPERM), ``exits_on_write`` (the task exits just before the next
    write reaches it: ESRCH). The slice is clamped like the kernel's; RR/FIFO in a v1 cpu
    cgroup whose ``cpu.rt_runtime_us`` reads 0 answers EPERM; a priority outside 1..99 for
    RR/FIFO (or not 0 otherwise), a nice outside -20..19 or an empty or offline CPU set,
    EINVAL. ``honours_slice`` false imitates a kernel before 6.12."""

    def __init__(self, root: KernelRoot) -> None:
        self.root = root
        self.path = root.base / TASKS_FILE

    def load(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {"tasks": {}, "honours_slice": True, "ncpus": 2}
        return data

    def save(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_name(f"{TMP_PREFIX}{TASKS_FILE}.{os.getpid()}")
        write_private(tmp, orjson.dumps(data))
        os.replace(tmp, self.path)

    def _task(self, tid: int) -> dict[str, Any]:
        task = self.load()["tasks"].get(str(tid))
        if task is None:
            raise TaskGoneError(tid)
        return dict(task)

    def _update(self, tid: int, change: Callable[[dict[str, Any]], None]) -> None:
        data = self.load()
        task = data["tasks"].get(str(tid))
        if task is None:
            raise TaskGoneError(tid)
        if task.get("exits_on_write"):
            del data["tasks"][str(tid)]
            self.save(data)
            raise TaskGoneError(tid)
        if task.get("eperm"):
            raise OSError(errno_mod.EPERM, "Operation not permitted")
        change(task)
        self.save(data)

    def cgroup_tids(self, path: str) -> list[int]:
        if not self.root.is_dir(f"sys/fs/cgroup/cpu/{path}") and not self.root.is_dir(f"sys/fs/cgroup/{path}"):
            raise InvalidParameterError("no such cpu cgroup", knob="task", parameter=f"cgroup:{path}")
        return sorted(int(t) for t, task in self.load()["tasks"].items() if task["cgroup"] == path)

    def processes(self) -> Iterable[tuple[int, str]]:
        tasks = self.load()["tasks"]
        return [
            (int(t), task["comm"])
            for t, task in sorted(tasks.items(), key=lambda kv: int(kv[0]))
            if task["tgid"] == int(t) and not task.get("kthread")
        ]

    def threads(self, pid: int) -> list[int]:
        return sorted(int(t) for t, task in self.load()["tasks"].items() if task["tgid"] == pid)

    def identity(self, tid: int) -> TaskId:
        return TaskId(tid, int(self._task(tid)["start"]))

    def cgroup_of(self, tid: int) -> str:
        return str(self._task(tid)["cgroup"])

    def rt_runtime(self, tid: int) -> int | None:
        rel = f"sys/fs/cgroup/cpu/{self.cgroup_of(tid)}/cpu.rt_runtime_us"
        return int(self.root.read_text(rel)) if self.root.exists(rel) else None

    def getattr(self, tid: int) -> SchedAttr:
        t = self._task(tid)
        fair = t["policy"] in FAIR_POLICIES
        runtime = t["slice_ns"] if fair and self.load().get("honours_slice", True) else 0
        return SchedAttr(
            policy=t["policy"],
            flags=t.get("flags", 0),
            nice=t["nice"] if fair else 0,
            priority=t["prio"],
            runtime=runtime,
        )

    def setattr(self, tid: int, attr: SchedAttr) -> None:
        honours = self.load().get("honours_slice", True)
        if attr.policy not in POLICY_NAMES or attr.policy == SCHED_DEADLINE:
            raise OSError(errno_mod.EINVAL, "Invalid argument")
        rt = attr.policy in RT_POLICIES
        if (rt and not 1 <= attr.priority <= 99) or (not rt and attr.priority != 0) or not -20 <= attr.nice <= 19:
            raise OSError(errno_mod.EINVAL, "Invalid argument")
        if rt and self.rt_runtime(tid) == 0:
            raise OSError(errno_mod.EPERM, "Operation not permitted")

        def change(task: dict[str, Any]) -> None:
            task["policy"], task["prio"], task["flags"] = attr.policy, attr.priority, attr.flags
            if not rt:
                task["nice"] = attr.nice
                if attr.runtime and honours:
                    task["slice_ns"] = min(max(attr.runtime, SLICE_CLAMP_NS[0]), SLICE_CLAMP_NS[1])
                elif honours:
                    task["slice_ns"] = self.load().get("base_slice_ns", 1_400_000)

        self._update(tid, change)

    def get_nice(self, tid: int) -> int:
        return int(self._task(tid)["nice"])

    def set_nice(self, tid: int, nice: int) -> None:
        def change(task: dict[str, Any]) -> None:
            task["nice"] = min(max(nice, -20), 19)  # setpriority clamps, as the kernel does

        self._update(tid, change)

    def get_affinity(self, tid: int) -> list[int]:
        return list(self._task(tid)["cpus"])

    def set_affinity(self, tid: int, cpus: list[int]) -> None:
        online = range(self.load().get("ncpus", 2))
        allowed = [c for c in cpus if c in online]
        if not allowed:
            raise OSError(errno_mod.EINVAL, "Invalid argument")

        def change(task: dict[str, Any]) -> None:
            task["cpus"] = allowed  # the kernel keeps the online part of the mask

        self._update(tid, change)

    def honours_slice(self) -> bool:
        return bool(self.load().get("honours_slice", True))


def task_access(root: KernelRoot) -> TaskAccess:
    return HostTasks(root) if root.is_host else FakeTasks(root)


# --------------------------------------------------------------------------- knob state
@dataclass(frozen=True)
class TaskState:
    """A task knob's state: the base value and each task that holds another."""

    base: str
    exceptions: dict[TaskId, str]

    def text(self) -> str:
        if not self.exceptions:
            return self.base
        parts = " ".join(f"{t}={v}" for t, v in sorted(self.exceptions.items(), key=lambda kv: kv[0].tid))
        return f"{self.base} except {parts}"

    def value_for(self, task: TaskId) -> str:
        return self.exceptions.get(task, self.base)


def parse_state(text: str) -> TaskState:
    """Raises: ValueError: not a task knob's state text."""
    words = text.split()
    if not words:
        raise ValueError("empty task state")
    base, rest = words[0], words[1:]
    if rest and rest[0] != "except":
        raise ValueError("expected 'except' after the base value")
    exceptions: dict[TaskId, str] = {}
    for token in rest[1:]:
        m = _TOKEN_RE.fullmatch(token)
        if m is None:
            raise ValueError(f"not a task value: {token[:60]!r}")
        exceptions[TaskId(int(m.group(1)), int(m.group(2)))] = m.group(3)
    return TaskState(base, exceptions)


def state_of(values: dict[TaskId, str]) -> TaskState:
    """The base (most tasks' value; ties: the first in sorted order) and the exceptions."""
    counts = Counter(values.values())
    base = min(counts, key=lambda v: (-counts[v], v))
    return TaskState(base, {t: v for t, v in values.items() if v != base})


@dataclass(frozen=True)
class RestoreOutcome:
    action: str  # "restored" | "unchanged" | "external_change"
    detail: str


class TaskKnobs:
    """Reads, writes and restores one task attribute over the tasks a selector picks.

    Values are text in their canonical form: slice in µs (``"300"``), nice (``"-5"``),
    policy (``"other"``, ``"batch"``, ``"idle"``, ``"rr-10"``, ``"fifo-50"``), affinity as a
    cpu list (``"0-1"``)."""

    def __init__(self, access: TaskAccess, probe: Callable[[str], None] | None = None) -> None:
        self.access = access
        self.probe: Callable[[str], None] = probe or (lambda label: None)

    # ------------------------------------------------------------------ selection
    def select(self, selector: Selector, attr: str) -> list[TaskId]:
        """The tasks a selector picks now (for the slice, only those of a fair policy)."""
        if selector.kind == "cgroup":
            tids = self.access.cgroup_tids(selector.value)
        else:
            tids = [
                tid
                for pid, comm in self.access.processes()
                if fnmatch.fnmatchcase(comm, selector.value)
                for tid in self.access.threads(pid)
            ]
        picked: list[TaskId] = []
        for tid in dict.fromkeys(tids):
            try:
                if attr == "slice_us" and self.access.getattr(tid).policy not in FAIR_POLICIES:
                    continue
                picked.append(self.access.identity(tid))
            except TaskGoneError:
                continue
            except OSError as e:
                raise self._error(e, selector, attr, tid, "") from e
        if len(picked) > MAX_TASKS:
            raise InvalidParameterError(
                f"selects {len(picked)} tasks (at most {MAX_TASKS})", knob="task", parameter=str(selector)
            )
        return picked

    # ------------------------------------------------------------------ per task
    def _get(self, tid: int, attr: str) -> str:
        if attr == "slice_us":
            return str(round(self.access.getattr(tid).runtime / 1000))
        if attr == "nice":
            return str(self.access.get_nice(tid))
        if attr == "policy":
            a = self.access.getattr(tid)
            name = POLICY_NAMES.get(a.policy, f"policy{a.policy}")
            return f"{name}-{a.priority}" if a.policy in RT_POLICIES else name
        return format_cpulist(self.access.get_affinity(tid))

    def _set(self, tid: int, attr: str, value: str) -> None:
        if attr == "nice":
            self.access.set_nice(tid, int(value))
            return
        if attr == "affinity":
            cpus: list[int] = []
            for part in value.split(","):
                lo, _, hi = part.partition("-")
                cpus.extend(range(int(lo), int(hi or lo) + 1))
            self.access.set_affinity(tid, cpus)
            return
        current = self.access.getattr(tid)
        if attr == "slice_us":
            # sched_setattr sets nice and slice together: the task's nice goes back unchanged
            self.access.setattr(tid, replace(current, runtime=int(value) * 1000))
            return
        name, _, prio = value.partition("-")
        policy = POLICY_NUMBERS[name]
        nice = self.access.get_nice(tid)
        runtime = current.runtime if current.policy in FAIR_POLICIES else 0
        self.access.setattr(
            tid,
            SchedAttr(policy=policy, flags=current.flags, nice=nice, priority=int(prio or 0), runtime=runtime),
        )

    def _error(self, e: OSError, selector: Selector, attr: str, tid: int, value: str) -> KnobError:
        knob = f"task.{selector}.{attr}"
        where = f"task {tid}"
        if e.errno == errno_mod.EPERM and attr == "policy" and value.startswith(("rr", "fifo")) and self._rt_zero(tid):
            return RtRuntimeTrapError(knob=knob, task=tid, cgroup=self._cgroup_or_empty(tid))
        if e.errno in (errno_mod.EPERM, errno_mod.EACCES):
            return PermissionDeniedError(knob=knob, path=where, errno=e.errno)
        if e.errno in (errno_mod.EINVAL, errno_mod.ERANGE):
            return InvalidValueError(
                f"the kernel answered {errno_mod.errorcode[e.errno]} for {where}", knob=knob, value=value
            )
        return KernelIOError(e.strerror or "", path=where, errno=e.errno)

    def _rt_zero(self, tid: int) -> bool:
        try:
            return self.access.rt_runtime(tid) == 0
        except (TaskGoneError, KnobError, ValueError):
            return False

    def _cgroup_or_empty(self, tid: int) -> str:
        try:
            return self.access.cgroup_of(tid)
        except TaskGoneError:
            return ""

    # ------------------------------------------------------------------ knob I/O
    def values(self, selector: Selector, attr: str) -> dict[TaskId, str]:
        """Each selected task's value now (tasks that exit meanwhile are left out)."""
        out: dict[TaskId, str] = {}
        for task in self.select(selector, attr):
            try:
                if self.access.identity(task.tid) != task:
                    continue
                out[task] = self._get(task.tid, attr)
            except TaskGoneError:
                continue
            except OSError as e:
                raise self._error(e, selector, attr, task.tid, "") from e
        return out

    def read(self, selector: Selector, attr: str) -> str:
        """The state text of the selected tasks.

        Raises:
            NoTasksMatchError: the selector picks no task (for the slice: no fair task).
            InvalidParameterError: no such cgroup, too many tasks, or a state too long to journal.
            PermissionDeniedError, KernelIOError: the kernel refused a read.
        """
        values = self.values(selector, attr)
        if not values:
            raise NoTasksMatchError(knob=f"task.{selector}.{attr}", selector=str(selector))
        text = state_of(values).text()
        if len(text) > MAX_STATE_CHARS:
            raise InvalidParameterError(
                "the selected tasks hold too many different values to journal; narrow the selector",
                knob=f"task.{selector}.{attr}",
                parameter=str(selector),
            )
        return text

    def write(self, selector: Selector, attr: str, text: str) -> int:
        """Give every selected task its value from a state text (a plain value: all tasks).
        A task that exits on the way is skipped. Returns how many tasks were written.

        Raises:
            ValueError: ``text`` is not a state text.
            RtRuntimeTrapError, PermissionDeniedError, InvalidValueError, KernelIOError: the kernel
                refused a task (the tasks before it are written).
        """
        state = parse_state(text)
        written = 0
        for n, task in enumerate(self.select(selector, attr)):
            value = state.value_for(task)
            try:
                if self.access.identity(task.tid) != task:
                    continue
                self._set(task.tid, attr, value)
                written += 1
            except TaskGoneError:
                continue
            except OSError as e:
                raise self._error(e, selector, attr, task.tid, value) from e
            self.probe(f"tasks:after-task:{n}")
        return written

    def restore(
        self, selector: Selector, attr: str, original: str, ours: set[str], force: bool = False
    ) -> RestoreOutcome:
        """Put back ``original`` (a state text) on every task the selector picks now. A task is
        restored when it holds one of ``ours`` (what the change wrote or the kernel made of it),
        or anything with ``force``; a task holding something else was changed by someone else
        and is left as found. Tasks that exited are skipped: not an error.

        Raises:
            ValueError: ``original`` is not a state text.
            KnobError: the kernel refused to restore a task (the others are still attempted first).
        """
        state = parse_state(original)
        restored, foreign, failures = 0, [], []
        selected = self.select(selector, attr) if self._selectable(selector) else []
        for n, task in enumerate(selected):
            want = state.value_for(task)
            try:
                now = self._get(task.tid, attr)
                if self.access.identity(task.tid) != task:
                    continue
                if now == want:
                    continue
                if now not in ours and not force:
                    foreign.append(f"{task.tid}={now}")
                    continue
                self._set(task.tid, attr, want)
                restored += 1
            except TaskGoneError:
                continue
            except OSError as e:
                failures.append(self._error(e, selector, attr, task.tid, want))
            self.probe(f"tasks:after-restore:{n}")
        if failures:
            raise failures[0]
        if foreign:
            return RestoreOutcome(
                "external_change",
                f"restored {restored} task(s); left {len(foreign)} changed by someone else as found: "
                + " ".join(foreign[:20]),
            )
        return RestoreOutcome("restored" if restored else "unchanged", f"{restored} task(s) restored")

    def _selectable(self, selector: Selector) -> bool:
        """False when a cgroup selector's group is gone: nothing left to restore."""
        if selector.kind != "cgroup":
            return True
        try:
            self.access.cgroup_tids(selector.value)
        except InvalidParameterError:
            return False
        return True
