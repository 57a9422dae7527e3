"""`KernelRoot`: the only code in lumos-mcp that opens files under /proc and /sys.

``KernelRoot("/")`` is the live host. Any other base is a tree laid out like one (a test's
fake kernel, or the sandbox's shadow tree). Such a tree may hold a behaviours file,
``.lumos-kernel.json``, mapping relative paths to simulated kernel rules, so that the same
code meets EPERM, EINVAL and clamping on a fake tree as it would on a real kernel:

```json
{"sys/kernel/debug/sched/base_slice_ns": {"locked": true},
 "proc/sys/kernel/nmi_watchdog": {"write_locked": true},
 "proc/sys/vm/swappiness": {"range": [0, 200]},
 "proc/sys/net/core/somaxconn": {"clamp": [0, 4096]},
 "sys/kernel/mm/transparent_hugepage/enabled": {"choice": true},
 "sys/fs/cgroup/cpu/batch/cpu.shares": {"einval_if": {"sys/fs/cgroup/cpu/batch/cpu.idle": "1"}},
 "sys/fs/cgroup/cpu": {"cgroup_files": {"cgroup.procs": "", "cpu.shares": "1024"}}}
```

A ``cgroup_files`` rule makes a directory a simulated cgroup hierarchy: ``mkdir`` below it
fills the new group with those files, ``rmdir`` answers EBUSY while the group has tasks or
children, and writing a pid to a ``cgroup.procs`` moves it out of every other group.

Every ``OSError`` becomes a domain error here, with the path and errno as fields.
"""

from __future__ import annotations

import errno as errno_mod
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson

from lumos_mcp.errors import (
    InvalidValueError,
    KernelIOError,
    KnobLockedError,
    KnobUnavailableError,
    PathEscapeError,
    PermissionDeniedError,
)

BEHAVIOURS_FILE = ".lumos-kernel.json"
TMP_PREFIX = ".lumos-tmp."
"""Prefix of the scratch file a fake tree's write goes through (left behind only by a kill)."""


def write_private(path: Path, data: str | bytes) -> None:
    """Write a fake or sandbox tree's file: created 0600 whatever the umask, never through a symlink.

    Raises:
        OSError: as ``os.open``/``os.write`` (ELOOP when ``path`` is a symlink).
    """
    encoded = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(encoded)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def makedirs_private(path: Path) -> None:
    """``mkdir -p`` for a fake or sandbox tree: every directory it creates is 0700 whatever the umask.

    Raises:
        OSError: a component cannot be created (or exists and is not a directory).
    """
    missing: list[Path] = []
    probe = path
    while not probe.is_dir():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            if not directory.is_dir():
                raise


_RELEASE_RE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")

KernelVersion = tuple[int, int, int]


def parse_release(release: str) -> KernelVersion:
    """``"6.18.44-fc-v669"`` -> ``(6, 18, 44)``.

    Raises:
        ValueError: the text does not start with a version number.
    """
    m = _RELEASE_RE.match(release.strip())
    if m is None:
        raise ValueError(f"not a kernel release: {release!r}")
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def _choices(text: str) -> list[str]:
    return [w.strip("[]") for w in text.split()]


