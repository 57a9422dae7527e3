"""Append-only, hash-chained audit log (JSON lines).

One record per line::

    {"seq": 7, "ts": 1714557600.25, "event": "apply", "pid": 4242, ...fields, "prev": "<hex>", "hash": "<hex>"}

``hash = sha256(prev + orjson.dumps(record without "hash", OPT_SORT_KEYS))`` and ``prev`` is
the previous record's ``hash`` (``GENESIS`` for the first). ``seq`` counts from 1.

Writers: any number of threads and processes may append to one file. Each append holds
a ``threading.Lock`` and ``fcntl.flock`` on the file, re-reads the last record from the
file's tail (another process may have appended), writes the line with one ``write`` and
fsyncs.
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

What a keyless hash chain cannot see: records removed from the END of the log
(truncation), or a record forged and appended at the end, look like a shorter or longer
honest log. Pass ``head=`` (the hash of a record known to be in the log, for example the
last one ``append`` returned, kept elsewhere) to ``verify`` to detect truncation.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from lumos_mcp.errors import AuditError

GENESIS = "0" * 64
EVENT_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")  # used with fullmatch: "$" would accept a trailing newline
RESERVED = frozenset({"seq", "ts", "event", "pid", "prev", "hash"})
TORN_EVENT = "audit_torn_tail"

Problem = Literal["edited", "deleted", "inserted", "reordered", "torn", "not_json"]

_TAIL_BLOCK = 64 * 1024
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

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AuditError(exc.strerror or "cannot create directory", path=str(self.path)) from exc
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
        """Repair a torn tail if any, then append ``event`` (``None``: repair only)."""
        with self._lock:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            except OSError as exc:
                raise AuditError(exc.strerror or "cannot open", path=str(self.path)) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                size = os.fstat(fd).st_size
                tail = _scan_tail(fd, size)
                last = tail.last
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
                if event is not None:
                    rec = self._build(last, event, fields)
                    out += orjson.dumps(rec) + b"\n"
                if out:
                    _write_all(fd, out)
                    os.fsync(fd)
                return rec
            except OSError as exc:
                raise AuditError(exc.strerror or "I/O error", path=str(self.path), errno=exc.errno) from exc
            finally:
                os.close(fd)  # also releases the flock


# --------------------------------------------------------------------------- readers
@dataclass(frozen=True)
class _Line:
    lineno: int
    offset: int
    raw: bytes  # with its newline, if it has one
    is_json: bool
    rec: dict[str, Any] | None


def _lines(path: Path) -> Iterator[_Line]:
    offset = 0
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            is_json, obj = _parse(raw)
            yield _Line(lineno, offset, raw, is_json, obj if is_json and _is_record(obj) else None)
            offset += len(raw)


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    """Every record in file order, for replay. Lines that are not records are skipped:
    use ``verify`` to check integrity.

    Raises:
        AuditError: the file cannot be read.
    """
    try:
        for line in _lines(Path(path)):
            if line.rec is not None:
                yield line.rec
    except OSError as exc:
        raise AuditError(exc.strerror or "cannot read", path=str(path)) from exc


def tail(path: Path, n: int) -> list[dict[str, Any]]:
    """The last ``n`` records in file order, reading only the end of the file.

    Raises:
        AuditError: the file cannot be read.
    """
    if n <= 0:
        return []
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


# --------------------------------------------------------------------------- verify
@dataclass(frozen=True)
class VerifyReport:
    """What ``verify`` found. On failure ``line``/``seq`` point at the first bad line."""

    ok: bool
    records: int  # records whose chain checked out (before the first problem, if any)
    line: int | None = None  # 1-based line number of the first problem
    seq: int | None = None  # the seq that line claims, when it is a record
    problem: Problem | None = None
    detail: str = ""
    head: str = GENESIS  # hash of the last good record
    torn_lines: tuple[int, ...] = field(default_factory=tuple)  # acknowledged torn regions


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


def verify(path: Path, *, head: str | None = None) -> VerifyReport:
    """Check the whole chain: every record's hash, ``prev`` link and ``seq``.

    Any single edited, deleted, inserted or reordered record is detected, except those
    a keyless chain cannot see at the very end of the log (see the module docstring);
    ``head``, the hash of a record known to be in the log, closes the truncation gap.

    Raises:
        AuditError: the file cannot be read.
    """
    path = Path(path)
    seq, prev, good = 1, GENESIS, 0
    garbage: list[_Line] = []
    torn: list[int] = []
    head_seen = head is None

    def fail(line: _Line, problem: Problem, detail: str) -> VerifyReport:
        return VerifyReport(
            ok=False,
            records=good,
            line=line.lineno,
            seq=line.rec["seq"] if line.rec else None,
            problem=problem,
            detail=detail,
            head=prev,
            torn_lines=tuple(torn),
        )

    try:
        for line in _lines(path):
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
                problem = _classify(list(_lines(path)), line.lineno - 1, seq, prev)
                return fail(line, problem, f"expected seq {seq} after hash {prev[:12]}, chain breaks here")
            seq, prev, good = seq + 1, rec["hash"], good + 1
            head_seen = head_seen or rec["hash"] == head
    except OSError as exc:
        raise AuditError(exc.strerror or "cannot read", path=str(path)) from exc
    if garbage:
        first = garbage[0]
        return fail(first, "torn" if not first.is_json else "edited", "unacknowledged bytes at the end of the log")
    if not head_seen:
        return VerifyReport(
            ok=False,
            records=good,
            problem="deleted",
            detail=f"no record has the expected head hash {head}: the log was truncated",
            head=prev,
            torn_lines=tuple(torn),
        )
    return VerifyReport(ok=True, records=good, head=prev, torn_lines=tuple(torn))


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
    "format_record",
    "iter_records",
    "record_hash",
    "tail",
    "verify",
]
