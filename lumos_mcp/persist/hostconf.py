"""What this host's own configuration sets at boot: its ``sysctl.d`` files and its active TuneD
profile, each setting with the file and line it comes from (so a clash can name them).

Paths are under ``etc_root`` (``/`` on the host; a temporary tree in tests).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

SYSCTL_DIRS = ("etc/sysctl.d", "run/sysctl.d", "usr/local/lib/sysctl.d", "usr/lib/sysctl.d", "lib/sysctl.d")
"""sysctl.d(5)'s directories, most important first: a file name in an earlier one masks the same
name in a later one."""
SYSCTL_CONF = "etc/sysctl.conf"
"""Read after the drop-ins by ``sysctl --system`` (Debian links it as ``99-sysctl.conf`` too)."""
TUNED_DIRS = ("etc/tuned", "usr/lib/tuned")
"""Where TuneD looks for a profile, the first found wins."""
TUNED_ACTIVE = "etc/tuned/active_profile"
_NAME_RE = re.compile(r"^[a-zA-Z0-9_.-]+$")
_MAX_INCLUDES = 16


@dataclass(frozen=True)
class Setting:
    """One assignment of a boot-time configuration file."""

    key: str
    value: str
    file: str
    line: int
    profile: str | None = None
    """The TuneD profile it belongs to (None for sysctl.d)."""


def parse_sysctl_conf(text: str, file: str) -> list[Setting]:
    """The assignments of one sysctl.d file (``key = value``; ``#`` and ``;`` comments; a leading
    ``-`` only silences errors). Keys are in dotted form, as ``sysctl`` prints them."""
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        key = key.removeprefix("-").strip()
        if "/" in key and "." not in key.split("/")[0]:
            key = key.replace("/", ".")
        out.append(Setting(key=key, value=value, file=file, line=number))
    return out


def sysctl_files(etc_root: Path) -> list[Path]:
    """The sysctl.d files in the order systemd-sysctl applies them (by file name; a name in an
    earlier directory masks the same name in later ones), then ``/etc/sysctl.conf`` unless a
    drop-in already is that file."""
    chosen: dict[str, Path] = {}
    for directory in SYSCTL_DIRS:
        try:
            names = sorted(f.name for f in (etc_root / directory).iterdir())
        except OSError:  # absent or unreadable: systemd-sysctl reports that, not us
            continue
        for name in names:
            if name.endswith(".conf") and name not in chosen:
                chosen[name] = etc_root / directory / name
    files = [chosen[name] for name in sorted(chosen)]
    conf = etc_root / SYSCTL_CONF
    if conf.is_file() and not any(_same(conf, f) for f in files):
        files.append(conf)
    return files


def _same(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def sysctl_settings(etc_root: Path) -> list[Setting]:
    """Every sysctl.d assignment on the host, in the order they are applied (the last wins).
    Unreadable files are skipped (they are reported by systemd-sysctl, not here)."""
    out: list[Setting] = []
    for f in sysctl_files(etc_root):
        try:
            text = f.read_text(errors="replace")
        except OSError:
            continue
        out.extend(
            parse_sysctl_conf(text, "/" + str(f.relative_to(etc_root)) if f.is_relative_to(etc_root) else str(f))
        )
    return out


def effective(settings: list[Setting], key: str) -> Setting | None:
    """The assignment that decides ``key`` at boot: the last one whose key (or glob) matches."""
    found = None
    for s in settings:
        if s.key == key or (any(c in s.key for c in "*?[") and fnmatch.fnmatchcase(key, s.key)):
            found = s
    return found


# --------------------------------------------------------------------------- TuneD
def active_profile(etc_root: Path) -> list[str]:
    """The names in TuneD's ``active_profile`` (empty when TuneD is absent or has none)."""
    try:
        text = (etc_root / TUNED_ACTIVE).read_text()
    except OSError:
        return []
    return [n for n in text.split() if _NAME_RE.match(n)]


def profile_file(etc_root: Path, name: str) -> Path | None:
    """Where TuneD would load profile ``name`` from (None: not found)."""
    for d in TUNED_DIRS:
        f = etc_root / d / name.removeprefix("-") / "tuned.conf"
        if f.is_file():
            return f
    return None


def _ini(text: str) -> list[tuple[str, str, str, int]]:
    """``(section, option, value, line)`` of a TuneD profile (``#`` comments, ``=`` only)."""
    out = []
    section = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
        elif "=" in line:
            key, value = (p.strip() for p in line.split("=", 1))
            out.append((section, key, value, number))
    return out


def tuned_settings(etc_root: Path) -> list[Setting]:
    """What the active TuneD profile (with its includes, included first) sets, in order: sysctl
    units as their keys, ``[vm]`` options as ``vm:<option>``. Values that use TuneD variables
    (``${...}``) are left out: only TuneD can expand them."""
    out: list[Setting] = []
    seen: set[Path] = set()

    def load(name: str, top: str, depth: int) -> None:
        f = profile_file(etc_root, name)
        if f is None or f in seen or depth > _MAX_INCLUDES:
            return
        seen.add(f)
        try:
            rows = _ini(f.read_text(errors="replace"))
        except OSError:
            return
        types = {s: v for s, k, v, _ in rows if k == "type"}
        for section, key, value, _line in rows:
            if section == "main" and key == "include":
                for inc in re.split(r"\s*[,;]\s*", value):
                    if inc and "${" not in inc:
                        load(inc, top, depth + 1)
        shown = "/" + str(f.relative_to(etc_root)) if f.is_relative_to(etc_root) else str(f)
        for section, key, value, line in rows:
            kind = types.get(section, section)
            if "${" in value or key in ("type", "devices", "enabled", "replace", "priority"):
                continue
            if kind == "sysctl":
                out.append(Setting(key=key.lstrip("-"), value=value, file=shown, line=line, profile=top))
            elif kind == "vm":
                out.append(Setting(key=f"vm:{key}", value=value, file=shown, line=line, profile=top))

    for name in active_profile(etc_root):
        load(name, name, 0)
    return out