class KernelRoot:
    """A kernel's /proc and /sys seen under ``base``."""

    def __init__(self, base: str | os.PathLike[str] = "/") -> None:
        self.base = Path(base).resolve()
        self.is_host = self.base == Path("/")
        self._behaviours_cache: tuple[tuple[int, int, int], dict[str, dict[str, Any]]] | None = None

    def __repr__(self) -> str:
        return f"KernelRoot({str(self.base)!r})"

    # ------------------------------------------------------------------ paths
    def path(self, rel: str) -> Path:
        """The absolute path of ``rel`` (``"proc/sys/vm/swappiness"``) under the root.

        Raises:
            PathEscapeError: ``rel`` is absolute, has ``..``, NUL, or empty parts.
        """
        if not rel or "\x00" in rel or rel.startswith("/"):
            raise PathEscapeError(path=rel)
        parts = rel.split("/")
        if any(p in ("..", ".", "") for p in parts):
            raise PathEscapeError(path=rel)
        return self.base.joinpath(*parts)

    def exists(self, rel: str) -> bool:
        try:
            return self.path(rel).exists()
        except OSError:
            return False

    def is_dir(self, rel: str) -> bool:
        try:
            return self.path(rel).is_dir()
        except OSError:
            return False

    def listdir(self, rel: str) -> list[str]:
        """Sorted names in a directory under the root; ``[]`` when it is absent."""
        try:
            return sorted(os.listdir(self.path(rel)))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as e:
            raise self._map(e, rel, None) from e

    def mkdir(self, rel: str) -> None:
        """Create one directory (a cgroup) under the root; an existing one is left as it is.

        Raises:
            PathEscapeError: ``rel`` is not a plain relative path.
            KnobUnavailableError: the parent does not exist.
            KnobLockedError, PermissionDeniedError: EPERM, EACCES.
            KernelIOError: any other OS error.
        """
        path = self.path(rel)
        with self._wrap(rel, None):
            try:
                os.mkdir(path) if self.is_host else os.mkdir(path, 0o700)
            except FileExistsError:
                return
            if not self.is_host:
                self._simulate_mkdir(rel)

    def rmdir(self, rel: str) -> None:
        """Remove one empty directory (a cgroup) under the root; an absent one is not an error.

        Raises:
            PathEscapeError: ``rel`` is not a plain relative path.
            KernelIOError: EBUSY (a cgroup with tasks or children) or any other OS error.
            KnobLockedError, PermissionDeniedError: EPERM, EACCES.
        """
        path = self.path(rel)
        with self._wrap(rel, None):
            try:
                if not self.is_host:
                    self._simulate_rmdir(rel)
                os.rmdir(path)
            except FileNotFoundError:
                return

    @cached_property
    def kernel_release(self) -> str:
        """The running kernel's release string (``proc/sys/kernel/osrelease``)."""
        return self.read_text("proc/sys/kernel/osrelease").strip()

    @cached_property
    def kernel_version(self) -> KernelVersion:
        return parse_release(self.kernel_release)

    # ------------------------------------------------------------------ behaviours
    @property
    def behaviours(self) -> dict[str, dict[str, Any]]:
        """Simulated kernel rules of a fake or sandbox tree (never read on the host)."""
        if self.is_host:
            return {}
        path = self.base / BEHAVIOURS_FILE
        try:
            st = path.stat()
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
            if self._behaviours_cache is not None and self._behaviours_cache[0] == key:
                return self._behaviours_cache[1]  # every knob I/O asks: stat, not re-parse
            loaded: dict[str, dict[str, Any]] = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return {}
        self._behaviours_cache = (key, loaded)
        return loaded

    def set_behaviours(self, rules: dict[str, dict[str, Any]]) -> None:
        """Replace the simulated kernel rules (fake and sandbox trees only)."""
        if self.is_host:
            raise PathEscapeError("behaviours are for fake trees", path=BEHAVIOURS_FILE)
        # temp file + rename: a crash never leaves torn rules, and every rewrite gets a new
        # inode, so other KernelRoots' stat-keyed caches see it even within one mtime tick
        path = self.base / BEHAVIOURS_FILE
        tmp = path.with_name(BEHAVIOURS_FILE + ".tmp")
        write_private(tmp, orjson.dumps(rules, option=orjson.OPT_INDENT_2))
        os.replace(tmp, path)
        self._behaviours_cache = None

    # ------------------------------------------------------------------ I/O
    def read_text(self, rel: str, *, knob: str | None = None) -> str:
        """Read a whole file under the root.

        Raises:
            KnobUnavailableError: the file does not exist.
            KnobLockedError: EPERM (lockdown, or a simulated locked file).
            PermissionDeniedError: EACCES.
            KernelIOError: any other OS error.
        """
        rule = self.behaviours.get(rel, {})
        if rule.get("locked"):
            raise KnobLockedError(knob=knob or rel, path=rel, errno=errno_mod.EPERM)
        with self._wrap(rel, knob), open(self.path(rel), encoding="utf-8", errors="replace") as f:
            return f.read()

    def write_text(self, rel: str, value: str, *, knob: str | None = None) -> None:
        """Write ``value`` to an existing file in one ``write`` call, as ``echo v > f`` does.

        Raises:
            KnobUnavailableError, KnobLockedError, PermissionDeniedError: as for reads.
            InvalidValueError: EINVAL (the kernel rejected the value).
            KernelIOError: any other OS error.
        """
        path = self.path(rel)
        data = self._simulate_write(rel, value, knob) if not self.is_host else value
        with self._wrap(rel, knob, value):
            if not path.exists():
                raise FileNotFoundError(errno_mod.ENOENT, "no such file", str(path))
            if not self.is_host:
                # A kernel swaps a value in one step; a plain file truncated then written does not,
                # and a server killed in between would leave an empty knob that nothing can restore.
                tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
                write_private(tmp, data)
                os.replace(tmp, path)
                return
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
            try:
                encoded = data.encode()
                written = os.write(fd, encoded)
                if written != len(encoded):
                    raise OSError(errno_mod.EIO, f"short write ({written} of {len(encoded)} bytes)")
            finally:
                os.close(fd)

    def _cgroup_hierarchy(self, rel: str) -> tuple[str, dict[str, str]] | None:
        """The simulated cgroup hierarchy (root rel, template files) that ``rel`` lies in."""
        found: tuple[str, dict[str, str]] | None = None
        for key, rule in self.behaviours.items():
            if "cgroup_files" in rule and rel.startswith(key + "/") and (found is None or len(key) > len(found[0])):
                found = (key, rule["cgroup_files"])
        return found

    def _simulate_mkdir(self, rel: str) -> None:
        found = self._cgroup_hierarchy(rel)
        if found is not None:
            for name, content in found[1].items():
                write_private(
                    self.path(rel) / name, content if not content or content.endswith("\n") else content + "\n"
                )

    def _simulate_rmdir(self, rel: str) -> None:
        path = self.path(rel)
        if self._cgroup_hierarchy(rel) is None or not path.is_dir():
            return
        if any(p.is_dir() for p in path.iterdir()):
            raise OSError(errno_mod.EBUSY, "cgroup has children", str(path))
        procs = path / "cgroup.procs"
        if procs.exists() and procs.read_text().strip():
            raise OSError(errno_mod.EBUSY, "cgroup has tasks", str(path))
        for p in path.iterdir():
            p.unlink()

    def _simulate_procs_write(self, rel: str, hierarchy: str, value: str, knob: str | None) -> str:
        pid = value.strip()
        if not pid.isdigit():
            raise InvalidValueError("EINVAL (not a pid)", knob=knob or rel, value=value)
        for dirpath, _dirs, files in os.walk(self.path(hierarchy)):
            if "cgroup.procs" in files:
                other = Path(dirpath) / "cgroup.procs"
                kept = [p for p in other.read_text().split() if p != pid]
                write_private(other, "".join(p + "\n" for p in kept))
        current = self.path(rel).read_text().split() if self.path(rel).exists() else []
        return "".join(p + "\n" for p in [*current, pid])

    def _simulate_write(self, rel: str, value: str, knob: str | None) -> str:
        """Apply a fake tree's rule to a write and return the text the file then shows: like
        the kernel, one value and a newline, whatever whitespace it was given."""
        found = self._cgroup_hierarchy(rel) if rel.endswith("/cgroup.procs") else None
        if found is not None:
            return self._simulate_procs_write(rel, found[0], value, knob)
        rule = self.behaviours.get(rel)
        if not rule:
            return value.strip() + "\n"
        who = knob or rel
        if rule.get("locked") or rule.get("write_locked"):
            raise KnobLockedError(knob=who, path=rel, errno=errno_mod.EPERM)
        for other, bad in rule.get("einval_if", {}).items():
            if self.read_text(other).strip() == str(bad):
                raise InvalidValueError(f"EINVAL while {other} is {bad}", knob=who, value=value)
        if value.strip() in [str(v) for v in rule.get("reject", [])]:
            raise InvalidValueError("EINVAL (rejected by the kernel)", knob=who, value=value)
        if "range" in rule or "clamp" in rule:
            lo, hi = rule.get("range") or rule["clamp"]
            try:
                number = int(value.strip())
            except ValueError:
                raise InvalidValueError("EINVAL (not a number)", knob=who, value=value) from None
            if not lo <= number <= hi:
                if "range" in rule:
                    raise InvalidValueError(f"EINVAL (outside {lo}..{hi})", knob=who, value=value)
                value = str(min(max(number, lo), hi))
        if rule.get("choice"):
            options = _choices(self.read_text(rel))
            chosen = value.strip()
            if chosen not in options:
                raise InvalidValueError(f"EINVAL (not one of {options})", knob=who, value=value)
            return " ".join(f"[{o}]" if o == chosen else o for o in options) + "\n"
        return value.strip() + "\n"

    @contextmanager
    def _wrap(self, rel: str, knob: str | None, value: str | None = None) -> Iterator[None]:
        try:
            yield
        except OSError as e:
            raise self._map(e, rel, knob, value) from e

    def _map(self, e: OSError, rel: str, knob: str | None, value: str | None = None) -> Exception:
        who = knob or rel
        if e.errno == errno_mod.ENOENT:
            return KnobUnavailableError(f"{rel} does not exist", knob=who, kernel=self._release_or_unknown())
        if e.errno == errno_mod.EPERM:
            return KnobLockedError(knob=who, path=rel, errno=e.errno)
        if e.errno == errno_mod.EACCES:
            return PermissionDeniedError(knob=who, path=rel, errno=e.errno)
        if e.errno in (errno_mod.EINVAL, errno_mod.ERANGE, errno_mod.EBUSY) and value is not None:
            return InvalidValueError(f"the kernel answered {errno_mod.errorcode[e.errno]}", knob=who, value=value)
        return KernelIOError(e.strerror or "", path=rel, errno=e.errno)

    def _release_or_unknown(self) -> str:
        try:
            return (self.base / "proc/sys/kernel/osrelease").read_text().strip()
        except OSError:
            return "unknown"
