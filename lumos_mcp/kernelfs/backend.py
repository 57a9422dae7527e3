"""The knob backend: find a catalog knob on the running kernel, read it, write it, read it back.

Resolution picks the path candidate for this kernel version and cgroup version. A knob the
kernel lacks, or that it locks, is reported by type (``KnobUnavailableError``,
``KnobLockedError``), never as a stack trace.
"""

from __future__ import annotations

from dataclasses import dataclass

from lumos_mcp.errors import (
    InvalidParameterError,
    InvalidValueError,
    KnobError,
    KnobUnavailableError,
    ReadbackMismatchError,
)
from lumos_mcp.kernelfs.root import KernelRoot
from lumos_mcp.kernelfs.tasks import TASK_PREFIX, RestoreOutcome, TaskKnobs, parse_state, split_task_path, task_access
from lumos_mcp.knobs import codec
from lumos_mcp.knobs.catalog import Catalog
from lumos_mcp.knobs.spec import CgroupVersion, KnobRef, PathCandidate, Value, format_version


@dataclass(frozen=True)
class Resolved:
    """A knob located on this kernel: its files (relative to the root) in write order."""

    ref: KnobRef
    files: tuple[str, ...]
    codec: str


@dataclass(frozen=True)
class Reading:
    """What a knob holds: the canonical value and the exact text of each file."""

    value: Value
    raw: tuple[str, ...]


@dataclass(frozen=True)
class KnobStatus:
    """For listings: whether a knob is usable here, and its value if so."""

    ref: KnobRef
    state: str  # "available" | "locked" | "not_on_this_kernel" | "permission_denied" | "error"
    value: Value | None = None
    detail: str = ""
    options: tuple[str, ...] = ()


