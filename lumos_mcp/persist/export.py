"""The committed state in the formats other tools read: a ``sysctl.d`` drop-in, a TuneD profile,
JSON, and a rollback shell script. Each export says which knobs it cannot carry, and why.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from lumos_mcp.kernelfs.backend import Backend
from lumos_mcp.kernelfs.names import is_debugfs, sysctl_key, sysfs_path
from lumos_mcp.kernelfs.tasks import TASK_PREFIX
from lumos_mcp.knobs.spec import Value
from lumos_mcp.persist.state import CommittedKnob, iso, texts_of

Format = Literal["sysctl.d", "tuned", "json", "shell"]
FORMATS: tuple[Format, ...] = ("sysctl.d", "tuned", "json", "shell")
SYSCTL_D_NAME = "99-zz-lumos-mcp.conf"
"""sysctl.d(5) applies files in the order of their names, the last setting of a key winning:
``99-zz-`` sorts after the distribution's own (``50-default.conf``, ``99-sysctl.conf``)."""
TUNED_PROFILE = "lumos-mcp"
TUNED_SCHEDULER = {
    "sched.latency_ns": "sched_latency_ns",
    "sched.min_granularity_ns": "sched_min_granularity_ns",
    "sched.wakeup_granularity_ns": "sched_wakeup_granularity_ns",
    "sched.migration_cost_ns": "sched_migration_cost_ns",
    "sched.nr_migrate": "sched_nr_migrate",
}
"""Catalog knobs TuneD's scheduler plugin sets (it finds their procfs or debugfs file itself)."""
TUNED_VM = {"thp.enabled": "transparent_hugepages", "thp.defrag": "transparent_hugepage.defrag"}
TUNED_DISK = {"block.{dev}.scheduler": "elevator", "block.{dev}.read_ahead_kb": "readahead"}
"""Catalog knobs TuneD's disk plugin sets (``readahead`` is in KiB, as ``read_ahead_kb``)."""


@dataclass(frozen=True)
class NotCarried:
    knob: str
    reason: str


@dataclass
class Export:
    """One export: its files (a name relative to where it is written, and the text), and the
    knobs of the committed state it leaves out."""

    format: Format
    files: dict[str, str]
    not_carried: list[NotCarried] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "files": [{"name": n, "text": t} for n, t in self.files.items()],
            "not_carried": [{"knob": n.knob, "reason": n.reason} for n in self.not_carried],
        }


def _text(knob: CommittedKnob, backend: Backend, value: Value) -> str | None:
    texts = texts_of(knob, backend, value)
    return None if texts is None or len(texts) != 1 else texts[0].strip()


def _header(mode: str, now: float, count: int, what: str) -> list[str]:
    return [
        f"# lumos-mcp: the committed state of this host ({mode} mode), {what}",
        f"# exported {iso(now)}: {count} knob(s). Generated: edit lumos-mcp's state, not this file.",
    ]


TASKS_NOT_CARRIED = (
    "a task knob (sched_setattr, nice, policy or affinity of the tasks its selector picks): tasks start "
    "anew after a boot, so only `lumos-mcp reapply` (which selects them again) puts it back"
)


def is_task_knob(knob: CommittedKnob) -> bool:
    return knob.codec == "task" or any(f.startswith(TASK_PREFIX) for f in knob.files)


def _why_not_sysctl(knob: CommittedKnob) -> str:
    if is_task_knob(knob):
        return TASKS_NOT_CARRIED
    if not knob.files or knob.codec is None:
        return "it does not resolve on this kernel and no journal record names its files"
    if any(is_debugfs(f) for f in knob.files):
        return "a debugfs file: no boot-time configuration file sets it"
    if knob.knob.startswith("cgroup."):
        return "a cgroup's file: the cgroup must exist first (its manager sets it: a systemd unit's CPUWeight=)"
    return "a sysfs file, not a sysctl"


