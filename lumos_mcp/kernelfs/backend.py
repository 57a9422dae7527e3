"""The knob backend: find a catalog knob on the running kernel, read it, write it, read it back.

Resolution picks the path candidate for this kernel version and cgroup version. A knob the
kernel lacks, or that it locks, is reported by type (``KnobUnavailableError``,
``KnobLockedError``), never as a stack trace.
"""

from __future__ import annotations

from dataclasses import dataclass

from lumos_mcp.errors import (
    InvalidParameterError,
    KnobError,
    KnobUnavailableError,
    ReadbackMismatchError,
)
from lumos_mcp.kernelfs.root import KernelRoot
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
        raw = tuple(self.root.read_text(f, knob=res.ref.id) for f in res.files)
        return Reading(value=codec.decode(res.codec, res.ref.spec, raw), raw=raw)

    def options(self, res: Resolved) -> tuple[str, ...]:
        """The choices a choice knob's file offers on this kernel (empty for other kinds)."""
        if res.ref.spec.kind != "choice":
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
            self.root.write_text(file, text, knob=res.ref.id)
        after = self.read(res)
        if after.value != value:
            raise ReadbackMismatchError(knob=res.ref.id, expected=value, actual=after.value)
        return after

    def write_raw(self, res: Resolved, raw: tuple[str, ...]) -> Reading:
        """Restore exact file text saved earlier (files in reverse order), and read back.

        Raises:
            KnobError: the write failed, or the read-back differs from what was saved.
        """
        for file, text in reversed(list(zip(res.files, raw, strict=True))):
            self.root.write_text(file, codec.restorable(text), knob=res.ref.id)
        after = self.read(res)
        expected = codec.decode(res.codec, res.ref.spec, raw)
        if after.value != expected:
            raise ReadbackMismatchError("while restoring", knob=res.ref.id, expected=expected, actual=after.value)
        return after

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
        ``sys/block`` (virtual ``loop``/``ram`` devices skipped), or the named cgroups."""
        spec = self.catalog.spec(spec_id)
        if spec.param is None:
            return [KnobRef(spec=spec, id=spec.id)]
        if spec.param.name == "dev":
            params = [d for d in self.root.listdir("sys/block") if not d.startswith(("loop", "ram", "zram"))]
        else:
            params = list(names)
        refs = []
        for p in params:
            if spec.param.matches(p):
                refs.append(KnobRef(spec=spec, id=spec.instance_id(p), param=p))
        return refs
