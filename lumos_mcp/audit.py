"""Append-only, hash-chained audit log (JSON lines).

One record per line::

    {"seq": 7, "ts": 1714557600.25, "event": "apply", "pid": 4242, ...fields, "prev": "<hex>", "hash": "<hex>"}

``hash = sha256(prev + orjson.dumps(record without "hash", OPT_SORT_KEYS))`` and ``prev`` is
the previous record's ``hash`` (``GENESIS`` for the first). ``seq`` counts from 1.

Writers: any number of threads and processes may append to one log. Each append holds
a ``threading.Lock`` and ``fcntl.flock`` on ``audit.jsonl.lock`` (not on the log file, which
rotation renames), re-reads the last record from the file's tail (another process may have
appended), writes the line with one ``write`` and fsyncs.
The writer chains from the last record's ``hash`` as found, without re-checking it:
``verify`` is the one place that judges integrity. Read-only tools (``audit tail``,
``audit verify``) should call ``tail``/``verify``, not open an ``AuditLog``, which may write
a repair record.

Torn tails. A crash in the middle of a write can leave bytes that are not a record at the
end of the file. The log is never truncated: the next writer (and every ``AuditLog`` on
open) appends a newline if needed and an ``audit_torn_tail`` record, chained to the last
good record, whose ``torn_offset``/``torn_bytes``/``torn_sha256`` fields bind the exact
bytes it skips. ``verify`` accepts such an acknowledged region (listing it in
``VerifyReport.torn_lines``) and reports an unacknowledged one at the end of the file as
problem ``"torn"``.

Rotation. When the file reaches ``max_bytes`` (default 16 MiB) the next append renames it
``audit.jsonl.N`` (N = 1, 2, ... in order) and starts a new ``audit.jsonl`` whose first record
chains to the renamed file's last hash, with ``seq`` continuing: the files are one chain.
``verify``, ``tail`` and ``iter_records`` read all of them in order; a rotated file that is
missing (a gap in the numbers, or no ``.1``) or out of order breaks the chain and is reported.
Beyond ``keep_files`` (default 20) rotated files, a rotation deletes the oldest, after writing
an ``audit_pruned`` record (the files, and the seq and hash of the last record they held) into
the chain: ``verify`` then starts at the oldest file kept and accepts the missing ones only if
such a record vouches for exactly them.
Appenders serialise on ``audit.jsonl.lock``. Every file is 0600 and opened without following
a symlink (``lumos_mcp.privfs``).

What a keyless hash chain cannot see: records removed from the END of the log
(truncation), or a record forged and appended at the end, look like a shorter or longer
honest log. Pass ``head=`` (the hash of a record known to be in the log, for example the
last one ``append`` returned, kept elsewhere) to ``verify`` to detect truncation.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from lumos_mcp.errors import AuditError
from lumos_mcp.privfs import ensure_private_dir, fsync_dir, open_private

GENESIS = "0" * 64
EVENT_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")  # used with fullmatch: "$" would accept a trailing newline
RESERVED = frozenset({"seq", "ts", "event", "pid", "prev", "hash"})
TORN_EVENT = "audit_torn_tail"

Problem = Literal["edited", "deleted", "inserted", "reordered", "torn", "not_json"]

_TAIL_BLOCK = 64 * 1024
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
"""The size at which the live audit file is rotated."""
DEFAULT_KEEP_FILES = 20
"""Rotated files kept; older ones are deleted, and an ``audit_pruned`` record in the chain says so."""
PRUNED_EVENT = "audit_pruned"
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
_PLAIN_RE = re.compile(r"^[A-Za-z0-9_.:/@+,-]+$")


# --------------------------------------------------------------------------- hashing
def _canonical(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def record_hash(record: dict[str, Any]) -> str:
    """The hash a record should carry: sha256 of ``prev`` + canonical bytes without ``hash``.

    Raises:
        KeyError: the record has no ``prev``.
        TypeError: the record holds something orjson cannot serialise.
    """
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(str(body["prev"]).encode() + _canonical(body)).hexdigest()


def _is_record(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and type(obj.get("seq")) is int
        and isinstance(obj.get("ts"), int | float)
        and isinstance(obj.get("event"), str)
        and type(obj.get("pid")) is int
        and isinstance(obj.get("prev"), str)
        and isinstance(obj.get("hash"), str)
    )


def _self_consistent(rec: dict[str, Any]) -> bool:
    return bool(_HEX64_RE.match(rec["hash"])) and record_hash(rec) == rec["hash"]


def _parse(raw: bytes) -> tuple[bool, Any]:
    """``(is_json, value)`` for one line (with or without its newline)."""
    try:
        return True, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False, None


def _parse_record(raw: bytes) -> dict[str, Any] | None:
    is_json, obj = _parse(raw)
    return obj if is_json and _is_record(obj) else None


# --------------------------------------------------------------------------- tail scanning
@dataclass(frozen=True)
class _Tail:
    last: dict[str, Any] | None  # the last line of the file that is a record
    good_end: int  # offset just past that record's line (0 if none)
    needs_newline: bool  # the last record is the final line and lacks its newline


def _scan_tail(fd: int, size: int) -> _Tail:
    """Find the last record line by reading backwards in growing blocks."""
    block = _TAIL_BLOCK
    while size > 0:
        start = max(0, size - block)
        data = os.pread(fd, size - start, start)
        terminated = data.endswith(b"\n")
        pos = len(data) - 1 if terminated else len(data)
        while True:
            nl = data.rfind(b"\n", 0, pos)
            if nl < 0 and start > 0:
                break  # the line may begin before this block: read more
            rec = _parse_record(data[nl + 1 : pos])
            if rec is not None:
                end = start + pos + (1 if terminated else 0)
                return _Tail(rec, end, needs_newline=not terminated)
            if nl < 0:
                return _Tail(None, 0, needs_newline=False)
            pos, terminated = nl, True
        block *= 4
    return _Tail(None, 0, needs_newline=False)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


# --------------------------------------------------------------------------- writer
class AuditLog:
    """Appends hash-chained records to ``path``; safe across threads and processes.

    Opening repairs a torn tail (see the module docstring); the file and its parent
    directory are created if missing.

    Raises:
        AuditError: the file cannot be created, read or written.
    """

    def __init__(
        self,
        path: Path,
        clock: Callable[[], float] = time.time,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        keep_files: int | None = DEFAULT_KEEP_FILES,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self.max_bytes = max_bytes
        self.keep_files = keep_files
        self._lock = threading.Lock()
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        ensure_private_dir(self.path.parent)
        self._locked_append(None, {})

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one record and fsync it; returns the record as written (with ``hash``).

        Field values may be anything JSON-able; they are stored as their JSON form (a tuple
        becomes a list, NaN becomes null) and the returned record holds that form.

        Raises:
            AuditError: bad event name, a field named like a reserved key
                (seq, ts, event, pid, prev, hash), a value that is not JSON-able, or an
                I/O error.
        """
        if not EVENT_RE.fullmatch(event):
            raise AuditError(f"event name {event!r} must fully match {EVENT_RE.pattern}", path=str(self.path))
        clash = RESERVED.intersection(fields)
        if clash:
            raise AuditError(f"fields use reserved names {sorted(clash)}", path=str(self.path))
        try:
            normalised: dict[str, Any] = orjson.loads(orjson.dumps(fields))
        except orjson.JSONEncodeError as exc:
            raise AuditError(f"fields are not JSON-able: {exc}", path=str(self.path)) from exc
        rec = self._locked_append(event, normalised)
        assert rec is not None
        return rec

    def _build(self, last: dict[str, Any] | None, event: str, fields: dict[str, Any]) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "seq": (last["seq"] + 1) if last else 1,
            "ts": self._clock(),
            "event": event,
            "pid": os.getpid(),
            **fields,
            "prev": last["hash"] if last else GENESIS,
        }
        rec["hash"] = record_hash(rec)
        return rec

    def _locked_append(self, event: str | None, fields: dict[str, Any]) -> dict[str, Any] | None:
        """Repair a torn tail if any, then append ``event`` (``None``: repair only), rotating
        the file first when it has reached ``max_bytes``."""
        with self._lock:
            try:
                lock_fd = open_private(self._lock_path, os.O_RDWR | os.O_CREAT)
            except OSError as exc:
                raise AuditError(exc.strerror or "cannot open lock", path=str(self._lock_path)) from exc
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
                return self._append_under_lock(event, fields)
            except OSError as exc:
                raise AuditError(exc.strerror or "I/O error", path=str(self.path), errno=exc.errno) from exc
            finally:
                os.close(lock_fd)  # also releases the flock

    def _append_under_lock(self, event: str | None, fields: dict[str, Any]) -> dict[str, Any] | None:
        fd = open_private(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
        try:
            size = os.fstat(fd).st_size
            tail = _scan_tail(fd, size)
            last = tail.last
            if last is None:
                last = _last_record(rotated_files(self.path))  # a new file continues the rotated chain
            out = b"\n" if tail.needs_newline else b""
            if tail.good_end < size:
                region = os.pread(fd, size - tail.good_end, tail.good_end)
                torn = self._build(
                    last,
                    TORN_EVENT,
                    {
                        "torn_offset": tail.good_end,
                        "torn_bytes": len(region),
                        "torn_sha256": hashlib.sha256(region).hexdigest(),
                    },
                )
                out += (b"" if region.endswith(b"\n") else b"\n") + orjson.dumps(torn) + b"\n"
                last = torn
            rec = None
            line = b""
            if event is not None:
                rec = self._build(last, event, fields)
                line = orjson.dumps(rec) + b"\n"
            rotate = bool(line) and last is not None and size + len(out) >= self.max_bytes
            if not rotate:
                out += line
            if out:
                _write_all(fd, out)
                os.fsync(fd)
            if rotate:
                assert rec is not None
                self._rotate(rec)
            return rec
        finally:
            os.close(fd)

    def _rotate(self, first: dict[str, Any]) -> None:
        """Rename the full file to the next ``.N`` and put a new one, starting with ``first``, in its
        place. Beyond ``keep_files`` rotated files, the oldest are deleted once an ``audit_pruned``
        record (chained after ``first``, naming them and the last seq and hash they held) is durable."""
        numbered = _numbered(self.path)
        target = self.path.with_name(f"{self.path.name}.{max((n for n, _ in numbered), default=0) + 1}")
        lines = [first]
        doomed: list[Path] = []
        if self.keep_files is not None and len(numbered) + 1 > self.keep_files:
            doomed = [p for _, p in numbered[: len(numbered) + 1 - self.keep_files]]
            through = _last_record(doomed)
            if through is not None:
                lines.append(
                    self._build(
                        first,
                        PRUNED_EVENT,
                        {
                            "files": [p.name for p in doomed],
                            "through_seq": through["seq"],
                            "through_hash": through["hash"],
                        },
                    )
                )
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")  # 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(b"".join(orjson.dumps(r) + b"\n" for r in lines))
                f.flush()
                os.fsync(f.fileno())
            os.rename(self.path, target)  # a crash here leaves no live file: the next append chains from target
            os.replace(tmp, self.path)
            tmp = ""
            fsync_dir(self.path.parent)
        finally:
            if tmp:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        for p in doomed if len(lines) > 1 else []:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _numbered(path: Path) -> list[tuple[int, Path]]:
    """Rotated files of ``path`` (``audit.jsonl.3``) as ``(number, path)``, in number order."""
    pattern = re.compile(re.escape(path.name) + r"\.([1-9][0-9]{0,8})")
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise AuditError(exc.strerror or "cannot list", path=str(path.parent)) from exc
    found = [(int(m.group(1)), path.with_name(name)) for name in names if (m := pattern.fullmatch(name))]
    return sorted(found)


def rotated_files(path: Path) -> list[Path]:
    """The rotated files of the log at ``path``, oldest first (``audit.jsonl.1``, ``.2``, ...).

    Raises:
        AuditError: the directory cannot be listed.
    """
    return [p for _, p in _numbered(Path(path))]


def log_files(path: Path) -> list[Path]:
    """Every file of the log at ``path`` in chain order: the rotated ones, then ``path`` itself
    (when it exists, or when nothing was rotated).

    Raises:
        AuditError: the directory cannot be listed.
    """
    path = Path(path)
    rotated = rotated_files(path)
    return [*rotated, path] if path.exists() or not rotated else rotated


def _last_record(files: list[Path]) -> dict[str, Any] | None:
    """The last record of the newest file in ``files`` that holds one."""
    for file in reversed(files):
        fd = open_private(file, os.O_RDONLY)
        try:
            last = _scan_tail(fd, os.fstat(fd).st_size).last
        finally:
            os.close(fd)
        if last is not None:
            return last
    return None


# --------------------------------------------------------------------------- readers
@dataclass(frozen=True)
class _Line:
    lineno: int  # 1-based, within its file
    offset: int  # within its file
    raw: bytes  # with its newline, if it has one
    is_json: bool
    rec: dict[str, Any] | None
    file: str = ""


def _lines(path: Path) -> Iterator[_Line]:
    offset = 0
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            is_json, obj = _parse(raw)
            yield _Line(lineno, offset, raw, is_json, obj if is_json and _is_record(obj) else None, str(path))
            offset += len(raw)


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    """Every record in chain order (rotated files first), for replay. Lines that are not
    records are skipped: use ``verify`` to check integrity.

    Raises:
        AuditError: a file cannot be read.
    """
    for file in log_files(Path(path)):
        try:
            for line in _lines(file):
                if line.rec is not None:
                    yield line.rec
        except OSError as exc:
            raise AuditError(exc.strerror or "cannot read", path=str(file)) from exc


def _tail_one(path: Path, n: int) -> list[dict[str, Any]]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise AuditError(exc.strerror or "cannot open", path=str(path)) from exc
    try:
        size = os.fstat(fd).st_size
        block = _TAIL_BLOCK
        while True:
            start = max(0, size - block)
            data = os.pread(fd, size - start, start)
            pieces = data.split(b"\n")
            if start > 0:
                pieces = pieces[1:]  # the first piece may be the end of a longer line
            found = [r for r in map(_parse_record, pieces) if r is not None]
            if len(found) >= n or start == 0:
                return found[-n:]
            block *= 4
    except OSError as exc:
        raise AuditError(exc.strerror or "cannot read", path=str(path)) from exc
    finally:
        os.close(fd)


def tail(path: Path, n: int) -> list[dict[str, Any]]:
    """The last ``n`` records in chain order, reading only the end of the file (and of
    rotated files, newest first, while more are needed).

    Raises:
        AuditError: a file cannot be read.
    """
    if n <= 0:
        return []
    found: list[dict[str, Any]] = []
    for file in reversed(log_files(Path(path))):
        found = _tail_one(file, n - len(found)) + found
        if len(found) >= n:
            break
    return found


# --------------------------------------------------------------------------- verify
@dataclass(frozen=True)
class VerifyReport:
    """What ``verify`` found. On failure ``file``/``line``/``seq`` point at the first bad line."""

    ok: bool
    records: int  # records whose chain checked out (before the first problem, if any)
    line: int | None = None  # 1-based line number of the first problem, within ``file``
    seq: int | None = None  # the seq that line claims, when it is a record
    problem: Problem | None = None
    detail: str = ""
    head: str = GENESIS  # hash of the last good record
    torn_lines: tuple[int, ...] = field(default_factory=tuple)  # acknowledged torn regions
    file: str | None = None  # the file of the first problem (rotated logs span several)
    files: int = 1  # how many files the chain spans


def _acknowledges(rec: dict[str, Any], garbage: list[_Line]) -> bool:
    """Whether ``rec`` is the ``audit_torn_tail`` record for exactly these skipped bytes."""
    if rec["event"] != TORN_EVENT or rec.get("torn_offset") != garbage[0].offset:
        return False
    region = b"".join(g.raw for g in garbage)
    candidates = [region]
    if region.endswith(b"\n"):
        candidates.append(region[:-1])  # the repair added this newline
    return any(
        rec.get("torn_bytes") == len(c) and rec.get("torn_sha256") == hashlib.sha256(c).hexdigest() for c in candidates
    )


def _chains(rec: dict[str, Any] | None, seq: int, prev: str) -> bool:
    return rec is not None and rec["seq"] == seq and rec["prev"] == prev and _self_consistent(rec)


def _classify(lines: list[_Line], i: int, seq: int, prev: str) -> Problem:
    """Best-effort name for why ``lines[i]`` (a record) breaks the chain expected to
    continue with ``seq`` after hash ``prev``."""
    recs = [ln.rec for ln in lines]
    rec = recs[i]
    assert rec is not None
    after = [r for r in recs[i + 1 :] if r is not None]
    nxt = after[0] if after else None
    nxt2 = after[1] if len(after) > 1 else None
    # Skipping this line, does the chain carry on? Then the line is extra.
    skip_one = _chains(nxt, seq, prev) and (nxt2 is None or nxt is None or _chains(nxt2, seq + 1, nxt["hash"]))
    if not _self_consistent(rec):
        return "inserted" if skip_one else "edited"
    if sum(1 for r in recs if r is not None and r["seq"] == rec["seq"]) > 1:
        return "inserted"
    # It belongs right after a record that comes later in the file: it was moved.
    if any(r["hash"] == rec["prev"] and r["seq"] + 1 == rec["seq"] for r in after):
        return "reordered"
    if skip_one:
        return "inserted"
    later_has_seq = any(r["seq"] == seq for r in after)
    if rec["seq"] > seq and not later_has_seq:
        return "deleted"
    if later_has_seq:
        return "reordered"
    return "edited"


def _all_lines(files: list[Path]) -> Iterator[_Line]:
    for file in files:
        yield from _lines(file)


def verify(path: Path, *, head: str | None = None) -> VerifyReport:
    """Check the whole chain: every record's hash, ``prev`` link and ``seq``, across the
    rotated files (oldest first) and ``path``.

    Any single edited, deleted, inserted or reordered record is detected, except those
    a keyless chain cannot see at the very end of the log (see the module docstring);
    ``head``, the hash of a record known to be in the log, closes the truncation gap. A
    rotated file that is missing is reported as ``deleted``; one out of order breaks the
    chain where it starts.

    Raises:
        AuditError: a file cannot be read.
    """
    path = Path(path)
    numbered = _numbered(path)
    files = log_files(path)
    seq, prev, good = 1, GENESIS, 0
    garbage: list[_Line] = []
    torn: list[int] = []
    head_seen = head is None

    def report(ok: bool, **kw: Any) -> VerifyReport:
        return VerifyReport(ok=ok, records=good, head=prev, torn_lines=tuple(torn), files=len(files), **kw)

    def fail(line: _Line, problem: Problem, detail: str) -> VerifyReport:
        seq_ = line.rec["seq"] if line.rec else None
        return report(False, line=line.lineno, seq=seq_, problem=problem, detail=detail, file=line.file)

    present = {k for k, _ in numbered}
    low = min(present, default=1)
    missing = [n for n in range(low, low + len(numbered)) if n not in present]
    if missing:
        gone = path.with_name(f"{path.name}.{missing[0]}")
        return report(False, problem="deleted", detail=f"rotated file {gone.name} is missing", file=str(gone))
    anchor: tuple[int, str] | None = None  # what an audit_pruned record must vouch for
    if low > 1:
        try:
            start = next((ln.rec for ln in _lines(numbered[0][1]) if ln.rec is not None), None)
        except OSError as exc:
            raise AuditError(exc.strerror or "cannot read", path=str(numbered[0][1])) from exc
        if start is not None:
            seq, prev = start["seq"], start["prev"]
            anchor = (seq - 1, prev)
    current = ""
    try:
        for index, line in enumerate(_all_lines(files)):
            if line.file != current:
                if garbage:  # a rotated file must end with a record
                    first = garbage[0]
                    return fail(first, "torn" if not first.is_json else "edited", "unacknowledged bytes at its end")
                current = line.file
            if line.rec is None:
                garbage.append(line)
                continue
            rec = line.rec
            if garbage:
                if not _acknowledges(rec, garbage):
                    first = garbage[0]
                    return fail(first, "not_json" if not first.is_json else "edited", "line is not a record")
                torn.append(garbage[0].lineno)
                garbage = []
            if not _chains(rec, seq, prev):
                # Only a failing log is read whole, to name the problem.
                problem = _classify(list(_all_lines(files)), index, seq, prev)
                return fail(line, problem, f"expected seq {seq} after hash {prev[:12]}, chain breaks here")
            seq, prev, good = seq + 1, rec["hash"], good + 1
            head_seen = head_seen or rec["hash"] == head
            if rec["event"] == PRUNED_EVENT and (rec.get("through_seq"), rec.get("through_hash")) == anchor:
                anchor = None
    except OSError as exc:
        raise AuditError(exc.strerror or "cannot read", path=str(exc.filename or path)) from exc
    if garbage:
        first = garbage[0]
        return fail(first, "torn" if not first.is_json else "edited", "unacknowledged bytes at the end of the log")
    if anchor is not None:
        first_kept = numbered[0][1].name
        return report(
            False,
            problem="deleted",
            detail=f"the files before {first_kept} are missing and no {PRUNED_EVENT} record accounts for them",
            file=str(numbered[0][1]),
        )
    if not head_seen:
        return report(
            False, problem="deleted", detail=f"no record has the expected head hash {head}: the log was truncated"
        )
    return report(True)


# --------------------------------------------------------------------------- rendering
def _fmt_value(value: Any) -> str:
    if isinstance(value, str) and _PLAIN_RE.match(value):
        return value
    return orjson.dumps(value).decode()


def format_record(rec: dict[str, Any]) -> str:
    """One plain-text line for ``lumos-mcp audit tail``:
    ``2024-05-01T10:00:00.250Z #7 apply pid=4242 txid=tx-1 knobs=["vm.swappiness"] 3f2a9c1b``.
    Tolerates records with missing or odd fields."""
    ts = rec.get("ts")
    if isinstance(ts, int | float) and not isinstance(ts, bool):
        try:
            when = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        except (OverflowError, OSError, ValueError):
            when = str(ts)
    else:
        when = "?"
    parts = [when, f"#{rec.get('seq', '?')}", str(rec.get("event", "?")), f"pid={rec.get('pid', '?')}"]
    parts += [f"{k}={_fmt_value(v)}" for k, v in rec.items() if k not in RESERVED]
    digest = rec.get("hash")
    if isinstance(digest, str):
        parts.append(digest[:8])
    return " ".join(parts)


__all__ = [
    "EVENT_RE",
    "GENESIS",
    "RESERVED",
    "TORN_EVENT",
    "AuditLog",
    "Problem",
    "VerifyReport",
    "DEFAULT_KEEP_FILES",
    "DEFAULT_MAX_BYTES",
    "PRUNED_EVENT",
    "format_record",
    "iter_records",
    "log_files",
    "record_hash",
    "rotated_files",
    "tail",
    "verify",
]