def sysctl_d(knobs: Sequence[CommittedKnob], backend: Backend, mode: str, now: float) -> Export:
    """A drop-in for ``/etc/sysctl.d`` (sysctls only; every other knob listed in a comment saying why)."""
    lines = _header(mode, now, len(knobs), f"as a sysctl.d(5) drop-in ({SYSCTL_D_NAME})")
    lines.append(
        "# Install: lumos-mcp export --format sysctl.d --out /etc/sysctl.d; applied at boot by systemd-sysctl."
    )
    out = Export("sysctl.d", {})
    for k in knobs:
        key = sysctl_key(k.files[0]) if len(k.files) == 1 and k.codec is not None else None
        text = _text(k, backend, k.value) if key is not None else None
        if key is None or text is None:
            out.not_carried.append(NotCarried(k.knob, _why_not_sysctl(k)))
            continue
        before = "" if k.original is None else f"; before lumos-mcp: {k.original}"
        lines += ["", f"# {k.tx}, committed {iso(k.committed_at)}{before}", f"{key} = {text}"]
    if out.not_carried:
        lines += ["", "# Not in this file (not sysctls), kept by `lumos-mcp reapply` or the TuneD export:"]
        lines += [f"#   {n.knob}: {n.reason}" for n in out.not_carried]
    out.files[SYSCTL_D_NAME] = "\n".join(lines) + "\n"
    return out


def tuned(
    knobs: Sequence[CommittedKnob], backend: Backend, mode: str, now: float, include: Sequence[str] = ()
) -> Export:
    """A TuneD profile directory (``lumos-mcp/tuned.conf``), including the profile active now."""
    out = Export("tuned", {})
    sysctl: list[str] = []
    vm: list[str] = []
    scheduler: list[str] = []
    sysfs: list[str] = []
    disks: dict[str, list[str]] = {}
    for k in knobs:
        ref = backend.catalog.lookup(k.knob)
        text = _text(k, backend, k.value) if k.codec is not None else None
        note = f"# {k.tx}, committed {iso(k.committed_at)}"
        key = sysctl_key(k.files[0]) if len(k.files) == 1 else None
        if is_task_knob(k):
            out.not_carried.append(NotCarried(k.knob, TASKS_NOT_CARRIED))
        elif text is None:
            out.not_carried.append(NotCarried(k.knob, _why_not_sysctl(k)))
        elif key is not None:
            sysctl += [note, f"{key}={text}"]
        elif k.knob in TUNED_VM:
            vm += [note, f"{TUNED_VM[k.knob]}={text}"]
        elif k.knob in TUNED_SCHEDULER:
            scheduler += [note, f"{TUNED_SCHEDULER[k.knob]}={text}"]
        elif ref.spec.id in TUNED_DISK and ref.param is not None:
            disks.setdefault(ref.param, []).extend([note, f"{TUNED_DISK[ref.spec.id]}={text}"])
        elif ref.spec.id == "block.{dev}.nr_requests" and sysfs_path(k.files[0]) is not None:
            sysfs += [note, f"{sysfs_path(k.files[0])}={text}"]
        elif k.knob.startswith("cgroup."):
            out.not_carried.append(
                NotCarried(k.knob, "TuneD has no option for a cgroup's CPU controller (the cgroup's manager sets it)")
            )
        else:
            out.not_carried.append(NotCarried(k.knob, "no TuneD plugin option sets it"))
    lines = _header(mode, now, len(knobs), "as a TuneD profile")
    lines += [
        "# Install: lumos-mcp export --format tuned --out /etc/tuned; then tuned-adm profile " + TUNED_PROFILE,
        "# TuneD re-applies sysctl.d files over [sysctl] (reapply_sysctl=1 in tuned-main.conf): see lumos-mcp drift.",
    ]
    for n in out.not_carried:
        lines.append(f"# not carried: {n.knob}: {n.reason}")
    lines += ["", "[main]", f"summary=lumos-mcp committed state, {len(knobs)} knob(s), exported {iso(now)}"]
    includes = [name for name in include if name != TUNED_PROFILE]
    if includes:
        lines.append("include=" + ",".join(includes))
    for section, body in (("sysctl", sysctl), ("vm", vm), ("scheduler", scheduler), ("sysfs", sysfs)):
        if body:
            lines += ["", f"[{section}]", *body]
    for dev in sorted(disks):
        lines += ["", f"[disk_{dev}]", "type=disk", f"devices={dev}", *disks[dev]]
    out.files[f"{TUNED_PROFILE}/tuned.conf"] = "\n".join(lines) + "\n"
    return out


