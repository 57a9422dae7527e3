"""The write-ahead journal: JSON lines, each with a CRC, each fsync'd before the act it announces.

A line is ``{"r": record, "c": crc32}``. A torn or corrupt final line is an act that was never
acknowledged (its fsync never returned) and is ignored; corruption before the tail is reported,
and the server then refuses new writes while still recovering what the intact records prove.
A failed append is cut back to the last good record; a journal whose fragment cannot be cut, or
whose file was removed or replaced under its path, refuses every later append (``broken``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from lumos_mcp.errors import JournalError, StateDirUnsafeError
from lumos_mcp.privfs import atomic_write_private, ensure_private_dir, open_private


def _line(record: dict[str, Any]) -> bytes:
    body = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    return orjson.dumps({"r": orjson.Fragment(body), "c": zlib.crc32(body)}) + b"\n"


@dataclass
class JournalScan:
    records: list[dict[str, Any]] = field(default_factory=list)
    torn_tail: bool = False
    corrupt_lines: list[int] = field(default_factory=list)
    """1-based numbers of bad lines before the last good one (not a torn tail)."""


def _decode(raw: bytes) -> dict[str, Any] | None:
    try:
        outer = orjson.loads(raw)
        record = outer["r"]
        if not isinstance(record, dict) or zlib.crc32(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)) != outer["c"]:
            return None
        return record
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


def scan(path: Path) -> JournalScan:
    """Read every intact record of a journal file (absent file: empty scan).

    Raises:
        JournalError: the file exists but cannot be read.
    """
    result = JournalScan()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return result
    except OSError as e:
        raise JournalError(f"cannot read: {e.strerror}", path=str(path)) from e
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]  # a final line without "\n" never finished its write
    bad: list[int] = []
    for number, raw in enumerate(complete, start=1):
        if not raw.strip():
            continue
        record = _decode(raw)
        if record is None:
            bad.append(number)
        else:
            if bad:
                result.corrupt_lines.extend(bad)
                bad = []
            result.records.append(record)
    result.torn_tail = bool(bad) or bool(tail.strip())
    return result


class Journal:
    """An append-only journal file; every append is durable when it returns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.broken: str | None = None
        """Why this journal refuses every further append (sticky): a fragment it could not cut,
        or its file removed or replaced under its path."""
        self.size = 0
        """Bytes in the journal file (what compaction while running watches)."""
        try:
            ensure_private_dir(path.parent)
            existed = os.path.lexists(path)
            if existed:
                _drop_torn_tail(path)
            self._fd = open_private(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            if not existed:
                _fsync_dir(path.parent)
            self.size = os.fstat(self._fd).st_size
        except OSError as e:
            raise JournalError(f"cannot open for append: {e.strerror}", path=str(path)) from e
        except StateDirUnsafeError as e:
            raise JournalError(f"refused: {e}", path=str(path), problem=e.fields["problem"]) from e

    def append(self, record: dict[str, Any]) -> None:
        """Write one record and fsync it.

        Raises:
            JournalError: the write or fsync failed (disk full, read-only, I/O error).
        """
        if self.broken is not None:
            raise JournalError(self.broken + "; refusing new writes", path=str(self.path))
        line = _line(record)
        self._check_file()
        start: int | None = None
        try:
            start = os.lseek(self._fd, 0, os.SEEK_END)  # O_APPEND: where this write lands
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, f"short write ({written} of {len(line)} bytes)")
            os.fsync(self._fd)
            self.size = start + written
        except OSError as e:
            if start is not None:
                self._cut(start)
            raise JournalError(f"append failed: {e.strerror or e}", path=str(self.path)) from e

    def _check_file(self) -> None:
        """Refuse to append to a journal file that is no longer the one at ``path`` (the state
        directory was removed or replaced): records written there would be lost to recovery."""
        try:
            mine, there = os.fstat(self._fd), os.stat(self.path, follow_symlinks=False)
        except OSError as e:
            self.broken = f"journal file {self.path} is gone ({e.strerror})"
            raise JournalError(self.broken + "; refusing new writes", path=str(self.path)) from e
        if mine.st_nlink == 0 or (mine.st_dev, mine.st_ino) != (there.st_dev, there.st_ino):
            self.broken = f"journal file {self.path} was removed or replaced by another file"
            raise JournalError(self.broken + "; refusing new writes", path=str(self.path))

    def _cut(self, size: int) -> None:
        """Drop the bytes of a failed append (a short write on a full disk), so the next record
        does not glue onto a fragment and become unreadable to recovery."""
        try:
            os.ftruncate(self._fd, size)
        except OSError as e:
            self.broken = f"a failed append left bytes in {self.path} that could not be removed ({e.strerror})"

    def rewrite(self, records: list[dict[str, Any]], probe: Callable[[str], None] | None = None) -> None:
        """Atomically replace the journal with ``records`` (compaction): write a new file, fsync
        it, rename it over the journal, fsync the directory. A kill at any point leaves either
        the old journal or the new one whole; ``probe(step)`` marks the points in between.

        Raises:
            JournalError: the journal is broken, or the new file could not be written or renamed
                into place (before the rename the old journal stands and stays in use).
        """
        mark = probe or (lambda step: None)
        if self.broken is not None:
            raise JournalError(self.broken + "; refusing to compact", path=str(self.path))
        self._check_file()  # never rename over a journal file that is not ours
        data = b"".join(_line(r) for r in records)
        try:  # 0600, a link at the path is replaced, never followed
            atomic_write_private(self.path, data, before_rename=lambda: mark("after-tmp"))
        except OSError as e:
            if _same_file(self._fd, self.path):  # not renamed: the old journal stands
                raise JournalError(f"compaction failed: {e.strerror or e}", path=str(self.path)) from e
            self.broken = f"journal {self.path} was compacted but its directory could not be synced ({e.strerror})"
            raise JournalError(self.broken, path=str(self.path)) from e
        mark("after-rename")
        try:
            fd = open_private(self.path, os.O_WRONLY | os.O_APPEND)
        except (OSError, StateDirUnsafeError) as e:  # the old fd now appends to a file no longer at the path
            self.broken = f"journal {self.path} was compacted but could not be reopened ({e})"
            raise JournalError(self.broken, path=str(self.path)) from e
        os.close(self._fd)
        self._fd = fd
        self.size = len(data)
        mark("after-reopen")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        mine, there = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)


def _drop_torn_tail(path: Path) -> None:
    """Cut an unterminated final line (a write that never finished, so was never acknowledged).

    Appending after it would glue the next record onto the fragment: one corrupt line, and,
    once another record follows, corruption "before the tail" that refuses all writes.
    """
    with os.fdopen(open_private(path, os.O_RDWR), "rb+") as f:
        data = f.read()
        if not data or data.endswith(b"\n"):
            return
        f.truncate(data.rfind(b"\n") + 1)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
