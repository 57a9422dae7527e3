"""Knob specs: what a logical knob is, independent of where a kernel keeps it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["int", "bool", "choice", "cpulist", "cpu_max"]
Value = int | bool | str
KernelVersion = tuple[int, int, int]
CgroupVersion = Literal["v1", "v2"]


def parse_version(text: str) -> KernelVersion:
    """``"5.13"`` -> ``(5, 13, 0)``."""
    parts = [int(p) for p in text.split(".")]
    while len(parts) < 3:
        parts.append(0)
    return (parts[0], parts[1], parts[2])


def format_version(version: KernelVersion) -> str:
    return ".".join(str(p) for p in (version if version[2] else version[:2]))


@dataclass(frozen=True)
class PathCandidate:
    """Where one kernel generation keeps a knob: one file, or several written in order."""

    files: tuple[str, ...]
    codec: str
    since: KernelVersion | None = None
    until: KernelVersion | None = None
    cgroup: CgroupVersion | None = None

    def fits(self, version: KernelVersion) -> bool:
        return (self.since is None or version >= self.since) and (self.until is None or version < self.until)


@dataclass(frozen=True)
class ParamSpec:
    """The parameter of a parametrised knob (a block device, a cgroup)."""

    name: str
    pattern: str
    exists: dict[str, str] = field(default_factory=dict)
    """Directory that must exist for the parameter, by cgroup version or ``"any"``."""

    def matches(self, value: str) -> bool:
        return re.fullmatch(self.pattern, value) is not None and "\x00" not in value


@dataclass(frozen=True)
class KnobSpec:
    """One logical knob of the catalog."""

    id: str
    group: str
    kind: Kind
    description: str
    paths: tuple[PathCandidate, ...]
    unit: str | None = None
    min: int | None = None
    max: int | None = None
    choices: tuple[str, ...] = ()
    param: ParamSpec | None = None
    note: str = ""
    """What the catalog knows beyond paths, e.g. why a knob vanished on newer kernels."""

    @property
    def parametrised(self) -> bool:
        return self.param is not None

    def instance_id(self, param: str) -> str:
        if self.param is None:
            return self.id
        return self.id.replace("{" + self.param.name + "}", param)


@dataclass(frozen=True)
class KnobRef:
    """A concrete knob: a spec plus, for parametrised knobs, its parameter value."""

    spec: KnobSpec
    id: str
    param: str | None = None

    def fill(self, template: str) -> str:
        if self.spec.param is None or self.param is None:
            return template
        return template.replace("{" + self.spec.param.name + "}", self.param)