def as_json(knobs: Sequence[CommittedKnob], mode: str, now: float) -> Export:
    """The committed state as JSON (everything the state holds; nothing left out)."""
    body = {"mode": mode, "exported": iso(now), "knobs": [k.to_dict() for k in knobs]}
    return Export("json", {"lumos-mcp-committed.json": orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n"})


def shell(knobs: Sequence[CommittedKnob], backend: Backend, mode: str, now: float) -> Export:
    """A rollback script: writes back what each knob held before lumos-mcp first committed it
    (files in reverse order, as lumos-mcp's own revert does). ``LUMOS_ROOT`` prefixes every path."""
    out = Export("shell", {})
    lines = [
        "#!/bin/sh",
        *_header(mode, now, len(knobs), "as a rollback script"),
        "# Restores what each knob held before lumos-mcp first committed it. Read it before running it (as root).",
        "# Afterwards the committed state still names these values: `lumos-mcp drift` will report them as lost.",
        "set -eu",
        'root="${LUMOS_ROOT:-}"',
    ]
    for k in knobs:
        if is_task_knob(k):  # its "file" is a selector, not a path: a shell cannot write it
            out.not_carried.append(NotCarried(k.knob, TASKS_NOT_CARRIED))
            continue
        if k.original_texts is None and k.original is None:
            out.not_carried.append(NotCarried(k.knob, "its value before the first commit is not known"))
            continue
        # the exact text saved before the first write (journal), else the value encoded (audit log)
        texts = k.original_texts or (texts_of(k, backend, k.original) if k.original is not None else None)
        if texts is None or len(texts) != len(k.files):
            out.not_carried.append(NotCarried(k.knob, "its files or codec are not known on this kernel"))
            continue
        key = sysctl_key(k.files[0]) if len(k.files) == 1 else None
        shown = f" (sysctl {key})" if key else ""
        lines += ["", f"# {k.knob}{shown}: {k.value} since {k.tx} at {iso(k.committed_at)}; back to {k.original}"]
        if k.files and is_debugfs(k.files[0]):
            lines.append("# a debugfs file: needs debugfs mounted and no lockdown")
        for file, text in reversed(list(zip(k.files, texts, strict=True))):
            lines.append(f"printf '%s\\n' {shlex.quote(text.rstrip(chr(10)))} > \"$root\"/{shlex.quote(file)}")
    if out.not_carried:
        lines += ["", "# Not restored here:"] + [f"#   {n.knob}: {n.reason}" for n in out.not_carried]
    out.files["lumos-mcp-rollback.sh"] = "\n".join(lines) + "\n"
    return out


def render(
    fmt: Format, knobs: Sequence[CommittedKnob], backend: Backend, mode: str, now: float, include: Sequence[str] = ()
) -> Export:
    """One export of ``knobs`` in ``fmt``; ``include`` names the TuneD profile(s) active now."""
    if fmt == "sysctl.d":
        return sysctl_d(knobs, backend, mode, now)
    if fmt == "tuned":
        return tuned(knobs, backend, mode, now, include)
    if fmt == "json":
        return as_json(knobs, mode, now)
    return shell(knobs, backend, mode, now)