class Backend:
    """Reads and writes catalog knobs under a ``KernelRoot``."""

    def __init__(self, root: KernelRoot, catalog: Catalog) -> None:
        self.root = root
        self.catalog = catalog
        self.tasks = TaskKnobs(task_access(root))
        """Task knobs (``codec = "task"``): their "file" is ``task/<selector>/<attr>``, never opened."""

    # ------------------------------------------------------------------ resolution
    def cgroup_version(self) -> CgroupVersion | None:
        """Which cgroup hierarchy has the CPU controller: v2 if the unified root lists it, else v1."""
        if self.root.exists("sys/fs/cgroup/cgroup.controllers"):
            controllers = self.root.read_text("sys/fs/cgroup/cgroup.controllers").split()
            if "cpu" in controllers:
                return "v2"
        if self.root.is_dir("sys/fs/cgroup/cpu"):
            return "v1"
        return None

    def resolve(self, knob: str | KnobRef) -> Resolved:
        """Locate a knob on this kernel.

        Raises:
            UnknownKnobError, InvalidParameterError: from the catalog lookup.
            InvalidParameterError: the device or cgroup does not exist.
            KnobUnavailableError: this kernel (version, config, mounts) has no such knob.
        """
        ref = knob if isinstance(knob, KnobRef) else self.catalog.lookup(knob)
        version = self.root.kernel_version
        kernel = self.root.kernel_release
        cgv = self.cgroup_version() if any(p.cgroup for p in ref.spec.paths) else None
        fitting = [p for p in ref.spec.paths if p.fits(version) and (p.cgroup is None or p.cgroup == cgv)]
        if not fitting:
            why = ref.spec.note or self._why_unfit(ref.spec.paths, cgv)
            raise KnobUnavailableError(why, knob=ref.id, kernel=kernel)
        self._check_param_exists(ref, cgv)
        if fitting[0].codec == "task":
            return self._resolve_task(ref, fitting[0])
        for candidate in fitting:
            files = tuple(ref.fill(f) for f in candidate.files)
            if all(self.root.exists(f) for f in files):
                return Resolved(ref=ref, files=files, codec=candidate.codec)
        missing = ref.fill(fitting[0].files[0])
        if missing.startswith("sys/kernel/debug/") and not self.root.is_dir("sys/kernel/debug/sched"):
            why = "debugfs is not mounted (mount -t debugfs none /sys/kernel/debug)"
        else:
            why = f"{missing} does not exist (kernel config or driver lacks it)"
        raise KnobUnavailableError(why, knob=ref.id, kernel=kernel)

    def _resolve_task(self, ref: KnobRef, candidate: PathCandidate) -> Resolved:
        file = ref.fill(candidate.files[0])
        _, attr = split_task_path(file)
        if attr == "slice_us" and not self.tasks.access.honours_slice():
            raise KnobUnavailableError(
                "this kernel ignores sched_runtime for fair tasks (sched_getattr reports no slice)",
                knob=ref.id,
                kernel=self.root.kernel_release,
            )
        return Resolved(ref=ref, files=(file,), codec="task")

    @staticmethod
    def is_task(res: Resolved) -> bool:
        return res.codec == "task"

    def read_file(self, res: Resolved, file: str) -> str:
        """One file's text (a task knob's state text) of a resolved knob."""
        if file.startswith(TASK_PREFIX):
            selector, attr = split_task_path(file)
            return self.tasks.read(selector, attr)
        return self.root.read_text(file, knob=res.ref.id)

    def write_file(self, res: Resolved, file: str, text: str) -> None:
        """Write one file of a resolved knob (a task knob: every selected task)."""
        if file.startswith(TASK_PREFIX):
            selector, attr = split_task_path(file)
            try:
                self.tasks.write(selector, attr, text)
            except ValueError as e:
                raise InvalidValueError(str(e), knob=res.ref.id, value=text[:200]) from e
            return
        self.root.write_text(file, text, knob=res.ref.id)

    def value_now(self, res: Resolved) -> Value | None:
        """The knob's value, or None for a task knob whose selector picks no task any more
        (every task exited: nothing holds a value, which is not an error)."""
        if self.is_task(res):
            selector, attr = split_task_path(res.files[0])
            if not self.tasks.values(selector, attr):
                return None
        return self.read(res).value

    def restore_tasks(
        self, res: Resolved, original: tuple[str, ...], after: Value, shown: tuple[str, ...], force: bool = False
    ) -> RestoreOutcome:
        """Put a task knob's journaled state back on every task its selector picks now: each
        task its own original, a task not in the journal (born since) the base. A task holding
        neither ``after`` nor a value of ``shown`` (what the kernel showed after the write, if
        it clamped) is left as found unless ``force``."""
        selector, attr = split_task_path(res.files[0])
        values = {codec.encode("task", res.ref.spec, after)[0]}
        values.update(codec.encode("task", res.ref.spec, codec.decode("task", res.ref.spec, (t,)))[0] for t in shown)
        try:
            return self.tasks.restore(selector, attr, original[0], values, force)
        except ValueError as e:
            raise InvalidValueError(str(e), knob=res.ref.id, value=original[0][:200]) from e

    def _why_unfit(self, paths: tuple[PathCandidate, ...], cgv: CgroupVersion | None) -> str:
        if any(p.cgroup for p in paths):
            return f"needs cgroup {'/'.join(sorted({p.cgroup for p in paths if p.cgroup}))} with the cpu controller"
        bounds = [
            f"{format_version(p.since) if p.since else 'any'}..{format_version(p.until) if p.until else 'now'}"
            for p in paths
        ]
        return f"exists only on kernels {', '.join(bounds)}"

    def _check_param_exists(self, ref: KnobRef, cgv: CgroupVersion | None) -> None:
        param = ref.spec.param
        if param is None or ref.param is None:
            return
        template = param.exists.get(cgv or "any") or param.exists.get("any")
        if template is not None and not self.root.is_dir(ref.fill(template)):
            raise InvalidParameterError(f"{ref.fill(template)} does not exist", knob=ref.id, parameter=ref.param)

    # ------------------------------------------------------------------ I/O
    def read(self, knob: str | KnobRef | Resolved) -> Reading:
        """Read a knob's current value and the exact file text.

        Raises:
            KnobError: any lookup, availability, lock or parse problem, by type.
        """
        res = knob if isinstance(knob, Resolved) else self.resolve(knob)
        raw = tuple(self.read_file(res, f) for f in res.files)
        return Reading(value=codec.decode(res.codec, res.ref.spec, raw), raw=raw)

    def options(self, res: Resolved) -> tuple[str, ...]:
        """The choices a choice knob's file offers on this kernel (empty for other kinds)."""
        if res.ref.spec.kind != "choice" or self.is_task(res):
            return ()
        return tuple(codec.choices_in(self.root.read_text(res.files[0], knob=res.ref.id)))

    def write(self, res: Resolved, value: Value) -> Reading:
        """Write a canonical value (each file in one write, in order), then read back and compare.

        Raises:
            InvalidValueError: the kernel rejected the value (EINVAL), or a choice it does not offer.
            KnobLockedError, PermissionDeniedError, KernelIOError: the write failed.
            ReadbackMismatchError: the kernel holds another value after the write (clamped).
        """
        texts = codec.encode(res.codec, res.ref.spec, value)
        for file, text in zip(res.files, texts, strict=True):
            self.write_file(res, file, text)
        after = self.read(res)
        if after.value != value:
            raise ReadbackMismatchError(knob=res.ref.id, expected=value, actual=after.value)
        return after

    def write_raw(self, res: Resolved, raw: tuple[str, ...]) -> Reading:
        """Restore exact file text saved earlier (files in reverse order), and read back.

        Raises:
            KnobError: the write failed, or the read-back differs from what was saved.
        """
        if self.is_task(res):
            return self._write_raw_tasks(res, raw)
        for file, text in reversed(list(zip(res.files, raw, strict=True))):
            self.root.write_text(file, codec.restorable(text), knob=res.ref.id)
        after = self.read(res)
        expected = codec.decode(res.codec, res.ref.spec, raw)
        if after.value != expected:
            raise ReadbackMismatchError("while restoring", knob=res.ref.id, expected=expected, actual=after.value)
        return after

    def _write_raw_tasks(self, res: Resolved, raw: tuple[str, ...]) -> Reading:
        """A task knob's saved state back on the tasks selected now; every task must then hold
        its own saved value (or the base, if it was not selected when saved)."""
        selector, attr = split_task_path(res.files[0])
        self.write_file(res, res.files[0], raw[0])
        state = parse_state(raw[0])
        values = self.tasks.values(selector, attr)
        wrong = {str(t): v for t, v in values.items() if v != state.value_for(t)}
        if wrong:
            raise ReadbackMismatchError(
                "while restoring", knob=res.ref.id, expected=raw[0][:200], actual=str(wrong)[:200]
            )
        if not values:  # every task exited: nothing is left to hold a value
            return Reading(value=codec.decode("task", res.ref.spec, raw), raw=raw)
        return self.read(res)

    def status(self, knob: KnobRef) -> KnobStatus:
        """Whether a knob is usable here, for listings. Never raises for per-knob problems."""
        try:
            res = self.resolve(knob)
            reading = self.read(res)
            return KnobStatus(ref=knob, state="available", value=reading.value, options=self.options(res))
        except KnobError as e:
            state = e.code if e.code in ("locked", "not_on_this_kernel", "permission_denied") else "error"
            return KnobStatus(ref=knob, state=state, detail=str(e))

    # ------------------------------------------------------------------ instances
    def instances(self, spec_id: str, names: tuple[str, ...] = ()) -> list[KnobRef]:
        """Concrete knobs of a parametrised spec on this host: block devices found under
        ``sys/block`` (virtual ``loop``/``ram`` devices skipped), or the named cgroups (for a
        task knob: the tasks of each named cgroup, ``cgroup:<name>``)."""
        spec = self.catalog.spec(spec_id)
        if spec.param is None:
            return [KnobRef(spec=spec, id=spec.id)]
        if spec.param.name == "dev":
            params = [d for d in self.root.listdir("sys/block") if not d.startswith(("loop", "ram", "zram"))]
        elif spec.param.name == "sel":  # task knobs: every task of each named cgroup
            params = [f"cgroup:{n}" for n in names]
        else:
            params = list(names)
        refs = []
        for p in params:
            if spec.param.matches(p):
                refs.append(KnobRef(spec=spec, id=spec.instance_id(p), param=p))
        return refs
