"""Drift: is the host still running what lumos-mcp committed?

Per committed knob, by type:
- ``lost``: the live value is back at what it was before lumos-mcp first committed it (a
  reboot, or a restart of whatever owns the knob), or the knob is gone (its cgroup removed);
- ``changed``: someone else wrote another value (named);
- ``clash``: a ``sysctl.d`` file, or the active TuneD profile, sets the same key to another
  value at boot (the file and line are named), whatever the live value is now.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lumos_mcp.errors import KnobError
from lumos_mcp.kernelfs.backend import Backend
from lumos_mcp.kernelfs.names import sysctl_key
from lumos_mcp.knobs import codec
from lumos_mcp.knobs.spec import Value
from lumos_mcp.persist import hostconf
from lumos_mcp.persist.export import SYSCTL_D_NAME, TUNED_VM
from lumos_mcp.persist.state import CommittedKnob

DriftType = Literal["lost", "changed", "clash"]


@dataclass(frozen=True)
class Drift:
    knob: str
    type: DriftType
    committed: Value
    live: Value | None
    tx: str
    detail: str
    file: str | None = None
    line: int | None = None
    profile: str | None = None
    """The TuneD profile a clash comes from (None: a sysctl.d file)."""
    boot_value: str | None = None
    """What the clashing file sets."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "knob": self.knob,
            "type": self.type,
            "committed": self.committed,
            "live": self.live,
            "tx": self.tx,
            "detail": self.detail,
            "file": self.file,
            "line": self.line,
            "profile": self.profile,
            "boot_value": self.boot_value,
        }


@dataclass
class DriftReport:
    checked: int
    drift: list[Drift] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.drift

    def to_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "clean": self.clean, "drift": [d.to_dict() for d in self.drift]}


def detect(knobs: Sequence[CommittedKnob], backend: Backend, etc_root: Path) -> DriftReport:
    """Compare each committed knob with its live value and with what the host's sysctl.d files
    and active TuneD profile set at boot."""
    report = DriftReport(checked=len(knobs))
    sysctl = hostconf.sysctl_settings(etc_root)
    tuned = hostconf.tuned_settings(etc_root)
    for k in knobs:
        try:
            live: Value | None = backend.read(k.knob).value
        except KnobError as e:
            live = None
            report.drift.append(Drift(k.knob, "lost", k.value, None, k.tx, f"it does not read here: {e}"))
        if live is not None and live != k.value:
            if k.original is not None and live == k.original:
                why = f"back at {live!r}, its value before {k.first_tx} (a reboot, or its owner restarted)"
                report.drift.append(Drift(k.knob, "lost", k.value, live, k.tx, why))
            else:
                why = f"now {live!r}, written outside lumos-mcp (committed {k.value!r} by {k.tx})"
                report.drift.append(Drift(k.knob, "changed", k.value, live, k.tx, why))
        report.drift.extend(_clashes(k, live, backend, sysctl, tuned))
    return report


def _same(k: CommittedKnob, backend: Backend, text: str) -> bool:
    spec = backend.catalog.lookup(k.knob).spec
    try:
        return codec.normalize(spec, text) == k.value
    except KnobError:
        return False


def _clashes(
    k: CommittedKnob,
    live: Value | None,
    backend: Backend,
    sysctl: list[hostconf.Setting],
    tuned: list[hostconf.Setting],
) -> list[Drift]:
    out = []
    key = sysctl_key(k.files[0]) if len(k.files) == 1 else None
    if key is not None:
        found = hostconf.effective(sysctl, key)
        if found is not None and not _same(k, backend, found.value):
            mine = " (an older lumos-mcp export)" if found.file.endswith("/" + SYSCTL_D_NAME) else ""
            why = f"{found.file}:{found.line}{mine} sets {key} = {found.value} at boot"
            out.append(_clash(k, live, why, found))
        in_profile = hostconf.effective(tuned, key)
    elif k.knob in TUNED_VM:
        in_profile = hostconf.effective(tuned, f"vm:{TUNED_VM[k.knob]}")
        if in_profile is None and k.knob == "thp.enabled":
            in_profile = hostconf.effective(tuned, "vm:transparent_hugepage")
    else:
        in_profile = None
    if in_profile is not None and not _same(k, backend, in_profile.value):
        why = (
            f"the active TuneD profile {in_profile.profile} ({in_profile.file}:{in_profile.line}) "
            f"sets {in_profile.key.removeprefix('vm:')}={in_profile.value}"
        )
        out.append(_clash(k, live, why, in_profile))
    return out


def _clash(k: CommittedKnob, live: Value | None, why: str, found: hostconf.Setting) -> Drift:
    return Drift(
        knob=k.knob,
        type="clash",
        committed=k.value,
        live=live,
        tx=k.tx,
        detail=why,
        file=found.file,
        line=found.line,
        profile=found.profile,
        boot_value=found.value,
    )
